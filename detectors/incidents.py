"""Incidents: what plant QA acts on, built from a line's alert frames.

A fault rarely keeps every frame above threshold: a valve chatters, a score
hovers near the limit. Paging once per crossing would bury QA in dozens of
alerts for one problem. An incident therefore opens at the first alert frame
and closes only after the line has been quiet for ``close_after_s`` seconds
of *data time* (hysteresis). Data time, not wall-clock time, makes the result
the same whether a line is scored live, replayed, or re-scored after a crash.

Each incident carries its start, end, peak score, a severity band (peak score
relative to the threshold) and the sensors that drove it, ranked by how much
they contributed over all its alert frames.

It also carries why its frames alerted: the **dominant reason** (the reason
most of its exceeding alert frames had: the multivariate score, or the
sensor check that fired), the sensor most often behind that reason, and the
frames per reason. Dominant rather than first: a fault often crosses the
score threshold a frame or two before a check fires (or the other way
round), and the first reason would then name the incident after its
opening frames, not after what held it; rather than the set: QA needs one
cause to act on, and the counts beside it keep the rest. Alert frames
without a reason (held by the k-of-n debounce while under every limit)
count for nothing. The tracker is a pure function of
(state, frames); its state is a small JSON-friendly dict so the worker can
keep it in a changelogged table and resume after a restart or rebalance.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lineguard.contracts import INCIDENT_SCHEMA

__all__ = [
    "CLOSE_AFTER_S",
    "IncidentEvent",
    "IncidentState",
    "dominant_reason",
    "severity_band",
    "track_incidents",
]

#: A line must stay quiet this long (data time) before its incident closes:
#: a fault that comes back within a minute is the same problem to QA.
CLOSE_AFTER_S = 60.0
#: Severity bands by peak score / threshold: below 2 minor, below 5 major.
SEVERITY_BANDS: tuple[tuple[float, str], ...] = ((2.0, "minor"), (5.0, "major"))
TOP_SENSORS = 3
# Weights of a frame's 1st, 2nd and 3rd contributing sensor when ranking an
# incident's sensors.
_RANK_WEIGHTS = (3.0, 2.0, 1.0)


def dominant_reason(frames: dict[str, int]) -> str:
    """The reason with the most frames; on a tie the one seen first.

    Parameters
    ----------
    frames : dict of str to int
        Frames per reason, in the order the reasons were first seen (dicts
        keep insertion order, also through JSON).

    Returns
    -------
    str
        ``""`` when there is no reason at all.
    """
    best, most = "", 0
    for name, count in frames.items():
        if name and count > most:
            best, most = name, count
    return best


def severity_band(peak_score: float, threshold: float) -> str:
    """``minor``, ``major`` or ``critical`` by how far the peak exceeds the threshold."""
    ratio = peak_score / threshold if threshold > 0 else float("inf")
    for limit, name in SEVERITY_BANDS:
        if ratio < limit:
            return name
    return "critical"


@dataclass
class IncidentState:
    """A line's incident tracking state.

    Attributes
    ----------
    last_time_us : int
        Newest frame time seen; older frames (replays after a crash) are
        skipped, so an incident is never counted twice.
    open : dict or None
        The open incident: ``start_us``, ``last_alert_us``, ``peak_score``,
        ``threshold``, ``frames``, ``sensor_weights``, ``model_version``,
        ``reason_frames`` (frames per reason, first seen first) and
        ``reason_sensors`` (per reason, frames per sensor behind it). A state
        saved before the reasons existed has neither and starts them empty.
    """

    last_time_us: int = -1
    open: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form, for the worker's changelogged table."""
        return {"last_time_us": self.last_time_us, "open": self.open}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> IncidentState:
        """Inverse of :meth:`to_dict`; ``None`` gives a fresh state."""
        if not data:
            return cls()
        return cls(last_time_us=int(data.get("last_time_us", -1)), open=data.get("open"))


@dataclass(frozen=True)
class IncidentEvent:
    """An incident as it stands after an ``open``, ``update`` or ``close``."""

    kind: str
    line: str
    incident_id: str
    start_us: int
    end_us: int
    peak_score: float
    threshold: float
    severity: str
    frames: int
    top_sensors: tuple[str, ...]
    model_version: str
    extra: dict[str, Any] = field(default_factory=dict)
    reason: str = ""
    reason_sensor: str = ""
    reasons: dict[str, int] = field(default_factory=dict)

    @property
    def state(self) -> str:
        """``closed`` after a close event, else ``open``."""
        return "closed" if self.kind == "close" else "open"

    @property
    def duration_s(self) -> float:
        """Seconds from the first to the last alert frame."""
        return (self.end_us - self.start_us) / 1e6

    def to_message(self, site: str) -> dict[str, Any]:
        """The incidents-topic message (``lineguard.incident.v1``)."""
        return {
            "schema": INCIDENT_SCHEMA,
            "event": self.kind,
            "state": self.state,
            "site": site,
            "line": self.line,
            "incident_id": self.incident_id,
            "start_us": self.start_us,
            "end_us": self.end_us,
            "duration_s": self.duration_s,
            "peak_score": self.peak_score,
            "threshold": self.threshold,
            "severity": self.severity,
            "frames": self.frames,
            "top_sensors": list(self.top_sensors),
            "model_version": self.model_version,
            # Optional fields of the schema, present once a frame had a reason.
            **({"reason": self.reason} if self.reason else {}),
            **({"reason_sensor": self.reason_sensor} if self.reason_sensor else {}),
            **({"reasons": dict(self.reasons)} if self.reasons else {}),
        }


def _event(kind: str, line: str, inc: dict[str, Any]) -> IncidentEvent:
    weights = inc["sensor_weights"]
    ranked = sorted(weights, key=lambda s: (-weights[s], s))[:TOP_SENSORS]
    reasons = {k: int(v) for k, v in inc.get("reason_frames", {}).items()}
    reason = dominant_reason(reasons)
    behind = inc.get("reason_sensors", {}).get(reason, {})
    return IncidentEvent(
        kind=kind,
        line=line,
        incident_id=f"{line}-{inc['start_us']}",
        start_us=int(inc["start_us"]),
        end_us=int(inc["last_alert_us"]),
        peak_score=float(inc["peak_score"]),
        threshold=float(inc["threshold"]),
        severity=severity_band(float(inc["peak_score"]), float(inc["threshold"])),
        frames=int(inc["frames"]),
        top_sensors=tuple(ranked),
        model_version=str(inc["model_version"]),
        reason=reason,
        reason_sensor=dominant_reason(behind),
        reasons=reasons,
    )


def _add_frames(
    inc: dict[str, Any],
    times: np.ndarray,
    scores: np.ndarray,
    tops: list[str],
    whys: list[str] | None,
    lo: int,
    hi: int,
    model_version: str,
) -> None:
    """Add alert frames ``lo:hi`` (of one incident, in time order) to ``inc``.

    Counts are taken per distinct top-sensor string and reason (``Counter``,
    in C, in order of first appearance), so a long alert costs a few dict
    updates, not a Python step per frame. The weights are small integers, so
    their sums are exact whatever the order of the additions; the dicts keep
    the frame-by-frame insertion order, which breaks reason ties.
    """
    if hi <= lo:
        return
    inc["last_alert_us"] = int(times[hi - 1])
    inc["frames"] += hi - lo
    inc["model_version"] = model_version
    block = scores[lo:hi]
    if np.isnan(block).any():
        for peak in block.tolist():  # max() as a running step: NaN never wins
            inc["peak_score"] = max(inc["peak_score"], peak)
    else:
        inc["peak_score"] = max(inc["peak_score"], float(block.max()))
    weights = inc["sensor_weights"]
    for names, count in Counter(tops[lo:hi]).items():
        for weight, name in zip(_RANK_WEIGHTS, names.split(",") if names else (), strict=False):
            weights[name] = weights.get(name, 0.0) + weight * count
    if whys is None:
        return
    frames = inc["reason_frames"]
    sensors = inc["reason_sensors"]
    for (why, names), count in Counter(zip(whys[lo:hi], tops[lo:hi], strict=True)).items():
        if not why:
            continue
        frames[why] = frames.get(why, 0) + count
        sensor = names.split(",", 1)[0]
        if sensor:
            behind = sensors.setdefault(why, {})
            behind[sensor] = behind.get(sensor, 0) + count


def track_incidents(
    state: IncidentState,
    *,
    line: str,
    time_us: np.ndarray,
    anomaly: np.ndarray,
    score: np.ndarray,
    threshold: float,
    top_sensors: Sequence[str],
    model_version: str,
    close_after_s: float = CLOSE_AFTER_S,
    reasons: Sequence[str] | None = None,
) -> tuple[IncidentState, list[IncidentEvent]]:
    """Advance a line's incident state over one micro-batch of scored frames.

    Parameters
    ----------
    state : IncidentState
        The line's state before these frames (not modified).
    line : str
        The line id; incident ids are ``<line>-<start_us>``, stable across
        replays.
    time_us, anomaly, score : ndarray, shape (n,)
        Frame times, debounced alert flags and anomaly scores, in order.
    threshold : float
        The model's threshold, for the severity band.
    top_sensors : sequence of str, length n
        Each frame's contributing sensors, comma-separated, most first.
    model_version : str
        The version that scored the frames.
    close_after_s : float
        Hysteresis: quiet data time before an incident closes.
    reasons : sequence of str, length n, optional
        Each frame's reason name (``""`` where it does not exceed); its
        sensor is the frame's first ``top_sensors`` (the check's sensor
        comes first where a check fired). None: no reasons.

    Returns
    -------
    new_state : IncidentState
    events : list of IncidentEvent
        ``open`` and ``close`` events in order, and one ``update`` at the end
        of the batch for an incident that stays open and grew.
    """
    close_after_us = int(close_after_s * 1e6)
    inc = None
    if state.open is not None:
        # Copies of the nested counters: the caller's state is not modified.
        inc = {
            **state.open,
            "sensor_weights": dict(state.open["sensor_weights"]),
            "reason_frames": dict(state.open.get("reason_frames", {})),
            "reason_sensors": {k: dict(v) for k, v in state.open.get("reason_sensors", {}).items()},
        }
    last_time = state.last_time_us
    events: list[IncidentEvent] = []
    grew = False
    times_a = np.asarray(time_us, dtype=np.int64)
    flags_a = np.asarray(anomaly, dtype=bool)
    if times_a.shape[0] == 0:
        return IncidentState(last_time_us=last_time, open=inc), events
    # A frame counts only if it is newer than every frame before it (older
    # ones are replays after a crash, or duplicates).
    newest_before = np.maximum.accumulate(np.concatenate(([last_time], times_a[:-1])))
    admitted = times_a > newest_before
    if not admitted.any():
        return IncidentState(last_time_us=last_time, open=inc), events
    last_time = int(times_a[admitted][-1])
    # Between two alert frames an open incident's last alert time is fixed
    # and admitted times only grow, so whether it closes is decided by the
    # next alert frame's time (or, after the last one, by the newest frame):
    # only alert frames are looked at, and they are counted per run.
    alerts = np.flatnonzero(admitted & flags_a)
    if alerts.size:
        t_alert = times_a[alerts]
        scores = np.asarray(score, dtype=np.float64)[alerts]
        tops = [top_sensors[i] for i in alerts.tolist()]
        whys = [reasons[i] for i in alerts.tolist()] if reasons is not None else None
        # Incidents are runs of alert frames no more than close_after apart;
        # the first run continues the open incident unless it went quiet.
        cuts = (np.flatnonzero(np.diff(t_alert) > close_after_us) + 1).tolist()
        continues = inc is not None and int(t_alert[0]) - inc["last_alert_us"] <= close_after_us
        edges = [0, *cuts, alerts.size]
        for lo, hi in itertools.pairwise(edges):
            if lo == 0 and continues:
                _add_frames(inc, t_alert, scores, tops, whys, lo, hi, model_version)
                grew = True
                continue
            if inc is not None:
                events.append(_event("close", line, inc))
            inc = {
                "start_us": int(t_alert[lo]),
                "last_alert_us": int(t_alert[lo]),
                "peak_score": float(scores[lo]),
                "threshold": float(threshold),
                "frames": 0,
                "sensor_weights": {},
                "model_version": model_version,
                "reason_frames": {},
                "reason_sensors": {},
            }
            # The open event carries the incident as its first frame left it.
            _add_frames(inc, t_alert, scores, tops, whys, lo, lo + 1, model_version)
            events.append(_event("open", line, inc))
            _add_frames(inc, t_alert, scores, tops, whys, lo + 1, hi, model_version)
            grew = hi - lo > 1
    if inc is not None and last_time - inc["last_alert_us"] > close_after_us:
        events.append(_event("close", line, inc))
        inc, grew = None, False
    if inc is not None and grew:
        events.append(_event("update", line, inc))
    return IncidentState(last_time_us=last_time, open=inc), events
