"""Offline evaluation of line models on recordings, through the live scoring path.

``lineguard evaluate DIR...`` treats every CSV run under the folders (SKAB
layout; a run without labels counts as normal operation) as one production
line: it trains that line's model on the run's first ``N`` rows as
``lineguard train`` does (same
:func:`~lineguard.models.training.train_from_rows`, into a throw-away
registry; labelled training rows are kept and reported, see
:func:`evaluate_folder`), cuts the whole run into the records an edge gateway would send
(:func:`lineguard.ingest.gateway.plan_records`, encoded with the wire
format), groups them into the stream worker's micro-batches and feeds them to
:class:`lineguard.stream.processor.TelemetryProcessor` -- the very object
the Faust worker drives. There is no separate offline scorer, so what is
measured here is what the worker would have written to InfluxDB.

Metrics (over all runs' test parts, i.e. the rows after the training rows):

* SKAB's pointwise metrics, confusion summed over runs
  (:func:`lineguard.models.metrics.score_alerts`).
* SKAB's NAB changepoint score (:func:`nab_score`), a faithful port of
  ``evaluate_nab`` in SKAB's ``evaluating.py``.
* Event recall, false-alarm events and the median detection delay (time from
  a labelled segment's first row to the first alert inside it).
* Per alert reason (:meth:`Evaluation.by_reason`): how many alert events the
  multivariate score and each sensor check raised, and how many of them
  touched a labelled fault or none (a false alarm). It reads the labels, so
  it is an evaluation statistic only: nothing in training or scoring sees it.
"""

from __future__ import annotations

import csv
import json
import math
import re
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from lineguard.contracts import ALERT_REASONS
from lineguard.detectors.incidents import dominant_reason
from lineguard.detectors.points import reason_names
from lineguard.ingest.contract import TelemetryBatch, encode
from lineguard.ingest.csv_runs import RecordedRun, RunFormatError, read_run
from lineguard.ingest.gateway import plan_records
from lineguard.models.metrics import AlertScore, score_alerts, segments
from lineguard.models.registry import ModelBundle, Registry
from lineguard.models.training import TrainingConfig, fit_from_rows, train_from_rows
from lineguard.stream.limits import BATCH_RECORDS, BATCH_WINDOW_S
from lineguard.stream.processor import RawRecord, TelemetryProcessor

__all__ = [
    "NAB_PROFILES",
    "Alert",
    "Evaluation",
    "FrameScores",
    "GatewayPlan",
    "RunEvaluation",
    "alert_events",
    "detection_delays",
    "evaluate_folder",
    "evaluate_history",
    "evaluate_run",
    "evaluate_with_active_model",
    "find_runs",
    "nab_score",
    "predicted_changepoints",
    "rolling_windows",
    "runs_under",
    "score_frames",
    "write_predictions",
]

#: SKAB's NAB profiles: (A_tp, A_fp, A_fn) for Standard, LowFP and LowFN.
NAB_PROFILES: dict[str, tuple[float, float, float]] = {
    "standard": (1.0, -0.11, -1.0),
    "low_fp": (1.0, -0.22, -1.0),
    "low_fn": (1.0, -0.11, -2.0),
}
#: SKAB's changepoint window for NAB.
NAB_WINDOW_S = 60.0

# The worker's micro-batch limits: one definition, importable without Faust.
WORKER_BATCH_RECORDS = BATCH_RECORDS
WORKER_BATCH_WINDOW_S = BATCH_WINDOW_S


@dataclass(frozen=True)
class GatewayPlan:
    """How recorded frames are cut into records and worker micro-batches.

    Attributes
    ----------
    speed : float
        Replay speed relative to the recording (1 = live), as ``lineguard
        gateway replay --speed``. The default, 60x (the demo's), makes the
        gateway pack about 30 one-second frames per record, so a run is a
        few dozen micro-batches instead of one per frame. Results do not
        depend on it -- scoring is batch-invariant, and
        ``tests/models/test_evaluation.py`` checks that live speed gives the
        same predictions -- only the run time does.
    max_frames, flush_interval_s : see :func:`lineguard.ingest.gateway.plan_records`.
    """

    speed: float = 60.0
    max_frames: int = 500
    flush_interval_s: float = 0.5


@dataclass(frozen=True)
class Alert:
    """One alert event: a run of consecutive alerted frames.

    Attributes
    ----------
    start, stop : int
        Row indices into the run's test part (stop exclusive).
    start_us, end_us : int
        Time of the first and last alerted frame.
    peak_score : float
        Highest score during the alert.
    sensors : list of (str, float)
        Contributing sensors, most first, with their share of the alert:
        each alerted frame ranks its top sensors (the worker's
        ``top_sensors``); rank r of k earns k - r + 1 points, and shares are
        the points normalised over the alert.
    labelled : bool
        Whether the alert touches a labelled anomaly segment.
    reason : str
        The dominant reason of its frames (the one most of its exceeding
        frames had, ties to the first seen), as the worker's incidents name
        theirs (:func:`lineguard.detectors.incidents.dominant_reason`).
    reason_sensor : str
        The sensor most often behind ``reason`` (the frames' first
        contributing sensor: the check's own where a check fired).
    reasons : dict of str to int
        Exceeding frames of the alert per reason.
    """

    start: int
    stop: int
    start_us: int
    end_us: int
    peak_score: float
    sensors: list[tuple[str, float]]
    labelled: bool
    reason: str = ""
    reason_sensor: str = ""
    reasons: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {
            "start": _iso(self.start_us),
            "end": _iso(self.end_us),
            "frames": self.stop - self.start,
            "peak_score": self.peak_score,
            "labelled": self.labelled,
            "sensors": [{"sensor": s, "share": round(w, 4)} for s, w in self.sensors],
            "reason": self.reason,
            "reason_sensor": self.reason_sensor,
            "reasons": dict(self.reasons),
        }


@dataclass
class RunEvaluation:
    """One run's test part as scored by the worker's path."""

    name: str
    line: str
    sensors: list[str]
    detector: str
    time_us: np.ndarray
    score: np.ndarray
    threshold: float
    anomaly: np.ndarray
    top_sensors: list[str]
    labels: np.ndarray
    changepoints: np.ndarray
    counts: AlertScore
    alerts: list[Alert]
    delays_s: list[float]
    nab: dict[str, np.ndarray]
    calibration: dict[str, Any] = field(default_factory=dict)
    #: Reason code per test row (``BatchResult.reason``; 0 where it does not exceed).
    reason: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int8))


@dataclass
class Evaluation:
    """All runs of a folder and their combined metrics."""

    runs: list[RunEvaluation]
    skipped: list[tuple[str, str]]
    seconds: float = 0.0
    warnings: list[tuple[str, str]] = field(default_factory=list)

    @property
    def counts(self) -> AlertScore:
        """Pointwise and event counts summed over runs."""
        total = AlertScore(0, 0, 0, 0, 0, 0, 0)
        for run in self.runs:
            total = total + run.counts
        return total

    def nab(self) -> dict[str, float | None]:
        """SKAB's NAB scores (0 = null detector, 100 = perfect) per profile."""
        out: dict[str, float | None] = {}
        for profile in NAB_PROFILES:
            s = np.sum([r.nab[profile] for r in self.runs], axis=0) if self.runs else np.zeros(3)
            score, null, perfect = s
            out[profile] = (
                None
                if perfect == null
                else round(float(100 * (score - null) / (perfect - null)), 2)
            )
        return out

    def median_delay_s(self) -> float | None:
        """Median time from a labelled segment's start to its first alert."""
        delays = [d for r in self.runs for d in r.delays_s]
        return float(np.median(delays)) if delays else None

    def by_reason(self) -> dict[str, dict[str, int]]:
        """Alert events per reason, and how many touched a fault or none.

        Every reason of the contract is listed, in its order, zeros included,
        so tables and JSON keep one shape. An alert counts under its dominant
        reason (:class:`Alert`); ``faults + false_alarms == alerts`` per
        reason, and the false alarms add up to ``false_alarm_events``. The
        split reads the labels: an evaluation statistic, never an input.
        """
        out = {r: {"alerts": 0, "faults": 0, "false_alarms": 0} for r in ALERT_REASONS}
        for run in self.runs:
            for alert in run.alerts:
                row = out.setdefault(
                    alert.reason or "none", {"alerts": 0, "faults": 0, "false_alarms": 0}
                )
                row["alerts"] += 1
                row["faults" if alert.labelled else "false_alarms"] += 1
        return out

    def summary(self) -> dict[str, Any]:
        """The headline metrics as a JSON-friendly dict."""
        c = self.counts
        nab = self.nab()
        rates = c.defined()  # None where a figure has no meaning
        return {
            "f1": _rounded(rates["f1"], 4),
            "far": round(c.far, 2),
            "mar": _rounded(rates["mar"], 2),
            "nab_standard": nab["standard"],
            "nab_low_fp": nab["low_fp"],
            "nab_low_fn": nab["low_fn"],
            "event_recall": _rounded(rates["event_recall"], 4),
            "events": c.events,
            "events_detected": c.events_detected,
            "false_alarm_events": c.false_alarm_events,
            "median_delay_s": self.median_delay_s(),
            "runs": len(self.runs),
            "test_rows": c.tp + c.fp + c.tn + c.fn,
            "seconds": round(self.seconds, 2),
            "reasons": self.by_reason(),
        }


def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


# -- NAB (SKAB's evaluating.py) --------------------------------------------
def predicted_changepoints(anomaly_pred: np.ndarray) -> np.ndarray:
    """SKAB's changepoint predictions from alert flags: ``|diff|``, first = first flag.

    Both the rise and the fall of an alert count as a predicted changepoint,
    as in SKAB's outlier-detection notebooks.
    """
    p = np.asarray(anomaly_pred, dtype=np.int64)
    if p.size == 0:
        return p
    return np.abs(np.diff(p, prepend=p[0])) + np.r_[p[0], np.zeros(p.size - 1, dtype=np.int64)]


def nab_score(
    time_us: np.ndarray,
    true_cp: np.ndarray,
    pred_cp: np.ndarray,
    window_s: float = NAB_WINDOW_S,
) -> dict[str, np.ndarray]:
    """SKAB's NAB score of one run: ``[score, null score, perfect score]`` per profile.

    A port of ``single_evaluate_nab`` in SKAB's ``evaluating.py`` (waico/SKAB),
    including its conventions: each labelled changepoint ``t`` opens a window
    ``[t, t + window]``; pandas time slices are inclusive at both ends; the
    first predicted changepoint within the window extended by a quarter of its
    length is rewarded by a sigmoid of its position; predictions before the
    first window and in the trailing part of each inter-changepoint space
    (``win_space[-len(win_fault_slow):]``, as SKAB writes it) cost ``A_fp``
    each; a window without any prediction costs ``A_fn``. Sum the arrays
    over runs and take ``100 * (score - null) / (perfect - null)``.

    Parameters
    ----------
    time_us : ndarray of int64, shape (n,)
        Increasing frame times.
    true_cp, pred_cp : ndarray of 0/1, shape (n,)
        Labelled and predicted changepoints.
    window_s : float
        SKAB's ``numenta_time`` (60 s).

    Returns
    -------
    dict of profile -> ndarray [score, null, perfect]
    """
    t = np.asarray(time_us, dtype=np.int64)
    pred = np.asarray(pred_cp, dtype=np.float64)
    cps = t[np.asarray(true_cp) == 1]
    td = round(window_s * 1e6)
    bounds = [(int(c), int(c) + td) for c in cps]

    def loc(a: int, b: int | None) -> np.ndarray:  # pandas .loc[a:b], inclusive
        lo = int(np.searchsorted(t, a, side="left"))
        hi = t.size if b is None else int(np.searchsorted(t, b, side="right"))
        return pred[lo:hi]

    out: dict[str, np.ndarray] = {}
    for profile, (a_tp, a_fp, a_fn) in NAB_PROFILES.items():
        score = 0.0
        if bounds:
            score += loc(t[0] if t.size else 0, bounds[0][0]).sum() * a_fp
        else:
            score += pred.sum() * a_fp
        for i, (start, stop) in enumerate(bounds):
            nxt = bounds[i + 1][0] if i <= len(bounds) - 2 else None
            win_space = loc(start, nxt)
            win_fault = loc(start, stop)
            slow_width = int(len(win_fault) / 4)
            if len(win_fault) + slow_width >= len(win_space):
                win_fault_slow = win_fault
            else:
                win_fault_slow = win_space[: len(win_fault) + slow_width]
            win_fp = win_space[-len(win_fault_slow) :] if len(win_fault_slow) else win_space
            if win_fault_slow.sum() == 0:
                score += a_fn
            else:
                first = int(np.flatnonzero(win_fault_slow == 1)[0]) - len(win_fault)
                with np.errstate(divide="ignore", over="ignore"):
                    z = 5.0 * first / slow_width if slow_width else math.copysign(np.inf, first)
                    score += (a_tp - a_fp) / (1.0 + np.exp(z)) + a_fp
                score += win_fp.sum() * a_fp
        n = len(bounds)
        out[profile] = np.array([score, n * a_fn, n * a_tp])
    return out


# -- events ----------------------------------------------------------------
def detection_delays(time_us: np.ndarray, labels: np.ndarray, alerts: np.ndarray) -> list[float]:
    """Seconds from each detected labelled segment's first row to its first alert."""
    out = []
    y = np.asarray(labels, dtype=bool)
    p = np.asarray(alerts, dtype=bool)
    for a, b in segments(y):
        hit = np.flatnonzero(p[a:b])
        if hit.size:
            out.append(float(time_us[a + hit[0]] - time_us[a]) / 1e6)
    return out


def alert_events(
    time_us: np.ndarray,
    score: np.ndarray,
    anomaly: np.ndarray,
    top_sensors: Sequence[str],
    labels: np.ndarray,
    reasons: Sequence[str] | None = None,
) -> list[Alert]:
    """Group alerted frames into alert events with ranked sensor contributions.

    ``reasons`` (each frame's reason name, ``""`` where it does not exceed)
    names each event after its dominant reason and the sensor behind it.
    """
    y = np.asarray(labels, dtype=bool)
    events = []
    for a, b in segments(anomaly):
        frames: dict[str, int] = {}
        behind: dict[str, dict[str, int]] = {}
        for why, names in zip(
            reasons[a:b] if reasons is not None else (), top_sensors[a:b], strict=False
        ):
            if why:
                frames[why] = frames.get(why, 0) + 1
                first = names.split(",", 1)[0]
                if first:
                    sensors = behind.setdefault(why, {})
                    sensors[first] = sensors.get(first, 0) + 1
        reason = dominant_reason(frames)
        points: dict[str, float] = {}
        for names in top_sensors[a:b]:
            ranked = [s for s in names.split(",") if s]
            for r, s in enumerate(ranked):
                points[s] = points.get(s, 0.0) + len(ranked) - r
        total = sum(points.values()) or 1.0
        ranked_sensors = sorted(((s, p / total) for s, p in points.items()), key=lambda x: -x[1])
        events.append(
            Alert(
                start=a,
                stop=b,
                start_us=int(time_us[a]),
                end_us=int(time_us[b - 1]),
                peak_score=float(np.max(score[a:b])),
                sensors=ranked_sensors,
                labelled=bool(y[a:b].any()),
                reason=reason,
                reason_sensor=dominant_reason(behind.get(reason, {})),
                reasons=frames,
            )
        )
    return events


# -- running the worker's path ---------------------------------------------
def find_runs(root: str | Path) -> list[Path]:
    """CSV files under ``root``, sorted naturally (``valve1/2.csv`` before ``10.csv``)."""
    root = Path(root)
    if root.is_file():
        return [root]

    def key(p: Path) -> list[Any]:
        return [int(s) if s.isdigit() else s for s in re.split(r"(\d+)", str(p.relative_to(root)))]

    return sorted(root.rglob("*.csv"), key=key)


def runs_under(roots: str | Path | Sequence[str | Path]) -> list[tuple[Path, Path]]:
    """``(name, path)`` of every CSV run under one or several roots.

    Under one root a run is named by its path relative to it (a file root:
    by its file name); under several, that name is prefixed with the root's
    own name (``valve1/0.csv``, ``valve2/0.csv``), so results from several
    folders stay apart in one evaluation and in its predictions folder.

    Raises
    ------
    ValueError
        If two runs would get the same name (two roots with the same name).
    """
    many = not isinstance(roots, (str, Path))
    out: list[tuple[Path, Path]] = []
    for root in [Path(r) for r in (roots if many else [roots])]:  # type: ignore[union-attr]
        for path in find_runs(root):
            rel = path.relative_to(root) if root.is_dir() else Path(path.name)
            out.append((Path(root.name) / rel if many else rel, path))
    names = [str(name) for name, _ in out]
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"expected folders whose runs have distinct names; {twice} repeat")
    return out


def _line_id(rel: Path, used: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", str(rel.with_suffix("")).replace("\\", "/"))
    base = base.strip("-._")[:56] or "run"
    line, i = base, 1
    while line in used:
        i += 1
        line = f"{base}-{i}"
    used.add(line)
    return line


def _worker_batches(run: RecordedRun, line: str, plan: GatewayPlan) -> Iterator[list[RawRecord]]:
    """The run as gateway records, grouped into the worker's micro-batches."""
    offsets_s = (run.time_us - run.time_us[0]) / 1e6
    due_s = offsets_s / plan.speed if plan.speed > 0 else np.zeros(len(run))
    key = line.encode()
    batch: list[RawRecord] = []
    opened = 0.0
    for seq, (start, stop, send_at) in enumerate(
        plan_records(due_s, max_frames=plan.max_frames, flush_interval_s=plan.flush_interval_s)
    ):
        record = TelemetryBatch(
            site="evaluate",
            line=line,
            gateway="evaluate",
            seq=seq,
            sensors=run.sensors,
            time_us=run.time_us[start:stop],
            values=run.values[start:stop],
            historical=plan.speed != 1.0,
        )
        raw = RawRecord(encode(record), key, "telemetry", 0, seq)
        if batch and (
            len(batch) >= WORKER_BATCH_RECORDS or send_at - opened > WORKER_BATCH_WINDOW_S
        ):
            yield batch
            batch = []
        if not batch:
            opened = send_at
        batch.append(raw)
    if batch:
        yield batch


def evaluate_run(
    run: RecordedRun,
    name: str,
    line: str,
    registry: Registry,
    train_rows: int,
    config: TrainingConfig,
    plan: GatewayPlan | None = None,
) -> RunEvaluation:
    """Train one run's line model and score the run through the worker's processor.

    The whole run is streamed (as the line's telemetry would be), and the
    rows after ``train_rows`` are the test part that is returned and scored.
    The training rows are used as they are, labelled or not: in a plant
    nobody labels the training window, so the model has to live with
    whatever it holds (:func:`evaluate_folder` reports such runs).
    """
    if run.anomaly is None:
        raise ValueError(f"{run.path}: no 'anomaly' label column; cannot evaluate")
    if len(run) <= train_rows:
        raise ValueError(f"{run.path}: {len(run)} rows leave no test rows after {train_rows}")
    bundle = train_from_rows(
        registry,
        line,
        sensors=list(run.sensors),
        time_us=run.time_us[:train_rows],
        X=run.values[:train_rows],
        source=str(Path(run.path).name),
        config=config,
    )
    return _scored_run(run, name, line, registry, bundle, train_rows, config, plan)


@dataclass(frozen=True)
class FrameScores:
    """Every frame of a stream as the worker scored it.

    Attributes
    ----------
    time_us : ndarray of int64
        Frame times, in stream order.
    score : ndarray of float
        Anomaly score per frame.
    anomaly : ndarray of bool
        Debounced alert state per frame.
    top_sensors : list of str
        Comma-separated most contributing sensors, on frames that exceed
        or are in alert ("" elsewhere), as in the worker's points.
    reason : ndarray of int8
        Alert reason code per frame (``detectors.sensor_checks.REASONS``).
    """

    time_us: np.ndarray
    score: np.ndarray
    anomaly: np.ndarray
    top_sensors: list[str]
    reason: np.ndarray


class _OneModel:
    """What the processor reads models through, holding one bundle.

    It serves ``bundle`` as its line's active version, so a model that is
    not (yet) in a registry -- a candidate being evaluated before it is
    stored -- is scored by the very same processor as a stored one.
    """

    def __init__(self, bundle: ModelBundle) -> None:
        self.bundle = bundle

    def lines(self) -> list[str]:
        return [self.bundle.line_id]

    def active_version(self, line: str) -> str | None:
        return self.bundle.version if line == self.bundle.line_id else None

    def load(self, line: str, version: str | None = None) -> ModelBundle:
        return self.bundle


def _stream(
    processor: TelemetryProcessor, run: RecordedRun, line: str, plan: GatewayPlan
) -> FrameScores:
    """Stream the whole run through the processor, as the worker would receive it."""
    times, scores, flags, tops, codes = [], [], [], [], []
    for micro_batch in _worker_batches(run, line, plan):
        outcome = processor.process(micro_batch)
        if outcome.dead_letters:
            raise RuntimeError(f"{run.path}: the worker dead-lettered: {outcome.dead_letters[0]}")
        for result in outcome.results:
            times.append(result.time_us)
            scores.append(result.score)
            flags.append(result.anomaly)
            tops.extend(result.top_sensors)
            codes.append(result.reason)
    time_us = np.concatenate(times)
    if time_us.shape[0] != len(run):
        raise RuntimeError(f"{run.path}: scored {time_us.shape[0]} of {len(run)} frames")
    return FrameScores(
        time_us,
        np.concatenate(scores),
        np.asarray(np.concatenate(flags), dtype=bool),
        tops,
        np.concatenate(codes),
    )


def score_frames(
    bundle: ModelBundle,
    sensors: Sequence[str],
    time_us: np.ndarray,
    X: np.ndarray,
    plan: GatewayPlan | None = None,
    source: str = "frames",
) -> FrameScores:
    """Score frames from stream start with one model, through the worker's processor.

    The one offline scorer: ``lineguard evaluate`` and the candidate
    evaluation (``lineguard train``, ``lineguard models evaluate``) both
    come here, so column alignment by sensor name (a sensor the data lacks
    is imputed, extra ones ignored), micro-batching, the gap reset and the
    debounce are the worker's own.

    Parameters
    ----------
    bundle : ModelBundle
        The model (stored or not; its ``line_id`` names the line).
    sensors : sequence of str
        Column names of ``X``.
    time_us : ndarray of int64, shape (n,)
        Frame times (UTC microseconds), consecutive stream order.
    X : ndarray of shape (n, len(sensors))
        Raw frames (NaN = missing reading).
    plan : GatewayPlan, optional
        How the frames are cut into records (results do not depend on it).
    source : str
        Where the frames came from, for error messages.

    Raises
    ------
    ValueError
        When the data has none of the model's sensors (the worker would
        dead-letter every record), or no frames.
    """
    X = np.asarray(X, dtype=np.float64)
    time_us = np.asarray(time_us, dtype=np.int64)
    if len(time_us) == 0:
        raise ValueError(f"{source}: expected frames to score; got none")
    if not set(sensors) & set(bundle.sensors):
        raise ValueError(
            f"{source}: expected some of the sensors {bundle.sensors[:8]} of "
            f"{bundle.version}; the data has {list(sensors)[:8]}"
        )
    run = RecordedRun(Path(source), tuple(sensors), time_us, X, None, None)
    return _stream(
        TelemetryProcessor(_OneModel(bundle)), run, bundle.line_id, plan or GatewayPlan()
    )


def _scored_run(
    run: RecordedRun,
    name: str,
    line: str,
    registry: Registry,
    bundle: Any,
    first_test_row: int,
    config: TrainingConfig,
    plan: GatewayPlan | None,
) -> RunEvaluation:
    """Stream the whole run through the processor; evaluate rows from ``first_test_row``."""
    scored = _stream(TelemetryProcessor(registry), run, line, plan or GatewayPlan())
    test = slice(first_test_row, len(run))
    labels = run.anomaly[test].astype(bool)
    changepoints = (
        run.changepoint[test].astype(np.int64)
        if run.changepoint is not None
        else predicted_changepoints(labels)
    )
    anomaly = scored.anomaly[test]
    score = scored.score[test]
    top = scored.top_sensors[test]
    reason = scored.reason[test]
    names = reason_names(reason).tolist()
    t = scored.time_us[test]
    return RunEvaluation(
        name=name,
        line=line,
        sensors=list(run.sensors),
        detector=str(bundle.manifest.get("calibration", {}).get("detector", config.detector)),
        time_us=t,
        score=score,
        threshold=float(bundle.threshold),
        anomaly=anomaly,
        top_sensors=top,
        labels=labels,
        changepoints=changepoints,
        counts=score_alerts(labels, anomaly),
        alerts=alert_events(t, score, anomaly, top, labels, names),
        delays_s=detection_delays(t, labels, anomaly),
        nab=nab_score(t, changepoints, predicted_changepoints(anomaly)),
        calibration=dict(bundle.manifest.get("calibration", {})),
        reason=reason,
    )


def evaluate_with_active_model(
    run: RecordedRun,
    line: str,
    registry: Registry,
    plan: GatewayPlan | None = None,
) -> RunEvaluation:
    """Score a whole recorded run offline with the line's active model, as deployed.

    Nothing is trained: the run is streamed through a fresh stream-worker
    processor reading ``registry``, so the result is what a worker serving
    that registry computes for these frames -- the offline side of checking
    a live worker's points and alerts (every row counts; a run without
    labels counts as normal).
    """
    bundle = registry.load(line)
    if run.anomaly is None:
        zeros = np.zeros(len(run), dtype=np.int8)
        run = replace(run, anomaly=zeros, changepoint=zeros.copy())
    config = TrainingConfig()
    return _scored_run(run, Path(run.path).name, line, registry, bundle, 0, config, plan)


def evaluate_history(
    train_root: str | Path,
    test_root: str | Path | Sequence[str | Path],
    config: TrainingConfig | None = None,
    plan: GatewayPlan | None = None,
    registry_dir: str | Path | None = None,
) -> Evaluation:
    """Train one model on every run under ``train_root``; score every run under ``test_root``.

    The protocol of a plant that trains a line on weeks of normal operation
    (complete batches of a batch line) and then runs it: the training runs
    are concatenated oldest first (the pause between two runs resets the
    trailing window, as it does live), one model is fitted and calibrated
    on them, and each test run is streamed from its first frame through
    the stream worker's processor with that model; all its rows count.

    No run is skipped for what it holds. A training run with labelled
    anomalies is still used (a plant's history is not labelled) and reported
    in ``Evaluation.warnings``; a test run without labels counts as normal
    (every alert on it is a false alarm); a test run with other sensor
    columns is scored as the worker scores such records (missing sensors as
    absent readings, extra ones ignored) and reported in
    ``Evaluation.warnings``. Only a test run that shares no sensor with the
    model, whose every record the worker would dead-letter, is listed in
    ``Evaluation.skipped``.

    Raises
    ------
    ValueError
        If a folder has no CSV run, or the training runs' sensor columns differ.
    """
    started = time.perf_counter()
    config = config or TrainingConfig()
    train_paths, test_runs = find_runs(train_root), runs_under(test_root)
    for root, found in ((train_root, train_paths), (test_root, test_runs)):
        if not found:
            raise ValueError(f"expected ';'-separated CSV runs under {root}; found none")
    warned: list[tuple[str, str]] = []
    skipped: list[tuple[str, str]] = []
    train = []
    for p in train_paths:
        # One unreadable file costs only itself: trained on the others.
        r = _readable(Path(p.name), p, warned, warned, "not a training run")
        if r is not None:
            train.append(r)
    if not train:
        raise ValueError(
            f"expected at least one readable run with rows under {train_root}; "
            f"got none ({'; '.join(w for _, w in warned) or 'no rows'})"
        )
    train.sort(key=lambda r: int(r.time_us[0]))
    sensors = list(train[0].sensors)
    for r in train:
        if list(r.sensors) != sensors:
            raise ValueError(
                f"{r.path}: expected the sensors {sensors} of {train[0].path}; "
                f"got {list(r.sensors)}"
            )
        if r.anomaly is not None and r.anomaly.any():
            warned.append(
                (
                    Path(r.path).name,
                    f"{int(r.anomaly.sum())} training rows are labelled anomalous; "
                    "trained on them anyway",
                )
            )
    X = np.concatenate([r.values for r in train])
    t = np.concatenate([r.time_us for r in train])
    live, dead = _with_readings(sensors, X)
    if dead:
        # A sensor dead through the whole history: the model is trained
        # without it, and test runs' readings of it are extra columns.
        warned.append(
            (
                Path(train_root).name,
                f"no reading in any training run for {', '.join(dead)}; trained without them",
            )
        )
        sensors = [s for s in sensors if s not in dead]
        X = X[:, live]
    runs: list[RunEvaluation] = []
    used: set[str] = set()
    with tempfile.TemporaryDirectory(prefix="lineguard-eval-") as tmp:
        registry = Registry(registry_dir or tmp)
        fitted = fit_from_rows(sensors, X, config, t)
        # Training runs (or pieces of one) the calibration judged faulty, by name.
        starts = np.cumsum([0, *(len(r) for r in train)])
        for lo, hi in fitted[2].get("calibration_folds_set_aside") or []:
            names = [
                Path(r.path).name
                if lo <= a and b <= hi
                else f"rows {max(lo, a) - a}-{min(hi, b) - a} of {Path(r.path).name}"
                for r, a, b in zip(train, starts[:-1], starts[1:], strict=True)
                if a < hi and b > lo
            ]
            warned.append(
                (
                    Path(train_root).name,
                    f"left out of the model: {', '.join(names)} ({hi - lo} rows), far more "
                    "often above the rest of the history's threshold than the target; look "
                    "there for a fault",
                )
            )
        source = f"{len(train)} runs under {Path(train_root).name}"
        for rel, path in test_runs:
            run = _readable(rel, path, skipped, warned)
            if run is None:
                continue
            missing = [s for s in sensors if s not in run.sensors]
            extra = [s for s in run.sensors if s not in sensors]
            if len(missing) == len(sensors):
                # The worker would dead-letter every record of this run.
                skipped.append(
                    (str(rel), f"none of the model's sensors {sensors[:8]}; has {run.sensors[:8]}")
                )
                continue
            if missing or extra:
                warned.append((str(rel), _sensor_warning(missing, extra)))
            if run.anomaly is None:
                zeros = np.zeros(len(run), dtype=np.int8)
                run = replace(run, anomaly=zeros, changepoint=zeros.copy())
            line = _line_id(rel, used)
            bundle = train_from_rows(
                registry,
                line,
                sensors=sensors,
                time_us=t,
                X=X,
                source=source,
                config=config,
                fitted=fitted,
            )
            runs.append(_scored_run(run, str(rel), line, registry, bundle, 0, config, plan))
    return Evaluation(
        runs=runs, skipped=skipped, seconds=time.perf_counter() - started, warnings=warned
    )


def _sensor_warning(missing: list[str], extra: list[str]) -> str:
    """How a test run's sensors differ from the model's, as the worker treats them.

    The worker aligns columns by name: a missing sensor is an absent reading
    (as a dead sensor is live), an extra one is ignored.
    """
    parts = []
    if missing:
        parts.append(f"missing {missing} (scored as absent readings)")
    if extra:
        parts.append(f"extra {extra} (ignored)")
    return "sensors differ from the training runs': " + ", ".join(parts)


def rolling_windows(n_rows: int, train_rows: int, test_rows: int | None) -> list[tuple[int, int]]:
    """Row ranges ``[start, stop)`` of the prefix protocol's windows over one run.

    Without ``test_rows`` the run is one window: train on its first
    ``train_rows`` rows, judge every row after them (SKAB's protocol). With
    it, a run is cut into consecutive windows of ``train_rows + test_rows``
    rows whose test parts follow each other (``start`` steps by
    ``test_rows``): each window is trained on its own first rows and judged
    on the next ``test_rows``, as if a line had been trained afresh at each
    origin (a rolling-origin backtest). A long normal run so shows how often
    the protocol's models raise false alarms on healthy rows they never saw,
    which one window cannot. The rows after the last full window are not
    judged.

    Returns
    -------
    list of (int, int)
        Empty when the run has no row to judge.
    """
    if test_rows is None:
        return [(0, n_rows)] if n_rows > train_rows else []
    if test_rows < 1:
        raise ValueError(f"test_rows must be at least 1, got {test_rows}")
    width = train_rows + test_rows
    return [(a, a + width) for a in range(0, n_rows - width + 1, test_rows)]


def _window(run: RecordedRun, start: int, stop: int) -> RecordedRun:
    return RecordedRun(
        path=run.path,
        sensors=run.sensors,
        time_us=run.time_us[start:stop],
        values=run.values[start:stop],
        anomaly=run.anomaly[start:stop],
        changepoint=None if run.changepoint is None else run.changepoint[start:stop],
    )


def evaluate_folder(
    root: str | Path | Sequence[str | Path],
    train_rows: int,
    config: TrainingConfig | None = None,
    plan: GatewayPlan | None = None,
    registry_dir: str | Path | None = None,
    test_rows: int | None = None,
) -> Evaluation:
    """Evaluate every CSV run under ``root`` (one folder or several) by the prefix protocol.

    Every run with rows after its training rows is evaluated; none is
    skipped for what its labels say:

    * a run without an ``anomaly`` column (SKAB's anomaly-free run, a
      plant's unlabelled history) counts as normal operation, as in
      :func:`evaluate_history`: every alert on it is a false alarm. It is
      listed in ``Evaluation.warnings``, because that is an assumption;
    * a run whose training rows hold labelled anomalies is trained on them
      all the same (a plant's training window is not labelled) and listed in
      ``Evaluation.warnings``.

    Only a run too short to leave a row to judge is listed in
    ``Evaluation.skipped``. With ``test_rows``, each run is cut into the
    windows of :func:`rolling_windows`, each evaluated as its own line and
    named ``<run>.rows-<start>-<stop>.csv``.
    """
    started = time.perf_counter()
    config = config or TrainingConfig()
    runs, skipped = [], []
    warned: list[tuple[str, str]] = []
    used: set[str] = set()
    with tempfile.TemporaryDirectory(prefix="lineguard-eval-") as tmp:
        registry = Registry(registry_dir or tmp)
        for rel, path in runs_under(root):
            run = _readable(rel, path, skipped, warned)
            if run is None:
                continue
            windows = rolling_windows(len(run), train_rows, test_rows)
            if not windows:
                need = train_rows + (test_rows or 1)
                skipped.append((str(rel), f"{len(run)} rows, fewer than the {need} a window needs"))
                continue
            if run.anomaly is None:
                zeros = np.zeros(len(run), dtype=np.int8)
                run = replace(run, anomaly=zeros, changepoint=zeros.copy())
                warned.append((str(rel), "no anomaly labels: counted as normal operation"))
            for start, stop in windows:
                part = run if test_rows is None else _window(run, start, stop)
                name = (
                    str(rel)
                    if test_rows is None
                    else str(rel.with_name(f"{rel.stem}.rows-{start}-{stop}{rel.suffix}"))
                )
                if part.anomaly[:train_rows].any():
                    # A plant's training window is not labelled: the run is
                    # evaluated all the same, and the dirty window reported.
                    first = int(np.flatnonzero(part.anomaly[:train_rows])[0])
                    dirty = int(part.anomaly[:train_rows].sum())
                    warned.append(
                        (
                            name,
                            f"{dirty} of the {train_rows} training rows are labelled anomalous "
                            f"(first: row {first}); trained on them anyway",
                        )
                    )
                live, dead = _with_readings(part.sensors, part.values[:train_rows])
                if not live.any():
                    skipped.append((name, f"no reading at all in its {train_rows} training rows"))
                    continue
                if dead:
                    warned.append(
                        (
                            name,
                            f"no reading in the {train_rows} training rows for "
                            f"{', '.join(dead)}; trained and scored without them",
                        )
                    )
                    part = replace(
                        part,
                        sensors=tuple(s for s in part.sensors if s not in dead),
                        values=part.values[:, live],
                    )
                line = _line_id(Path(name), used)
                runs.append(evaluate_run(part, name, line, registry, train_rows, config, plan))
    return Evaluation(
        runs=runs, skipped=skipped, seconds=time.perf_counter() - started, warnings=warned
    )


def _with_readings(sensors: Sequence[str], X: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Per column, does it hold at least one reading (a finite value); and
    the sensors that hold none, which the rows cannot train."""
    live = np.isfinite(np.asarray(X, dtype=np.float64)).any(axis=0)
    return live, [s for s, ok in zip(sensors, live, strict=True) if not ok]


def _readable(
    rel: Path,
    path: Path,
    skipped: list[tuple[str, str]],
    warned: list[tuple[str, str]],
    unreadable: str = "cannot be read as a run",
) -> RecordedRun | None:
    """One run, or None where its file cannot be read as a run.

    A file that is not a run (no time column, a row of the wrong length) or
    holds no row is listed in ``skipped`` with the reader's reason, after
    ``unreadable``, and the other runs are used all the same; what the
    reader had to make of a readable file (cells read as missing, text
    columns) is listed in ``warned``.
    """
    try:
        run = read_run(path)
    except RunFormatError as exc:
        skipped.append((str(rel), f"{unreadable}: {exc}"))
        return None
    warned.extend((str(rel), w) for w in run.warnings)
    if not len(run):
        skipped.append((str(rel), f"{unreadable}: no rows under its header"))
        return None
    return run


# -- outputs ---------------------------------------------------------------
def _iso(time_us: int) -> str:
    stamp = datetime.fromtimestamp(time_us / 1e6, tz=timezone.utc).replace(tzinfo=None)
    return stamp.isoformat(sep=" ", timespec="microseconds" if time_us % 1_000_000 else "seconds")


def write_predictions(evaluation: Evaluation, out: str | Path) -> list[Path]:
    """One ``;``-separated predictions CSV per run, at the run's relative path under ``out``.

    Columns ``datetime;score;threshold;anomaly_pred`` for every test row. The
    alerts with their ranked sensor contributions go next to each CSV as
    ``<run>.alerts.json``, and the headline metrics to ``out/summary.json``.
    """
    out = Path(out)
    written = []
    for run in evaluation.runs:
        target = out / run.name
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle, delimiter=";", lineterminator="\n")
            writer.writerow(["datetime", "score", "threshold", "anomaly_pred"])
            for t, s, a in zip(
                run.time_us.tolist(), run.score.tolist(), run.anomaly.tolist(), strict=True
            ):
                writer.writerow([_iso(t), f"{s:.6g}", f"{run.threshold:.6g}", int(a)])
        alerts = {
            "run": run.name,
            "line": run.line,
            "detector": run.detector,
            "threshold": run.threshold,
            "alerts": [a.to_dict() for a in run.alerts],
        }
        target.with_suffix(".alerts.json").write_text(json.dumps(alerts, indent=1) + "\n")
        written.append(target)
    summary = evaluation.summary() | {
        "runs_detail": [
            {
                "run": r.name,
                "detector": r.detector,
                "f1": _rounded(r.counts.defined()["f1"], 4),
                "far": round(r.counts.far, 2),
                "mar": _rounded(r.counts.defined()["mar"], 2),
                "events": r.counts.events,
                "events_detected": r.counts.events_detected,
                "false_alarm_events": r.counts.false_alarm_events,
            }
            for r in evaluation.runs
        ],
        "skipped": [{"file": f, "reason": why} for f, why in evaluation.skipped],
        "warnings": [{"file": f, "warning": why} for f, why in evaluation.warnings],
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    return written
