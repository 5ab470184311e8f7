"""Imputed readings are counted per line and sensor, and a sensor missing
from a whole record raises an alert of its own (dead or unmapped sensor)."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import numpy as np
import pytest

from lineguard.contracts import ALERT_SCHEMA, message_schema
from lineguard.detectors.scoring import sensor_gaps
from lineguard.ingest.contract import TelemetryBatch, encode
from lineguard.ingest.csv_runs import read_run
from lineguard.models.registry import Registry
from lineguard.models.training import train_line_model
from lineguard.stream.processor import RawRecord, TelemetryProcessor

SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "data" / "skab" / "valve1" / "0.csv"
LINE = "valve1-0"


@pytest.fixture(scope="module")
def run():
    return read_run(SAMPLE)


@pytest.fixture(scope="module")
def registry(tmp_path_factory, run):
    registry = Registry(tmp_path_factory.mktemp("registry"))
    train_line_model(registry, run, LINE, rows=400)
    return registry


def record(run, seq: int, rows: slice, drop: str | None = None, blank: str | None = None):
    sensors = [s for s in run.sensors if s != drop]
    values = run.values[rows][:, [run.sensors.index(s) for s in sensors]].copy()
    if blank is not None:
        values[::2, sensors.index(blank)] = np.nan  # every other reading lost
    batch = TelemetryBatch("site-1", LINE, "gw", seq, tuple(sensors), run.time_us[rows], values)
    return RawRecord(encode(batch), LINE.encode(), "t", 0, seq)


def test_sensor_gaps_counts_missing_readings_and_dead_columns() -> None:
    X = np.array([[1.0, np.nan, np.nan], [2.0, 5.0, np.nan], [np.nan, 6.0, np.nan]])
    gaps = sensor_gaps(X)
    assert gaps.imputed.tolist() == [1, 1, 3]
    assert gaps.dead.tolist() == [False, False, True]
    assert gaps.dead_names(["a", "b", "c"]) == ["c"]
    assert sensor_gaps(np.zeros((0, 2))).dead.tolist() == [False, False]
    full = sensor_gaps(np.ones((4, 2)))  # the common record: nothing missing
    assert full.imputed.tolist() == [0, 0]
    assert full.dead.tolist() == [False, False]


def test_worker_counts_imputed_frames_per_line_and_sensor(registry, run) -> None:
    processor = TelemetryProcessor(registry)
    outcome = processor.process([record(run, 0, slice(0, 40), blank="Pressure")])
    assert outcome.imputed == {(LINE, "Pressure"): 20}
    # Gaps, not a dead sensor (score alerts have reasons of their own).
    assert not [a for _, a in outcome.alerts if a.get("reason") == "dead_or_unmapped_sensor"]


def test_a_sensor_missing_from_a_whole_record_raises_and_clears_an_alert(registry, run) -> None:
    processor = TelemetryProcessor(registry)
    first = processor.process([record(run, 0, slice(0, 30), drop="Pressure")])
    assert first.imputed == {(LINE, "Pressure"): 30}
    (raised,) = [a for _, a in first.alerts if a.get("reason") == "dead_or_unmapped_sensor"]
    assert (raised["state"], raised["sensors"], raised["line"]) == ("raised", ["Pressure"], LINE)
    assert raised["time_us"] == int(run.time_us[0])
    # Still missing: no second page for the same sensor.
    again = processor.process([record(run, 1, slice(30, 60), drop="Pressure")])
    assert not [a for _, a in again.alerts if a.get("reason") == "dead_or_unmapped_sensor"]
    back = processor.process([record(run, 2, slice(60, 90))])
    (cleared,) = [a for _, a in back.alerts if a.get("reason") == "dead_or_unmapped_sensor"]
    assert (cleared["state"], cleared["sensors"]) == ("cleared", ["Pressure"])
    # Both follow the published alert schema (they carry no score).
    for message in (raised, cleared):
        jsonschema.Draft202012Validator(message_schema(ALERT_SCHEMA)).validate(message)
    assert back.imputed == {}


def test_a_dead_sensor_alert_survives_a_restart_raised_once_and_cleared_once(registry, run) -> None:
    """The line state carries the dead sensors: a worker resuming the line
    neither pages again for a sensor still dead nor forgets to clear it."""
    processor = TelemetryProcessor(registry)
    first = processor.process([record(run, 0, slice(0, 30), drop="Pressure")])
    assert [
        a["state"] for _, a in first.alerts if a.get("reason") == "dead_or_unmapped_sensor"
    ] == ["raised"]
    snapshot = processor.export_state(LINE)
    assert snapshot["dead"] == ["Pressure"]
    resumed = TelemetryProcessor(registry)
    resumed.restore_state(LINE, snapshot)
    again = resumed.process([record(run, 1, slice(30, 60), drop="Pressure")])
    assert not [a for _, a in again.alerts if a.get("reason") == "dead_or_unmapped_sensor"]
    back = resumed.process([record(run, 2, slice(60, 90))])
    (cleared,) = [a for _, a in back.alerts if a.get("reason") == "dead_or_unmapped_sensor"]
    assert (cleared["state"], cleared["sensors"]) == ("cleared", ["Pressure"])
