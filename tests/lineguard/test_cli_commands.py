"""The production commands, run as an operator runs them: the ``lineguard``
entry point in its own process, against the real broker, a real scoring
worker and the real InfluxDB.

``gateway replay`` sends a recorded run; the worker scores it with the active
version and a shadow; ``models compare`` and ``models evaluate`` report on the
two versions; ``feedback mark``, ``alert`` and ``list`` store and read QA
labels. Each expectation comes from what is in InfluxDB or from the recorded
file, not from the command's own code.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import uuid
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from lineguard.demo import WorkerProcess
from lineguard.influx import InfluxV1Client
from lineguard.ingest.csv_runs import read_run
from lineguard.models.feedback import read_feedback
from lineguard.models.registry import Registry
from lineguard.models.training import TrainingConfig, train_line_model
from lineguard.stream.worker import ensure_topics
from tests.pipeline_support import isolated_settings, wait_for_count

pytestmark = pytest.mark.integration

SAMPLES = Path(__file__).resolve().parents[2] / "examples" / "data" / "skab"
RUN_FILE = SAMPLES / "valve1" / "1.csv"
LINE = "press-7"


def lineguard(env: dict[str, str], *args: str, ok: bool = True) -> subprocess.CompletedProcess:
    """Run the installed ``lineguard`` command."""
    exe = shutil.which("lineguard", path=str(Path(sys.executable).parent))
    assert exe, "the lineguard entry point is not installed next to this Python"
    done = subprocess.run(
        [exe, *args], env=env, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL
    )
    if ok:
        assert done.returncode == 0, f"lineguard {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done


def _iso(time_us: int) -> str:
    return datetime.fromtimestamp(time_us / 1e6, timezone.utc).isoformat()


@pytest.fixture(scope="module")
def replayed(local_stack, tmp_path_factory):
    """v0001 active and v0002 shadowed (through the CLI), a scoring worker,
    and the recorded run sent with ``lineguard gateway replay``."""
    tag = uuid.uuid4().hex[:8]
    workdir = tmp_path_factory.mktemp("cli")
    env, settings = isolated_settings(local_stack, workdir, tag, database_prefix="cli")
    run = read_run(RUN_FILE)
    registry = Registry(settings.registry_dir)
    train_line_model(registry, run, LINE, rows=400)
    train_line_model(
        registry, run, LINE, rows=400, config=TrainingConfig(target_far=0.2), activate=False
    )
    ensure_topics(settings)
    shadow = lineguard(env, "models", "shadow", LINE, "v0002")
    worker = WorkerProcess("score", env, workdir / "score.log")
    client = InfluxV1Client(settings.influx)
    try:
        sent = lineguard(
            env,
            "gateway",
            "replay",
            str(RUN_FILE),
            "--line",
            LINE,
            "--speed",
            "0",
            "--site",
            "site-9",
            "--state-dir",
            str(workdir / "gw"),
        )
        for where in ("\"model_version\" = 'v0001'", "\"role\" = 'shadow'"):
            wait_for_count(
                client,
                f'SELECT count("score") FROM "lineguard_score" WHERE "line" = \'{LINE}\' '
                f"AND {where}",
                len(run),
                [worker],
            )
        yield env, settings, run, client, sent, shadow
    finally:
        client.close()
        worker.stop()


def test_gateway_replay_sends_every_frame_of_the_file(replayed) -> None:
    env, _, run, client, sent, _ = replayed
    assert f"sent {len(run)} frames of line {LINE}" in sent.stdout
    rows = client.query(
        f'SELECT "score" FROM "lineguard_score" WHERE "line" = \'{LINE}\' '
        "AND \"model_version\" = 'v0001' AND \"site\" = 'site-9'",
        epoch="u",
    )
    # Every frame of the file, once, at its recorded time (no --retime).
    np.testing.assert_array_equal(sorted(r["time"] for r in rows), run.time_us)
    # The gateway kept its sequence number for the next start.
    assert (Path(env["LINEGUARD_REGISTRY_DIR"]).parent / "gw" / "gw-replay.seq").is_file()


def test_models_compare_reports_both_versions_from_influxdb(replayed) -> None:
    env, _, run, client, _, shadow = replayed
    assert "v0002" in shadow.stdout
    report = json.loads(lineguard(env, "models", "compare", LINE, "--json").stdout)
    total = report["total"]
    assert total["frames"] == len(run)
    # The alert rates, by hand from the points in InfluxDB.
    for version in ("v0001", "v0002"):
        rows = client.query(
            f'SELECT "anomaly" FROM "lineguard_score" WHERE "line" = \'{LINE}\' '
            f"AND \"model_version\" = '{version}'"
        )
        rate = 100.0 * sum(bool(r["anomaly"]) for r in rows) / len(rows)
        assert total[version]["alert_rate_pct"] == pytest.approx(rate, abs=0.01), version
    assert total["v0002"]["alert_rate_pct"] > total["v0001"]["alert_rate_pct"]


def _table(out: str) -> dict[str, list[str]]:
    """metric -> cells of a rich table printed by the CLI."""
    rows = {}
    for line in out.splitlines():
        line = line.replace("┃", "│")  # the header row's border
        cells = [c.strip() for c in line.strip("│ ").split("│")]
        if len(cells) >= 2 and cells[0]:
            rows[cells[0]] = cells[1:]
    return rows


def test_models_evaluate_scores_the_file_with_both_versions(replayed) -> None:
    env, _, run, client, _, _ = replayed
    done = lineguard(
        {**env, "COLUMNS": "200"},
        "models",
        "evaluate",
        LINE,
        "v0002",
        "--file",
        str(RUN_FILE),
        "--rows",
        "400",
    )
    table = _table(done.stdout)
    assert table["metric"] == ["v0002 (candidate)", "v0001 (active)"], done.stdout
    # The frames and labelled events of rows 400.. of the file.
    labels = run.anomaly[400:].astype(bool)
    edges = int(labels[0]) + int(np.sum(labels[1:] & ~labels[:-1]))
    assert table["frames"] == [str(len(run) - 400)] * 2
    assert table["events"] == [str(edges)] * 2
    # The active version's alert rate matches what the live worker stored for
    # the same frames (it scored from frame 0, so up to its trailing window
    # and debounce may differ at the cut).
    rows = client.query(
        f'SELECT "anomaly" FROM "lineguard_score" WHERE "line" = \'{LINE}\' '
        f"AND \"model_version\" = 'v0001' AND time >= {int(run.time_us[400])}u",
    )
    live = 100.0 * sum(bool(r["anomaly"]) for r in rows) / len(rows)
    assert float(table["alert_rate_pct"][1]) == pytest.approx(live, abs=2.0)
    missing = lineguard(env, "models", "evaluate", LINE, "v0009", "--file", str(RUN_FILE), ok=False)
    assert missing.returncode == 1 and "v0009" in missing.stdout + missing.stderr


def test_feedback_mark_alert_and_list(replayed) -> None:
    env, _, run, client, _, _ = replayed
    start, end = int(run.time_us[10]), int(run.time_us[20])
    marked = lineguard(
        env,
        "feedback",
        "mark",
        LINE,
        "--label",
        "maintenance",
        "--start",
        _iso(start),
        "--end",
        _iso(end),
        "--author",
        "qa-7",
        "--note",
        "valve swap",
    )
    assert "maintenance" in marked.stdout and "stored" in marked.stdout

    # An alerted frame of the active version, and its run of alerted frames,
    # found by hand in the points.
    rows = client.query(
        f'SELECT "anomaly" FROM "lineguard_score" WHERE "line" = \'{LINE}\' '
        "AND \"model_version\" = 'v0001'",
        epoch="u",
    )
    times = [r["time"] for r in rows]
    flags = [bool(r["anomaly"]) for r in rows]
    i = flags.index(True)
    j = i
    while j + 1 < len(flags) and flags[j + 1]:
        j += 1
    middle = times[(i + j) // 2]
    lineguard(env, "feedback", "alert", LINE, "--label", "real_defect", "--at", str(middle))
    quiet = lineguard(
        env, "feedback", "alert", LINE, "--label", "real_defect", "--at", str(times[0]), ok=False
    )
    assert quiet.returncode == 1 and "not in alert" in quiet.stdout + quiet.stderr

    stored = sorted(read_feedback(client, LINE), key=lambda f: f.start_us)
    assert [(f.label, f.start_us, f.end_us, f.source) for f in stored] == [
        ("maintenance", start, end, "cli"),
        ("real_defect", times[i], times[j], "cli"),
    ]
    listed = lineguard(env, "feedback", "list", LINE).stdout.splitlines()
    assert len(listed) == 2
    assert any("maintenance" in line and "qa-7 valve swap" in line for line in listed)
    assert any("real_defect" in line for line in listed)
    assert "no labels for other-line" in lineguard(env, "feedback", "list", "other-line").stdout


def test_evaluate_refuses_fewer_training_rows_than_the_one_minimum(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from lineguard.cli import main

    out = CliRunner().invoke(
        main,
        [
            "evaluate",
            str(tmp_path),
            "--train-rows",
            "19",
            "--predictions",
            str(tmp_path / "p"),
        ],
    )
    assert out.exit_code == 2, out.output
    assert "expected at least 20 training rows; got 19" in out.output
