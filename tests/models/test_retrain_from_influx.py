"""Retraining from InfluxDB history, on the real InfluxDB; and the lifecycle CLI
on the real broker and InfluxDB."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from lineguard.cli import main
from lineguard.influx import InfluxV1Client
from lineguard.ingest.contract import TelemetryBatch, encode
from lineguard.ingest.csv_runs import read_run
from lineguard.models.feedback import Feedback
from lineguard.models.lifecycle import train_candidate_from_influx
from lineguard.models.registry import Registry
from lineguard.models.training import fingerprint, train_line_model
from lineguard.settings import get_settings
from lineguard.stream.processor import RawRecord, archive_lines

pytestmark = pytest.mark.integration

SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "data" / "skab" / "valve1" / "0.csv"
LINE = "valve1-0"


def archive(client: InfluxV1Client, run, line: str, frames_per_record: int = 50) -> None:
    """Store a run in lineguard_telemetry exactly as the archive worker does:
    wire-format records through :func:`archive_lines`."""
    records = []
    for seq, lo in enumerate(range(0, len(run), frames_per_record)):
        hi = min(lo + frames_per_record, len(run))
        batch = TelemetryBatch(
            "site-1", line, "gw-test", seq, run.sensors, run.time_us[lo:hi], run.values[lo:hi]
        )
        records.append(RawRecord(value=encode(batch), key=line.encode()))
    lines, invalid = archive_lines(records)
    assert invalid == 0
    client.write(lines, precision="ns")


@pytest.fixture
def history(local_stack, tmp_path):
    client = InfluxV1Client(local_stack.influx_settings(f"hist_{uuid.uuid4().hex[:8]}"))
    client.create_database()
    run = read_run(SAMPLE)
    archive(client, run, LINE)
    yield client, run, Registry(tmp_path / "registry")
    client.close()


def test_retraining_from_influx_history_gives_the_same_model_as_from_the_file(history) -> None:
    client, run, registry = history
    from_file = train_line_model(registry, run, LINE, rows=400)
    steps: list[str] = []
    pages: list[int] = []
    candidate = train_candidate_from_influx(
        registry,
        client,
        LINE,
        int(run.time_us[0]),
        int(run.time_us[399]),
        progress=lambda _t, n: pages.append(n),
        step=lambda text, _f: steps.append(text),
    )
    from_influx = candidate.bundle
    assert from_influx.version == "v0002" and not candidate.activated
    m_file, m_influx = from_file.manifest, from_influx.manifest
    assert m_influx["training"]["source"] == f"influx:{client.settings.database}"
    assert m_influx["training"]["rows"] == 400
    assert m_influx["training"]["fingerprint"] == m_file["training"]["fingerprint"]
    assert m_influx["threshold"] == m_file["threshold"]
    assert m_influx["sensors"] == m_file["sensors"]
    loaded = registry.load(LINE, "v0002")
    X = run.values[400:]
    np.testing.assert_array_equal(
        loaded.pipeline.decision_function(X), from_file.pipeline.decision_function(X)
    )
    # The candidate's evaluation against the active version is in its manifest.
    evaluation = m_influx["evaluation"]
    assert evaluation["active"]["version"] == "v0001"
    assert evaluation["candidate"]["version"] == "self"
    assert candidate.evaluation["candidate"]["version"] == "v0002"
    assert evaluation["agreement_pct"] == 100.0
    assert pages == [400] and "fitting" in steps


def test_training_from_influx_leaves_out_maintenance_and_confirmed_defects(history) -> None:
    client, run, registry = history
    train_line_model(registry, run, LINE, rows=400)
    t = run.time_us
    labels = [
        Feedback(LINE, "maintenance", int(t[100]), int(t[149]), author="qa"),
        Feedback(LINE, "real_defect", int(t[300]), int(t[319]), author="qa"),
        Feedback(LINE, "false_alarm", int(t[200]), int(t[209]), author="qa"),
    ]
    client.write([f.to_point() for f in labels], precision="ns")
    candidate = train_candidate_from_influx(registry, client, LINE, int(t[0]), int(t[399]))
    keep = np.ones(400, bool)
    keep[100:150] = False
    keep[300:320] = False  # false alarms are normal operation: kept
    manifest = candidate.bundle.manifest
    assert manifest["training"]["rows"] == int(keep.sum()) == 330
    assert manifest["training"]["fingerprint"] == fingerprint(
        run.sensors, t[:400][keep], run.values[:400][keep]
    )
    assert [e["label"] for e in manifest["training"]["excluded"]] == [
        "maintenance",
        "real_defect",
    ]
    # Evaluation counts the labelled defect frames and skips maintenance.
    evaluation = manifest["evaluation"]
    assert evaluation["data"]["labelled_defect_frames"] == 20
    assert evaluation["candidate"]["frames"] == 350


def test_lifecycle_commands_train_promote_diff_rollback(local_stack, tmp_path, history) -> None:
    client, run, _ = history
    registry = tmp_path / "cli-registry"
    tag = uuid.uuid4().hex[:8]
    env = {
        **local_stack.env(),
        "LINEGUARD_INFLUX_DATABASE": client.settings.database,
        "LINEGUARD_REGISTRY_DIR": str(registry),
        "LINEGUARD_TOPIC_MODELS": f"models-{tag}",
    }
    runner = CliRunner()

    def cli(*args: str) -> str:
        get_settings.cache_clear()
        try:
            result = runner.invoke(main, list(args), env=env, catch_exceptions=False)
        finally:
            get_settings.cache_clear()
        assert result.exit_code == 0, result.output
        return result.output

    out = cli("train", "--line", LINE, str(SAMPLE), "--rows", "400")
    assert "v0001 is active" in out
    start, end = run.time_us[0], run.time_us[399]
    out = cli("train", "--line", LINE, "--from-influx", "--start", str(start), "--end", str(end))
    assert "candidate stored; active stays v0001" in out and "agreement_pct" in out
    out = cli("models", "promote", LINE, "v0002")
    assert "v0001 -> v0002 (promote)" in out and "announced on the models topic" in out
    out = cli("models", "diff", LINE, "v0001", "v0002")
    assert "training.source" in out and "training.fingerprint" not in out
    out = cli("models", "rollback", LINE)
    assert "v0002 -> v0001 (rollback)" in out
    assert Registry(registry).active_version(LINE) == "v0001"
    out = cli("models", "show", LINE)
    assert "v0001 (active)" in out and "rollback" in out

    # A tampered artifact is refused by promote, and nothing is announced.
    artifact = registry / LINE / "v0002" / "model.skops"
    data = bytearray(artifact.read_bytes())
    data[-100] ^= 0xFF
    artifact.write_bytes(bytes(data))
    get_settings.cache_clear()
    result = runner.invoke(main, ["models", "promote", LINE, "v0002"], env=env)
    get_settings.cache_clear()
    assert result.exit_code == 1 and "sha256" in result.output
    assert Registry(registry).active_version(LINE) == "v0001"
