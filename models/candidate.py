"""Evaluation of a candidate model against the line's active version.

Before a data scientist promotes a retrained model, both versions score the
very same frames, from stream start, through the worker's processor
(:func:`lineguard.models.evaluation.score_frames`, the one offline scorer,
each version with its own threshold and debounce). The report says, for
each version, how often it would have alerted, and -- where the frames
carry labels (a labelled recording, or QA feedback on InfluxDB history) --
SKAB's pointwise F1, false-alarm and missed-alarm rates plus event recall
and false-alarm events (:mod:`lineguard.models.metrics`); and how often the
two versions agree.
The report is stored in the candidate's manifest (``evaluation``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from lineguard.ingest.contract import utc_from_us
from lineguard.models.evaluation import score_frames
from lineguard.models.metrics import score_alerts, segments
from lineguard.models.registry import ModelBundle

__all__ = ["Scorer", "absent_sensors", "evaluate_candidate", "version_metrics"]


@dataclass(frozen=True)
class Scorer:
    """What it takes to score frames like the worker: pipeline and alert rule."""

    name: str
    pipeline: Any
    sensors: list[str]
    threshold: float
    debounce: tuple[int, int]

    @classmethod
    def from_bundle(cls, bundle: Any) -> Scorer:
        """From a loaded :class:`~lineguard.models.registry.ModelBundle`."""
        return cls(
            bundle.version, bundle.pipeline, bundle.sensors, bundle.threshold, bundle.debounce
        )

    def alerts(
        self, data_sensors: list[str], X: np.ndarray, time_us: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(score, debounced alert flag) per frame, from stream start.

        Scored by the offline scorer (:func:`lineguard.models.evaluation.score_frames`,
        the worker's processor): columns are matched by sensor name, and the
        state resets at a gap exactly as in the live worker (see
        :func:`lineguard.detectors.scoring.gap_bound_us`).
        """
        k, n = self.debounce
        manifest = {
            "sensors": list(self.sensors),
            "threshold": float(self.threshold),
            "debounce": {"k": k, "n": n},
        }
        bundle = ModelBundle(
            line_id="candidate", version=self.name, pipeline=self.pipeline, manifest=manifest
        )
        scored = score_frames(bundle, data_sensors, time_us, X, source=self.name)
        return scored.score, scored.anomaly


def absent_sensors(model_sensors: list[str], data_sensors: list[str], X: np.ndarray) -> list[str]:
    """The model's sensors the data cannot supply: no column, or no reading at all.

    Scoring imputes such a sensor on every frame (its training median), so
    the model sees a line that never moves on that axis: its alert rate then
    says nothing about the model. Callers refuse or mark the result.
    """
    position = {s: i for i, s in enumerate(data_sensors)}
    X = np.asarray(X, dtype=np.float64)
    absent = []
    for s in model_sensors:
        i = position.get(s)
        if i is None or (X.shape[0] > 0 and bool(np.isnan(X[:, i]).all())):
            absent.append(s)
    return absent


def version_metrics(
    flags: np.ndarray, labels: np.ndarray | None, keep: np.ndarray | None = None
) -> dict[str, Any]:
    """Alert rate, and label metrics when there are labels, for one version.

    ``keep`` masks frames that count (maintenance frames are left out).
    """
    flags = np.asarray(flags, dtype=bool)
    keep = np.ones(flags.shape[0], bool) if keep is None else np.asarray(keep, bool)
    f = flags[keep]
    out: dict[str, Any] = {
        "frames": int(f.size),
        "alert_rate_pct": round(100.0 * f.mean(), 3) if f.size else 0.0,
        "alerts": len(segments(f)),
    }
    if labels is not None and f.size:
        score = score_alerts(np.asarray(labels, bool)[keep], f)
        out.update(
            f1=round(score.f1, 4),
            far_pct=round(score.far, 3),
            mar_pct=round(score.mar, 3),
            events=score.events,
            events_detected=score.events_detected,
            false_alarm_events=score.false_alarm_events,
        )
    return out


def evaluate_candidate(
    candidate: Scorer,
    active: Scorer | None,
    data_sensors: list[str],
    time_us: np.ndarray,
    X: np.ndarray,
    labels: np.ndarray | None = None,
    keep: np.ndarray | None = None,
    source: str = "",
) -> dict[str, Any]:
    """Score the same frames with both versions and compare.

    Parameters
    ----------
    candidate, active : Scorer
        The new model and the line's active one (None for a line's first model).
    data_sensors : list of str
        Column names of ``X``.
    time_us : ndarray of int64
        Frame times, consecutive stream order.
    X : ndarray of shape (n, len(data_sensors))
        Raw frames.
    labels : ndarray of bool, optional
        True where a frame is a real defect.
    keep : ndarray of bool, optional
        Frames that count in the metrics (both versions still score every
        frame, so their temporal windows and debounce see the true stream).
    source : str
        Where the frames came from, for the report.

    Returns
    -------
    dict
        ``data`` (window, frames, labelled frames), ``candidate`` and
        ``active`` metrics (each with ``imputed_sensors``: the model's sensors absent
        from the data, or None), and ``agreement_pct`` (share of counted frames on
        which both versions' alert flags agree).
    """
    if len(time_us) == 0:
        raise ValueError("expected frames to evaluate on; got none")
    report: dict[str, Any] = {
        "data": {
            "source": source,
            "frames": len(time_us),
            "start": utc_from_us(int(time_us[0])).isoformat(),
            "end": utc_from_us(int(time_us[-1])).isoformat(),
            "labelled_defect_frames": int(np.sum(labels)) if labels is not None else None,
        },
        "candidate": {"version": candidate.name},
        "active": None,
    }
    keep_mask = np.ones(len(time_us), bool) if keep is None else np.asarray(keep, bool)

    def imputed(scorer: Scorer) -> str | None:  # marked in the report, never silent
        return ", ".join(absent_sensors(scorer.sensors, data_sensors, X)) or None

    _, c_flags = candidate.alerts(data_sensors, X, time_us)
    report["candidate"].update(version_metrics(c_flags, labels, keep_mask))
    report["candidate"]["imputed_sensors"] = imputed(candidate)
    if active is not None:
        _, a_flags = active.alerts(data_sensors, X, time_us)
        report["active"] = {
            "version": active.name,
            **version_metrics(a_flags, labels, keep_mask),
            "imputed_sensors": imputed(active),
        }
        agree = (c_flags == a_flags)[keep_mask]
        report["agreement_pct"] = round(100.0 * agree.mean(), 3) if agree.size else None
    return report
