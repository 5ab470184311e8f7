"""Duplicate drop by (gateway, seq), clock checks, and historical frames in the
worker's calculation (no broker needed)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import orjson
import pytest

from lineguard.detectors.admission import DEDUP_WINDOW, MAX_FUTURE_S, SeenSequences
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


def _records(run, size=50, gateway="gw", historical=False, first_seq=0):
    out = []
    for i, start in enumerate(range(0, len(run), size)):
        batch = TelemetryBatch(
            "site-1",
            LINE,
            gateway,
            first_seq + i,
            run.sensors,
            run.time_us[start : start + size],
            run.values[start : start + size],
            historical=historical,
        )
        out.append(RawRecord(encode(batch), LINE.encode(), "t", 0, i))
    return out


def test_seen_sequences_drop_repeats_within_the_window_even_out_of_order() -> None:
    seen = SeenSequences()
    assert [seen.admit("gw", s) for s in (5, 7, 6, 7, 5, 8)] == [
        True,
        True,
        True,
        False,
        False,
        True,
    ]
    assert seen.admit("other-gw", 7)  # numbers are per gateway
    resumed = SeenSequences(orjson.loads(orjson.dumps(seen.to_dict())))
    assert not resumed.admit("gw", 6) and resumed.admit("gw", 4)
    # Far below the window (gateway state wiped, or a very late copy): accepted.
    seen.admit("gw", 8 + 2 * DEDUP_WINDOW)
    assert seen.admit("gw", 3)


def test_resent_records_are_dropped_not_scored_twice(registry, run) -> None:
    recs = _records(run)
    processor = TelemetryProcessor(registry)
    first = processor.process(recs[:10])
    # A gateway retry resends records 5..14: 5..9 are copies.
    again = processor.process(recs[5:15])
    assert again.duplicates == 5
    assert again.frames_scored == sum(r.n_frames for r in map(_decode, recs[10:15]))
    # Same scores as a clean run without the copies.
    clean = TelemetryProcessor(registry)
    expected = clean.process(recs[:10]), clean.process(recs[10:15])
    np.testing.assert_allclose(again.results[0].score, expected[1].results[0].score)
    assert first.duplicates == 0 and not again.dead_letters


def test_dedup_state_survives_a_restart_through_export_and_restore(registry, run) -> None:
    recs = _records(run)
    processor = TelemetryProcessor(registry)
    processor.process(recs[:8])
    saved = orjson.loads(orjson.dumps(processor.export_state(LINE)))  # the table round trip
    restarted = TelemetryProcessor(registry)
    restarted.restore_state(LINE, saved)
    outcome = restarted.process(recs[4:12])  # an uncommitted batch read again
    assert outcome.duplicates == 4 and outcome.frames_scored == 4 * 50


def test_frames_far_in_the_future_are_dead_lettered_with_the_reason(registry, run) -> None:
    now_us = time.time_ns() // 1000
    ahead = now_us + int((MAX_FUTURE_S + 3600) * 1e6)
    batch = TelemetryBatch("site-1", LINE, "gw", 1, run.sensors, np.array([ahead]), run.values[:1])
    outcome = TelemetryProcessor(registry).process([RawRecord(encode(batch), LINE.encode())])
    assert outcome.frames_scored == 0
    (letter,) = outcome.dead_letters
    assert letter.stage == "admit" and "in the future" in letter.reason
    # Slightly ahead (a little gateway clock skew) is fine.
    ok = TelemetryBatch(
        "site-1", LINE, "gw", 2, run.sensors, np.array([now_us + 10_000_000]), run.values[:1]
    )
    assert TelemetryProcessor(registry).process([RawRecord(encode(ok))]).frames_scored == 1


def test_historical_frames_are_scored_and_stored_but_raise_no_live_alert(registry, run) -> None:
    live = TelemetryProcessor(registry).process(_records(run))
    late = TelemetryProcessor(registry).process(_records(run, historical=True))
    assert live.alerts, "the labelled fault should raise alerts when live"
    assert late.alerts == []
    assert late.historical_alerts_suppressed == len(live.alerts)
    assert late.frames_scored == live.frames_scored == len(run)
    assert all("historical=true" in chunk for chunk in late.influx_lines[:1])
    # Incidents are QA records: still opened from late frames, flagged historical.
    assert late.incidents and all(m["historical"] for _, m in late.incidents)
    assert [m["incident_id"] for _, m in late.incidents] == [
        m["incident_id"] for _, m in live.incidents
    ]
    assert not any(m["historical"] for _, m in live.incidents)


def _decode(record):
    from lineguard.ingest.contract import decode

    return decode(record.value)
