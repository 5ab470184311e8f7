"""Incident tracking: hysteresis, flapping, ranking, replays and resumption."""

from __future__ import annotations

import numpy as np
import pytest

from lineguard.detectors.incidents import IncidentState, severity_band, track_incidents

S = 1_000_000  # one second in microseconds


def run(state, flags, start_s=0, scores=None, top=None, **kw):
    n = len(flags)
    time_us = (start_s + np.arange(n)) * S + 1_600_000_000 * S
    return track_incidents(
        state,
        line="L1",
        time_us=time_us,
        anomaly=np.array(flags, dtype=bool),
        score=np.array(scores if scores is not None else [2.0] * n, dtype=float),
        threshold=1.0,
        top_sensors=top or ["a,b,c"] * n,
        model_version="v0001",
        **kw,
    )


def test_a_flapping_signal_is_one_incident() -> None:
    flags = ([1] * 3 + [0] * 10) * 10  # 10 bursts, 10 s apart: within the hysteresis
    state, events = run(IncidentState(), flags, close_after_s=30)
    assert [e.kind for e in events] == ["open", "update"]
    assert events[-1].frames == 30 and state.open is not None


def test_an_incident_closes_after_quiet_data_time_and_a_new_one_opens() -> None:
    flags = [1] * 5 + [0] * 40 + [1] * 2
    _state, events = run(IncidentState(), flags, close_after_s=30)
    kinds = [e.kind for e in events]
    assert kinds == ["open", "close", "open", "update"]
    closed = events[1]
    assert closed.state == "closed" and closed.frames == 5 and closed.duration_s == 4
    assert events[2].incident_id != closed.incident_id


def test_peak_severity_and_sensor_ranking() -> None:
    scores = [1.5, 6.0, 2.0]
    top = ["flow,temp,pressure", "temp,flow", "temp"]
    _, events = run(IncidentState(), [1, 1, 1], scores=scores, top=top)
    last = events[-1]
    assert last.peak_score == 6.0 and last.severity == "critical"
    assert last.top_sensors == ("temp", "flow", "pressure")
    assert severity_band(1.5, 1.0) == "minor" and severity_band(3, 1) == "major"


def test_batches_give_the_same_incidents_as_one_pass_and_replays_count_once() -> None:
    flags = [0, 1, 1, 0, 0] * 4 + [0] * 40 + [1, 1]
    whole_state, whole = run(IncidentState(), flags, close_after_s=10)
    state = IncidentState()
    pieces = []
    for start in range(0, len(flags), 7):
        state, events = run(state, flags[start : start + 7], start_s=start, close_after_s=10)
        pieces += events
        # A replay of the same frames (crash before commit) changes nothing.
        state, again = run(state, flags[start : start + 7], start_s=start, close_after_s=10)
        assert again == []
    opened = [e.incident_id for e in pieces if e.kind == "open"]
    assert opened == [e.incident_id for e in whole if e.kind == "open"]
    closes = [(e.incident_id, e.frames) for e in pieces if e.kind == "close"]
    assert closes == [(e.incident_id, e.frames) for e in whole if e.kind == "close"]
    assert state.to_dict() == whole_state.to_dict()


def test_state_round_trips_through_json_dicts() -> None:
    state, _ = run(IncidentState(), [1, 1])
    again = IncidentState.from_dict(state.to_dict())
    assert again == state
    assert IncidentState.from_dict(None) == IncidentState()


@pytest.mark.parametrize("flags", [[0] * 5, []])
def test_quiet_lines_have_no_incidents(flags) -> None:
    state, events = run(IncidentState(), flags)
    assert events == [] and state.open is None
