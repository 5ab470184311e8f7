"""Incident tracking: hysteresis, flapping, ranking, replays and resumption."""

from __future__ import annotations

import numpy as np
import pytest

from lineguard.detectors.incidents import (
    IncidentEvent,
    IncidentState,
    severity_band,
    track_incidents,
)

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


# The reference's own copy of the documented rules, not the module's constants:
# a frame's 1st, 2nd and 3rd sensor weigh 3, 2 and 1; the incident names its
# three heaviest sensors; peak/threshold below 2 is minor, below 5 major.
_REF_WEIGHTS = (3.0, 2.0, 1.0)


def _ref_severity(peak: float, threshold: float) -> str:
    ratio = peak / threshold
    return "minor" if ratio < 2 else "major" if ratio < 5 else "critical"


def _ref_most(counts: dict) -> str:
    """The key with the highest count; on a tie the first inserted (written out)."""
    if not counts:
        return ""
    top = max(counts.values())
    return next(k for k, v in counts.items() if v == top)


def _ref_event(kind, line, inc):
    weights = inc["sensor_weights"]
    ranked = sorted(weights, key=lambda s: (-weights[s], s))[:3]
    reason = _ref_most(inc["reason_frames"])
    return IncidentEvent(
        kind=kind,
        line=line,
        incident_id=f"{line}-{inc['start_us']}",
        start_us=int(inc["start_us"]),
        end_us=int(inc["last_alert_us"]),
        peak_score=float(inc["peak_score"]),
        threshold=float(inc["threshold"]),
        severity=_ref_severity(inc["peak_score"], inc["threshold"]),
        frames=int(inc["frames"]),
        top_sensors=tuple(ranked),
        model_version=str(inc["model_version"]),
        reason=reason,
        reason_sensor=_ref_most(inc["reason_sensors"].get(reason, {})),
        reasons=dict(inc["reason_frames"]),
    )


def _frame_by_frame(
    state, *, line, time_us, anomaly, score, threshold, top_sensors, close_after_s, reasons
):
    """The tracker's definition, one frame at a time (the reference)."""
    close_after_us = int(close_after_s * 1e6)
    inc = None
    if state.open is not None:
        inc = {
            **state.open,
            "sensor_weights": dict(state.open["sensor_weights"]),
            "reason_frames": dict(state.open["reason_frames"]),
            "reason_sensors": {k: dict(v) for k, v in state.open["reason_sensors"].items()},
        }
    last_time, events, grew = state.last_time_us, [], False
    for i, t in enumerate(np.asarray(time_us).tolist()):
        if t <= last_time:
            continue
        last_time = t
        if inc is not None and t - inc["last_alert_us"] > close_after_us:
            events.append(_ref_event("close", line, inc))
            inc, grew = None, False
        if not anomaly[i]:
            continue
        opened = inc is None
        if opened:
            inc = {"start_us": t, "peak_score": float(score[i]), "threshold": threshold}
            inc |= {"frames": 0, "sensor_weights": {}, "model_version": "v0001"}
            inc |= {"reason_frames": {}, "reason_sensors": {}}
        inc["last_alert_us"] = t
        inc["frames"] += 1
        inc["peak_score"] = max(inc["peak_score"], float(score[i]))
        names = top_sensors[i].split(",") if top_sensors[i] else ()
        for weight, name in zip(_REF_WEIGHTS, names, strict=False):
            inc["sensor_weights"][name] = inc["sensor_weights"].get(name, 0.0) + weight
        if reasons[i]:
            frames = inc["reason_frames"]
            frames[reasons[i]] = frames.get(reasons[i], 0) + 1
            if names:
                behind = inc["reason_sensors"].setdefault(reasons[i], {})
                behind[names[0]] = behind.get(names[0], 0) + 1
        if opened:
            events.append(_ref_event("open", line, inc))
        grew = not opened
    if inc is not None and grew:
        events.append(_ref_event("update", line, inc))
    return IncidentState(last_time_us=last_time, open=inc), events


@pytest.mark.parametrize("seed", range(6))
def test_tracker_equals_its_frame_by_frame_definition_with_gaps_and_replays(seed: int) -> None:
    """Random alert bursts, gaps longer and shorter than the hysteresis, and
    replayed (older) frames inside batches: the vectorized tracker must give
    the same events and state as stepping through every frame."""
    rng = np.random.default_rng(seed)
    ours, reference = IncidentState(), IncidentState()
    clock = 1_600_000_000 * S
    for _ in range(25):
        n = int(rng.integers(0, 40))
        steps = rng.choice([1, 1, 1, 7, 30], size=n) * S
        times = clock + np.cumsum(steps)
        if n > 3 and rng.random() < 0.3:
            times[n // 2 :] -= 5 * S  # a replayed stretch: older than frames before it
        clock = int(times.max()) if n else clock
        frames = {
            "time_us": times,
            "anomaly": rng.random(n) < rng.choice([0.0, 0.2, 0.8]),
            "score": rng.gamma(2.0, size=n),
            "threshold": 1.0,
            "top_sensors": [",".join(rng.choice(list("abcde"), size=3)) for _ in range(n)],
            # Alert frames held by the debounce have no reason ("").
            "reasons": [str(r) for r in rng.choice(["", "score", "freeze", "step"], size=n)],
        }
        ours, got = track_incidents(
            ours, line="L1", model_version="v0001", close_after_s=20, **frames
        )
        reference, want = _frame_by_frame(reference, line="L1", close_after_s=20, **frames)
        assert got == want
        assert ours.to_dict() == reference.to_dict()


def test_an_incident_is_named_after_the_reason_most_of_its_frames_had() -> None:
    # Opens on the score, then a freeze check holds it on FT2 for longer;
    # the frame held by the debounce alone ("") counts for nothing.
    flags = [1, 1, 1, 1, 1, 1]
    reasons = ["score", "score", "freeze", "freeze", "freeze", ""]
    top = ["P1,T1", "P1,T1", "FT2,P1", "FT2,P1", "T1,FT2", "P1"]
    _, events = run(IncidentState(), flags, top=top, reasons=reasons)
    last = events[-1]
    assert (last.reason, last.reason_sensor) == ("freeze", "FT2")
    assert last.reasons == {"score": 2, "freeze": 3}
    message = last.to_message("site-1")
    assert (message["reason"], message["reason_sensor"]) == ("freeze", "FT2")
    assert message["reasons"] == {"score": 2, "freeze": 3}
    # The opening event was named after the only reason seen by then.
    assert (events[0].kind, events[0].reason, events[0].reason_sensor) == ("open", "score", "P1")


def test_a_tie_between_reasons_goes_to_the_one_seen_first() -> None:
    _, events = run(
        IncidentState(), [1, 1, 1, 1], top=["a,b"] * 4, reasons=["step", "score", "score", "step"]
    )
    assert events[-1].reason == "step"


def test_an_incident_state_saved_before_reasons_existed_resumes_and_gains_them() -> None:
    saved = {
        "last_time_us": 1_600_000_000 * S,
        "open": {
            "start_us": 1_600_000_000 * S,
            "last_alert_us": 1_600_000_000 * S,
            "peak_score": 3.0,
            "threshold": 1.0,
            "frames": 1,
            "sensor_weights": {"a": 3.0},
            "model_version": "v0001",
        },
    }
    state = IncidentState.from_dict(saved)
    _, events = run(state, [1, 1], start_s=1, reasons=["relation", "relation"], top=["b,a"] * 2)
    assert [e.kind for e in events] == ["update"]
    assert (events[0].reason, events[0].reason_sensor, events[0].frames) == ("relation", "b", 3)
    assert saved["open"].keys() == {
        "start_us",
        "last_alert_us",
        "peak_score",
        "threshold",
        "frames",
        "sensor_weights",
        "model_version",
    }  # the caller's state is not modified


def test_without_reasons_an_incident_message_has_no_reason_fields() -> None:
    _, events = run(IncidentState(), [1, 1])
    message = events[-1].to_message("site-1")
    assert not {"reason", "reason_sensor", "reasons"} & message.keys()
