"""Failures kept to their line: a model that fails verification does not stop the others."""

from __future__ import annotations

from pathlib import Path

from lineguard.ingest.contract import TelemetryBatch, encode
from lineguard.ingest.csv_runs import read_run
from lineguard.models.registry import Registry
from lineguard.models.training import train_line_model
from lineguard.stream.processor import RawRecord, TelemetryProcessor

SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "data" / "skab" / "valve1" / "0.csv"


def _record(run, line: str, seq: int, start: int, n: int = 30) -> RawRecord:
    batch = TelemetryBatch(
        "site-1",
        line,
        "gw",
        seq,
        run.sensors,
        run.time_us[start : start + n],
        run.values[start : start + n],
    )
    return RawRecord(encode(batch), line.encode(), "t", 0, seq)


def test_a_model_that_fails_to_load_dead_letters_its_line_only(tmp_path) -> None:
    run = read_run(SAMPLE)
    registry = Registry(tmp_path / "registry")
    train_line_model(registry, run, "good", rows=400)
    train_line_model(registry, run, "broken", rows=400)
    # Tamper with the stored artifact: its sha256 no longer matches the manifest.
    (artifact,) = (tmp_path / "registry" / "broken").glob("*/model.skops")
    artifact.write_bytes(artifact.read_bytes() + b"tampered")

    processor = TelemetryProcessor(registry)
    outcome = processor.process([_record(run, "broken", 0, 0), _record(run, "good", 0, 0)])
    assert [(d.stage, d.offset) for d in outcome.dead_letters] == [("route", 0)]
    assert "could not be loaded" in outcome.dead_letters[0].reason
    assert outcome.dead_letters[0].key == b"broken"
    # The other line of the same batch was scored, every frame.
    assert outcome.lines == {"good"}
    assert outcome.frames_scored == 30


def test_a_failing_shadow_is_stopped_and_live_scoring_goes_on(tmp_path) -> None:
    from lineguard.models.announce import Announcement
    from lineguard.stream.model_updates import ModelUpdates

    run = read_run(SAMPLE)
    registry = Registry(tmp_path / "registry")
    active = train_line_model(registry, run, "press", rows=400)
    candidate = train_line_model(registry, run, "press", rows=300, activate=False)
    # The candidate's artifact no longer matches its manifest: loading it fails.
    artifact = tmp_path / "registry" / "press" / candidate.version / "model.skops"
    artifact.write_bytes(artifact.read_bytes() + b"tampered")
    updates = ModelUpdates()  # announcements applied in process: no topic needed
    sha = candidate.manifest["artifact"]["sha256"]
    updates.apply(Announcement("press", "shadow", candidate.version, sha).to_bytes())

    processor = TelemetryProcessor(registry, updates=updates)
    outcome = processor.process([_record(run, "press", 0, 0)])
    assert outcome.dead_letters == []
    assert outcome.frames_scored == 30
    assert processor.active_models() == {"press": active.version}
    # No point carries the broken shadow's version tag, and it is refused from now on.
    assert not any(f"model_version={candidate.version}" in block for block in outcome.influx_lines)
    assert updates.refused("press", candidate.version)
    again = processor.process([_record(run, "press", 1, 30)])
    assert again.frames_scored == 30 and again.dead_letters == []
