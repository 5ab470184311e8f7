"""SKAB pointwise metrics and QA's event counts."""

from __future__ import annotations

import numpy as np
import pytest

from lineguard.models.metrics import score_alerts, segments


def test_segments() -> None:
    assert segments(np.array([0, 1, 1, 0, 1])) == [(1, 3), (4, 5)]
    assert segments(np.zeros(4)) == []


def test_pointwise_and_event_counts() -> None:
    labels = np.array([0, 0, 1, 1, 1, 0, 0, 0, 1, 1, 0, 0])
    preds = np.array([1, 0, 0, 1, 1, 1, 0, 0, 0, 0, 1, 1])
    s = score_alerts(labels, preds)
    assert (s.tp, s.fp, s.tn, s.fn) == (2, 4, 3, 3)
    assert s.f1 == pytest.approx(2 / (2 + 3.5))
    assert s.far == pytest.approx(100 * 4 / 7)
    assert s.mar == pytest.approx(100 * 3 / 5)
    assert (s.events, s.events_detected) == (2, 1)
    assert s.false_alarm_events == 2  # the first frame and the last two; the third touches a fault
    total = s + s
    assert total.tp == 4 and total.f1 == pytest.approx(s.f1)


def test_misaligned_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="align"):
        score_alerts(np.zeros(3), np.zeros(4))
