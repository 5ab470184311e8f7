"""The stream worker's calculation: records in, results out, no network I/O.

:class:`TelemetryProcessor` takes one micro-batch of raw Kafka records (any
mix of lines), decodes them, routes each line's frames to that line's active
model, scores them in one vectorized call per line, applies the debounced
threshold, and returns what must be written and published: InfluxDB line
protocol, alert messages and dead letters. The Faust worker
(:mod:`lineguard.stream`) only moves these to and from the network,
and offline evaluation drives the very same object, so what is measured is
what runs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lineguard.contracts import (
    ALERT_SCHEMA,
    DEAD_SENSOR_REASON,
    INCIDENT_MEASUREMENT,
    REASON_FIELD,
    REASON_SENSOR_FIELD,
    REASONS_FIELD,
    TELEMETRY_MEASUREMENT,
)
from lineguard.detectors.admission import SeenSequences, future_frames_reason
from lineguard.detectors.incidents import IncidentEvent, IncidentState, track_incidents
from lineguard.detectors.points import RESULT_MEASUREMENT, reason_names, result_points
from lineguard.detectors.scoring import ScoringState, score_batch, sensor_gaps
from lineguard.influx import encode_point, encode_points
from lineguard.ingest.contract import InvalidRecord, TelemetryBatch, decode
from lineguard.ingest.dead_letter import DeadLetter
from lineguard.models.registry import ModelBundle, Registry, RegistryError
from lineguard.stream.model_updates import carry_state, load_announced, shadow_lines

__all__ = [
    "ALERT_SCHEMA",
    "INCIDENT_MEASUREMENT",
    "RESULT_MEASUREMENT",
    "TELEMETRY_MEASUREMENT",
    "LineResult",
    "Outcome",
    "RawRecord",
    "TelemetryProcessor",
    "archive_lines",
    "top_sensor_names",
]

log = logging.getLogger(__name__)

# How often a worker looks for a newly activated model version of a line.
MODEL_CHECK_INTERVAL_S = 1.0


@dataclass(frozen=True)
class RawRecord:
    """One Kafka record as consumed, before decoding."""

    value: bytes | None
    key: bytes | None = None
    topic: str = ""
    partition: int = -1
    offset: int = -1


@dataclass
class LineResult:
    """One line's scored frames from one micro-batch (for views and evaluation).

    ``top_sensors`` is filled on frames over the threshold, in alert, or at
    an alert edge, and ``""`` elsewhere. ``reason`` holds each frame's reason
    code (``BatchResult.reason``; names: ``lineguard.detectors.points.REASON_NAMES``),
    0 where the frame does not exceed.
    """

    site: str
    line: str
    model_version: str
    time_us: np.ndarray
    score: np.ndarray
    threshold: float
    anomaly: np.ndarray
    top_sensors: list[str]
    reason: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int8))


@dataclass
class Outcome:
    """Everything one micro-batch produced."""

    influx_lines: list[str] = field(default_factory=list)
    alerts: list[tuple[bytes, dict[str, Any]]] = field(default_factory=list)
    incidents: list[tuple[bytes, dict[str, Any]]] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    results: list[LineResult] = field(default_factory=list)
    frames_scored: int = 0
    lines: set[str] = field(default_factory=set)
    # Records dropped as copies of an already processed (gateway, seq).
    duplicates: int = 0
    # Alert edges at historical (late, buffered) frames: not published.
    historical_alerts_suppressed: int = 0
    # Frames whose reading was missing and imputed, per (line, sensor).
    imputed: dict[tuple[str, str], int] = field(default_factory=dict)


@dataclass
class _Served:
    bundle: ModelBundle
    checked_at: float
    state: ScoringState | None = None
    alerting: bool = False
    # Why the open alert was raised (reason, sensor): its ``cleared`` message
    # names the same, so QA can pair the two edges without a lookup.
    raised_for: tuple[str, str] = ("", "")
    columns: dict[tuple[str, ...], np.ndarray] = field(default_factory=dict)
    # Sensors with no reading in the line's latest record (dead or unmapped).
    dead: tuple[str, ...] = ()


class TelemetryProcessor:
    """Score micro-batches of telemetry records with each line's model.

    Parameters
    ----------
    registry : Registry
        Where line models are found; each line's active version is served and
        a newly activated version is picked up between micro-batches.
    top_k : int
        How many contributing sensors to report per frame.
    """

    def __init__(self, registry: Registry, top_k: int = 3, updates: Any = None) -> None:
        self.registry = registry
        self.top_k = top_k
        # Model announcements (lineguard.stream.model_updates.ModelUpdates);
        # None: follow the registry's ACTIVE files only, and no shadows.
        self.updates = updates
        self._served: dict[str, _Served] = {}
        self._shadows: dict[str, _Served] = {}
        self._incidents: dict[str, IncidentState] = {}
        # Per line: (gateway, seq) already processed, to drop resent copies.
        self._seen: dict[str, SeenSequences] = {}
        # Line state restored from the worker's table, waiting for its model.
        self._restored: dict[str, dict[str, Any]] = {}
        # Verified bundles loaded ahead of traffic: (line, version) -> bundle.
        self._preloaded: dict[tuple[str, str], ModelBundle] = {}

    def preload(self, lines: Iterable[str] | None = None) -> int:
        """Load and verify the active models of ``lines`` before their traffic arrives.

        Loading a bundle (skops, hash check) takes tens of milliseconds, and
        the first one also imports skops: done on a line's first record it
        stalls that micro-batch, for every line of a newly assigned
        partition at once. The worker calls this when partitions are
        assigned, off the scoring path. Thread-safe with :meth:`process`: at
        worst a model is loaded twice. Returns how many bundles were loaded.
        """
        wanted = list(self.registry.lines() if lines is None else lines)
        # Bundles of lines this worker no longer serves are let go.
        for key in [k for k in self._preloaded if k[0] not in set(wanted)]:
            self._preloaded.pop(key, None)
        loaded = 0
        for line in wanted:
            announced = self.updates.active(line) if self.updates is not None else None
            version = (
                announced.version if announced is not None else self.registry.active_version(line)
            )
            if version is None or (line, version) in self._preloaded:
                continue
            served = self._served.get(line)
            if served is not None and served.bundle.version == version:
                continue
            try:
                self._preloaded[(line, version)] = load_announced(
                    self.registry, line, version, announced
                )
                loaded += 1
            except (RegistryError, OSError, ValueError, RuntimeError) as exc:
                # Scoring loads it again and reports the error where it matters.
                log.warning("line %s: could not preload %s: %s", line, version, exc)
        return loaded

    # -- model routing ---------------------------------------------------
    def _model_for(self, line: str, now: float) -> _Served | None:
        served = self._served.get(line)
        # An announced version (models topic) wins over the ACTIVE file and is
        # looked up every batch: a promotion switches at the next micro-batch.
        announced = self.updates.active(line) if self.updates is not None else None
        if served is not None and announced is not None:
            if announced.version == served.bundle.version:
                return served
        elif served is not None and now - served.checked_at < MODEL_CHECK_INTERVAL_S:
            return served
        active = announced.version if announced is not None else self.registry.active_version(line)
        if active is None:
            if served is not None:
                served.checked_at = now  # keep serving the last model we had
            return served
        if served is not None and served.bundle.version == active:
            served.checked_at = now
            return served
        try:
            bundle = self._preloaded.pop((line, active), None)
            if bundle is None or (
                announced is not None
                and announced.sha256
                and bundle.manifest["artifact"]["sha256"] != announced.sha256
            ):
                bundle = load_announced(self.registry, line, active, announced)
        except (RegistryError, OSError, ValueError, RuntimeError):
            if served is None or self.updates is None:
                raise
            # Never drop a working model for one that fails verification.
            if not self.updates.refused(line, active):  # log once, not every second
                log.exception(
                    "line %s: refusing %s; keeping %s", line, active, served.bundle.version
                )
            self.updates.refuse(line, active)
            served.checked_at = now
            return served
        old_state = served.state if served is not None else None
        if served is not None:
            log.info("line %s: switching model %s -> %s", line, served.bundle.version, active)
        carried = carry_state(served.bundle if served else None, bundle, old_state)
        alerting = served.alerting if served is not None and carried is not None else False
        raised_for = served.raised_for if alerting and served is not None else ("", "")
        served = _Served(
            bundle=bundle, checked_at=now, state=carried, alerting=alerting, raised_for=raised_for
        )
        restored = self._restored.pop(line, None)
        if restored and restored.get("model_version") == active and restored.get("scoring"):
            served.state = ScoringState.from_dict(restored["scoring"])
            served.alerting = bool(restored.get("alerting", False))
            served.raised_for = tuple(restored.get("raised_for") or ("", ""))  # type: ignore[assignment]
            served.dead = tuple(restored.get("dead", ()))
        self._served[line] = served
        return served

    # -- state that must survive restarts and rebalances ------------------
    def knows(self, line: str) -> bool:
        """Whether this processor already holds (or awaits) state for ``line``."""
        return (
            line in self._served
            or line in self._incidents
            or line in self._restored
            or line in self._seen
        )

    def export_state(self, line: str) -> dict[str, Any]:
        """A line's scoring, alert and incident state as a JSON-friendly dict."""
        served = self._served.get(line)
        incident = self._incidents.get(line, IncidentState())
        restored = self._restored.get(line)
        if served is None and restored is not None:
            # Restored but not scored yet (its records were all copies): its
            # scoring state is still the restored one, not an empty one.
            return {
                **restored,
                "incident": incident.to_dict(),
                "seen": self._seen[line].to_dict() if line in self._seen else {},
            }
        return {
            "model_version": served.bundle.version if served else None,
            "scoring": served.state.to_dict() if served and served.state else None,
            "alerting": served.alerting if served else False,
            "raised_for": list(served.raised_for) if served else ["", ""],
            # A dead sensor's alert is raised once and cleared once, across restarts too.
            "dead": list(served.dead) if served else [],
            "incident": incident.to_dict(),
            "seen": self._seen[line].to_dict() if line in self._seen else {},
        }

    def restore_state(self, line: str, state: dict[str, Any]) -> None:
        """Resume a line from :meth:`export_state` output (after a restart)."""
        self._incidents[line] = IncidentState.from_dict(state.get("incident"))
        self._seen[line] = SeenSequences(state.get("seen"))
        self._served.pop(line, None)
        self._restored[line] = state

    def forget(self) -> None:
        """Drop all line state (partitions were revoked; the table has it)."""
        self._served.clear()
        self._shadows.clear()
        self._incidents.clear()
        self._seen.clear()
        self._restored.clear()

    def active_models(self) -> dict[str, str]:
        """Line -> model version currently served."""
        return {line: s.bundle.version for line, s in self._served.items()}

    # -- the micro-batch -------------------------------------------------
    def process(self, records: Sequence[RawRecord]) -> Outcome:
        """Decode, route, score and format one micro-batch.

        Bad records become dead letters; they never raise.
        """
        outcome = Outcome()
        by_line: dict[str, list[tuple[RawRecord, TelemetryBatch]]] = {}
        now_us = time.time_ns() // 1000
        for record in records:
            try:
                batch = decode(record.value)
            except InvalidRecord as exc:
                outcome.dead_letters.append(_dead(record, str(exc), "decode"))
                continue
            skew = future_frames_reason(batch.time_us, now_us)
            if skew is not None:
                outcome.dead_letters.append(_dead(record, skew, "admit"))
                continue
            seen = self._seen.get(batch.line)
            if seen is None:
                seen = self._seen[batch.line] = SeenSequences()
            if not seen.admit(batch.gateway, batch.seq):
                outcome.duplicates += 1  # a resent copy: already scored and stored
                continue
            by_line.setdefault(batch.line, []).append((record, batch))

        now = time.monotonic()
        for line, items in by_line.items():
            try:
                served = self._model_for(line, now)
            except (RegistryError, OSError, ValueError, RuntimeError) as exc:
                reason = f"model for line {line!r} could not be loaded: {exc}"
                outcome.dead_letters.extend(_dead(r, reason, "route") for r, _ in items)
                continue
            if served is None:
                reason = f"no active model for line {line!r}; train and activate one first"
                outcome.dead_letters.extend(_dead(r, reason, "route") for r, _ in items)
                continue
            try:
                self._score_line(served, items, outcome)
            except Exception as exc:  # one line's failure must not stop the others
                log.exception("line %s: scoring failed", line)
                reason = f"scoring line {line!r} with {served.bundle.version} failed: {exc!r}"
                outcome.dead_letters.extend(_dead(r, reason, "score") for r, _ in items)
        return outcome

    def _aligned(self, served: _Served, batch: TelemetryBatch) -> np.ndarray | None:
        """The batch's values in the model's sensor order; NaN for absent sensors."""
        columns = served.columns.get(batch.sensors)
        if columns is None:
            position = {name: i for i, name in enumerate(batch.sensors)}
            columns = np.array([position.get(s, -1) for s in served.bundle.sensors])
            served.columns[batch.sensors] = columns
        if (columns < 0).all():
            return None
        if len(columns) == batch.values.shape[1] and (columns == np.arange(len(columns))).all():
            return batch.values  # same sensors in the same order: no copy
        if (columns >= 0).all():
            return batch.values[:, columns]
        out = np.full((batch.n_frames, len(columns)), np.nan)
        present = columns >= 0
        out[:, present] = batch.values[:, columns[present]]
        return out

    def _score_line(
        self,
        served: _Served,
        items: list[tuple[RawRecord, TelemetryBatch]],
        outcome: Outcome,
    ) -> None:
        bundle = served.bundle
        blocks, times, historical = [], [], []
        for record, batch in items:
            X = self._aligned(served, batch)
            if X is None:
                reason = (
                    f"record has sensors {list(batch.sensors)[:8]}; line {batch.line!r} "
                    f"model {bundle.version} expects {bundle.sensors[:8]} and none match"
                )
                outcome.dead_letters.append(_dead(record, reason, "route"))
                continue
            blocks.append(X)
            times.append(batch.time_us)
            historical.append(np.full(batch.n_frames, batch.historical))
            self._sensor_gaps(served, batch, X, outcome)
        if not blocks:
            return
        X = np.concatenate(blocks)
        time_us = np.concatenate(times)
        is_historical = np.concatenate(historical)
        k, n = bundle.debounce
        result, served.state = score_batch(
            bundle.pipeline, X, served.state, threshold=bundle.threshold, k=k, n=n, time_us=time_us
        )
        # Sensor names are needed only where someone reads them: frames over
        # the threshold or in alert (points, incidents) and alert edges.
        anomaly = np.asarray(result.anomaly, dtype=bool)
        edges = anomaly != np.concatenate(([served.alerting], anomaly[:-1]))
        named = np.asarray(result.raw_exceed, dtype=bool) | anomaly | edges
        top_names = np.full(len(time_us), "", dtype=object)
        if named.any():
            top_names[named] = top_sensor_names(
                result.top_sensors[named, : self.top_k], bundle.sensors
            )
        top = top_names.tolist()
        # Read only at alert edges and alert frames: a quiet batch skips it.
        reasons = reason_names(result.reason) if anomaly.any() or edges.any() else None
        site = items[0][1].site
        line = items[0][1].line
        tags = {"site": site, "line": line, "model_version": bundle.version}
        outcome.influx_lines.append(
            result_points(tags, time_us, result, bundle.threshold, is_historical, top_names)
        )
        self._alerts(served, site, line, time_us, result, top, is_historical, outcome, reasons)
        self._track_incidents(
            served, site, line, time_us, result, top, outcome, is_historical, reasons
        )
        if self.updates is not None:
            self._score_shadow(line, bundle.version, items, time_us, is_historical, outcome)
        outcome.lines.add(line)
        outcome.results.append(
            LineResult(
                site=site,
                line=line,
                model_version=bundle.version,
                time_us=time_us,
                score=result.score,
                threshold=bundle.threshold,
                anomaly=result.anomaly,
                top_sensors=top,
                reason=result.reason,
            )
        )
        outcome.frames_scored += len(time_us)

    def _score_shadow(
        self,
        line: str,
        active_version: str,
        items: list[tuple[RawRecord, TelemetryBatch]],
        time_us: np.ndarray,
        historical: np.ndarray,
        outcome: Outcome,
    ) -> None:
        """Score the same frames with the line's shadow version, if any: points
        under its own version tag and ``role=shadow``; no alerts, no incidents."""
        announced = self.updates.shadow(line)
        if announced is None or announced.version == active_version:
            self._shadows.pop(line, None)
            return
        shadow = self._shadows.get(line)
        try:
            if shadow is None or shadow.bundle.version != announced.version:
                bundle = load_announced(self.registry, line, announced.version, announced)
                shadow = self._shadows[line] = _Served(bundle=bundle, checked_at=0.0)
            blocks = []
            for _, batch in items:
                X = self._aligned(shadow, batch)
                blocks.append(X if X is not None else np.full((batch.n_frames, 1), np.nan))
            if any(b.shape[1] != len(shadow.bundle.sensors) for b in blocks):
                return  # a record the shadow cannot read; the active path handled it
            if sum(b.shape[0] for b in blocks) != len(time_us):
                return  # the active path dropped records; keep both on the same frames
            encoded, shadow.state, _ = shadow_lines(
                shadow.bundle,
                np.concatenate(blocks),
                shadow.state,
                time_us,
                historical,
                items[0][1].site,
                line,
            )
            outcome.influx_lines.append(encoded)
        except Exception:  # a candidate must never disturb live scoring
            log.exception("line %s: shadow %s failed; stopping it", line, announced.version)
            self.updates.refuse(line, announced.version)
            self._shadows.pop(line, None)

    def _alerts(
        self,
        served: _Served,
        site: str,
        line: str,
        time_us: np.ndarray,
        result: Any,
        top: list[str],
        historical: np.ndarray,
        outcome: Outcome,
        reasons: np.ndarray | None = None,
    ) -> None:
        """Publish the edges of the debounced flag: one message when a line
        goes into alert, one when it clears, never one per frame.

        A ``raised`` message names why (``reason``: the raising frame's, since
        a line goes into alert only on a frame that exceeds) and the sensor
        behind it (``reason_sensor``: the frame's first contributing sensor,
        which is the check's own sensor where a check fired). The ``cleared``
        message that ends it repeats both, so each edge reads alone.

        Historical edges are not published but still move the state: the
        next published clear names the raise it really ends."""
        flags = np.asarray(result.anomaly, dtype=bool)
        previous = np.concatenate(([served.alerting], flags[:-1]))
        edges = np.flatnonzero(flags != previous)
        served.alerting = bool(flags[-1])
        for i in edges.tolist():
            if flags[i]:
                why = reasons[i] if reasons is not None else ""
                served.raised_for = (why, top[i].split(",", 1)[0] if why and top[i] else "")
            # A clear names the raise it ends (kept in the line state).
            why, sensor = served.raised_for
            if not flags[i]:
                served.raised_for = ("", "")
            if historical[i]:
                # Late (buffered) frames are scored and stored, and their
                # alert state is in the points, but paging now would be wrong.
                outcome.historical_alerts_suppressed += 1
                continue
            message = {
                "schema": ALERT_SCHEMA,
                "state": "raised" if flags[i] else "cleared",
                "site": site,
                "line": line,
                "model_version": served.bundle.version,
                "time_us": int(time_us[i]),
                "score": float(result.score[i]),
                "threshold": served.bundle.threshold,
                "top_sensors": top[i].split(",") if top[i] else [],
                "historical": bool(historical[i]),
            }
            if why:
                message["reason"] = why
                if sensor:
                    message["reason_sensor"] = sensor
            outcome.alerts.append((line.encode(), message))

    def _sensor_gaps(
        self, served: _Served, batch: TelemetryBatch, X: np.ndarray, outcome: Outcome
    ) -> None:
        """Count imputed readings per sensor; a sensor missing from a whole
        record raises an alert of its own (``reason: dead_or_unmapped_sensor``),
        once when the set of such sensors changes, and clears when it empties."""
        sensors = served.bundle.sensors
        gaps = sensor_gaps(X)
        for j in np.flatnonzero(gaps.imputed).tolist():
            key = (batch.line, sensors[j])
            outcome.imputed[key] = outcome.imputed.get(key, 0) + int(gaps.imputed[j])
        dead = tuple(gaps.dead_names(sensors))
        if dead == served.dead:
            return
        previous, served.dead = served.dead, dead
        if batch.historical:
            return  # late frames: stored, never paged (as for score alerts)
        message = {
            "schema": ALERT_SCHEMA,
            "state": "raised" if dead else "cleared",
            "reason": DEAD_SENSOR_REASON,
            "sensors": list(dead or previous),
            "site": batch.site,
            "line": batch.line,
            "model_version": served.bundle.version,
            "time_us": int(batch.time_us[0]),
            "historical": False,
        }
        outcome.alerts.append((batch.line.encode(), message))

    def _track_incidents(
        self,
        served: _Served,
        site: str,
        line: str,
        time_us: np.ndarray,
        result: Any,
        top: list[str],
        outcome: Outcome,
        historical: np.ndarray | None = None,
        reasons: np.ndarray | None = None,
    ) -> None:
        state, events = track_incidents(
            self._incidents.get(line, IncidentState()),
            line=line,
            time_us=time_us,
            anomaly=result.anomaly,
            score=result.score,
            threshold=served.bundle.threshold,
            top_sensors=top,
            model_version=served.bundle.version,
            reasons=reasons,
        )
        self._incidents[line] = state
        latest: dict[str, IncidentEvent] = {}
        for event in events:
            message = event.to_message(site)
            if historical is not None:
                # Incidents are QA records, so late frames still open and
                # close them; the flag tells consumers it is not live news.
                at = np.flatnonzero(time_us == event.end_us)
                message["historical"] = bool(historical[at[-1]]) if at.size else False
            outcome.incidents.append((line.encode(), message))
            latest[event.incident_id] = event
        outcome.influx_lines.extend(incident_point(e, site) for e in latest.values())


def top_sensor_names(top: np.ndarray, sensors: Sequence[str]) -> np.ndarray:
    """Comma-separated sensor names per frame from ``BatchResult.top_sensors``.

    A line's top-3 combinations repeat from frame to frame, so the strings are
    built once per distinct combination (``np.unique`` in C) instead of once
    per frame: at 100k frames/s the per-frame join alone would take a quarter
    of a core.

    Parameters
    ----------
    top : ndarray of int, shape (n, k)
        Sensor indices, most contributing first; -1 for none.
    sensors : sequence of str
        The model's sensor names.

    Returns
    -------
    ndarray of object (str), shape (n,)
    """
    n = top.shape[0]
    if n == 0:
        return np.zeros(0, dtype=object)
    if top.shape[1] == 0:
        return np.full(n, "", dtype=object)
    k = top.shape[1]
    base = len(sensors) + 1
    if base**k < 2**62:
        # Each row as one integer (indices + 1 in base len(sensors) + 1):
        # a 1-D unique is several times faster than np.unique(axis=0).
        key = np.zeros(n, dtype=np.int64)
        for i in range(k):
            key *= base
            key += top[:, i]
            key += 1
        _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
        unique = top[first]
    else:
        unique, inverse = np.unique(top, axis=0, return_inverse=True)
    names = np.array(
        [",".join(sensors[j] for j in row if j >= 0) for row in unique.tolist()], dtype=object
    )
    return names[np.asarray(inverse).reshape(-1)]


def incident_point(event: IncidentEvent, site: str) -> str:
    """An incident as one InfluxDB point at its start time.

    Every open/update/close rewrites the same point (same tags, same time),
    so the measurement holds one point per incident in its latest state;
    Grafana draws it as a region annotation from ``time`` to ``end_us``.
    The reason fields are left out until the incident has a reason, rather
    than written empty: InfluxDB merges a rewrite's fields into the stored
    point, and an empty value would look like a reason.
    """
    why: dict[str, str] = {}
    if event.reason:
        why[REASON_FIELD] = event.reason
        why[REASONS_FIELD] = ",".join(f"{k}:{v}" for k, v in event.reasons.items())
    if event.reason_sensor:
        why[REASON_SENSOR_FIELD] = event.reason_sensor
    # One point: encode_point, the per-point encoder (encode_points' column
    # set-up costs more than the point itself; the bytes are the same).
    return encode_point(
        INCIDENT_MEASUREMENT,
        {"site": site, "line": event.line},
        {
            "incident_id": event.incident_id,
            "state": event.state,
            "severity": event.severity,
            "peak_score": float(event.peak_score),
            "threshold": float(event.threshold),
            "end_us": int(event.end_us),
            "duration_s": float(event.duration_s),
            "frames": int(event.frames),
            "top_sensors": ",".join(event.top_sensors),
            "model_version": event.model_version,
            **why,
        },
        int(event.start_us) * 1000,
    )


def archive_lines(records: Sequence[RawRecord]) -> tuple[list[str], int]:
    """Raw sensor values of valid records as InfluxDB line protocol.

    Used by the archiving consumer, which stores what the gateways sent for
    dashboards and retraining, off the scoring path. Invalid records are
    counted and skipped here: the scoring worker dead-letters them.
    """
    lines: list[str] = []
    invalid = 0
    for record in records:
        try:
            batch = decode(record.value)
        except InvalidRecord:
            invalid += 1
            continue
        fields = {name: batch.values[:, j] for j, name in enumerate(batch.sensors)}
        encoded = encode_points(
            TELEMETRY_MEASUREMENT,
            {"site": batch.site, "line": batch.line},
            fields,
            batch.time_us * 1000,
        )
        if encoded:
            lines.append(encoded)
    return lines, invalid


def _dead(record: RawRecord, reason: str, stage: str) -> DeadLetter:
    return DeadLetter(
        reason=reason,
        stage=stage,
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=record.key,
        value=record.value,
    )
