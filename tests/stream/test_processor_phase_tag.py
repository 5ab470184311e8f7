"""A batch line whose phase arrives as one integer tag, through the worker's
processor (no broker): the tag's modes reach the alerts."""

from __future__ import annotations

import numpy as np

from lineguard.detectors.sensor_checks import REASONS
from lineguard.ingest.contract import TelemetryBatch, encode
from lineguard.models.registry import Registry
from lineguard.models.training import train_from_rows
from lineguard.stream.processor import RawRecord, TelemetryProcessor
from tests.detectors.test_sensor_checks_phases import LEVEL, PHASE, SENSORS, _line, _phase_rows

SECOND_US = 1_000_000
T0_US = 1_700_000_000 * SECOND_US


def _records(X: np.ndarray, t: np.ndarray, size: int) -> list[RawRecord]:
    out = []
    for seq, lo in enumerate(range(0, len(X), size)):
        batch = TelemetryBatch(
            "site-1", "reactor", "gw", seq, tuple(SENSORS), t[lo : lo + size], X[lo : lo + size]
        )
        out.append(RawRecord(encode(batch), b"reactor", "t", 0, seq))
    return out


def test_a_stuck_level_and_an_unknown_phase_raise_alerts_naming_them(tmp_path) -> None:
    train = _line(0, 6)
    registry = Registry(tmp_path)
    t_train = T0_US + np.arange(len(train), dtype=np.int64) * SECOND_US
    train_from_rows(registry, "reactor", sensors=SENSORS, time_us=t_train, X=train, source="toy")

    X = _line(6, 2)
    fill = _phase_rows(1)
    X[fill.start + 40 : fill.stop, LEVEL] = X[fill.start + 40, LEVEL]  # first batch: stuck
    X[560 + 300 : 560 + 330, PHASE] = 7.0  # second batch: a phase never run in training
    t = t_train[-1] + 3600 * SECOND_US + np.arange(len(X), dtype=np.int64) * SECOND_US
    processor = TelemetryProcessor(registry)
    raised = []
    reasons = []
    for rec in _records(X, t, 25):
        outcome = processor.process([rec])
        assert not outcome.dead_letters
        raised += [a for _, a in outcome.alerts if a["state"] == "raised"]
        reasons += [r.reason for r in outcome.results]
    reason = np.concatenate(reasons)
    assert len(reason) == len(X)
    stuck = slice(fill.start + 50, fill.stop)
    assert (reason[stuck] == REASONS.index("freeze")).all(), reason[stuck]
    unknown = slice(560 + 300, 560 + 330)
    assert (reason[unknown] == REASONS.index("unseen_mode")).all(), reason[unknown]
    # The tag is no process sensor: its switches between phases fire no
    # step or relation check.
    assert not np.isin(reason, [REASONS.index("step"), REASONS.index("relation")]).any()
    # The alerts name the sensor behind each: the level while it is stuck
    # (raised by the score, a frame before the freeze check), the tag in the
    # unknown phase.
    at = {(a["time_us"] - int(t[0])) // SECOND_US: a for a in raised}
    stuck_alerts = [a for i, a in at.items() if fill.start + 40 <= i < fill.stop]
    assert stuck_alerts and all(a["reason_sensor"] == "level" for a in stuck_alerts), raised
    unknown_alerts = [a for i, a in at.items() if unknown.start <= i < unknown.stop]
    assert [(a["reason"], a["reason_sensor"]) for a in unknown_alerts] == [
        ("unseen_mode", "phase")
    ], raised
