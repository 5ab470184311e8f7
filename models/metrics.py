"""Scoring alerts against labelled anomalies, the way SKAB does and QA feels.

Pointwise metrics follow SKAB's protocol (confusion summed over runs):
F1 = TP / (TP + (FN + FP) / 2), FAR = FP / (FP + TN), MAR = FN / (FN + TP).
Plant QA also counts *events*: a labelled fault is caught when at least one
alert falls inside it, and a false alarm is an alert run that touches no
labelled fault, however many frames it lasts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["AlertScore", "format_rate", "score_alerts", "segments"]


def segments(flags: np.ndarray) -> list[tuple[int, int]]:
    """Runs of true values as ``(start, stop)`` index pairs (stop exclusive)."""
    f = np.asarray(flags, dtype=bool).astype(np.int8)
    edges = np.diff(np.concatenate(([0], f, [0])))
    return list(
        zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist(), strict=True)
    )


@dataclass(frozen=True)
class AlertScore:
    """Pointwise and event counts of predictions against labels."""

    tp: int
    fp: int
    tn: int
    fn: int
    events: int
    events_detected: int
    false_alarm_events: int

    def __add__(self, other: AlertScore) -> AlertScore:
        return AlertScore(*(a + b for a, b in zip(self._tuple(), other._tuple(), strict=True)))

    def _tuple(self) -> tuple[int, ...]:
        return (
            self.tp,
            self.fp,
            self.tn,
            self.fn,
            self.events,
            self.events_detected,
            self.false_alarm_events,
        )

    @property
    def has_faults(self) -> bool:
        """Whether any row is labelled a fault; without one, F1 and MAR mean nothing.

        A normal run (no labels, counted as normal operation) has only a
        false-alarm rate: its F1 and MAR are 0 by the formulas below, which
        would read as a result. :meth:`defined` gives None for them instead.
        """
        return self.tp + self.fn > 0

    def defined(self) -> dict[str, float | None]:
        """F1, FAR, MAR and event recall, None where they have no meaning.

        F1 and MAR need a labelled fault row (:attr:`has_faults`), event recall
        a labelled event; FAR always exists. Every table and JSON output of an
        evaluation takes its figures from here, so they agree.
        """
        return {
            "f1": self.f1 if self.has_faults else None,
            "far": self.far,
            "mar": self.mar if self.has_faults else None,
            "event_recall": self.event_recall if self.events else None,
        }

    @property
    def f1(self) -> float:
        """SKAB's F1: TP / (TP + (FN + FP) / 2)."""
        denom = self.tp + (self.fn + self.fp) / 2
        return self.tp / denom if denom else 0.0

    @property
    def far(self) -> float:
        """False-alarm rate in %, FP / (FP + TN) * 100."""
        return 100.0 * self.fp / (self.fp + self.tn) if self.fp + self.tn else 0.0

    @property
    def mar(self) -> float:
        """Missed-alarm rate in %, FN / (FN + TP) * 100."""
        return 100.0 * self.fn / (self.fn + self.tp) if self.fn + self.tp else 0.0

    @property
    def event_recall(self) -> float:
        """Share of labelled anomaly segments with at least one alert inside."""
        return self.events_detected / self.events if self.events else 1.0


def score_alerts(labels: np.ndarray, predictions: np.ndarray) -> AlertScore:
    """Compare per-frame alert flags with per-frame labels."""
    y = np.asarray(labels, dtype=bool)
    p = np.asarray(predictions, dtype=bool)
    if y.shape != p.shape:
        raise ValueError(f"labels and predictions must align; got {y.shape} and {p.shape}")
    labelled = segments(y)
    detected = sum(1 for a, b in labelled if p[a:b].any())
    false_alarms = sum(1 for a, b in segments(p) if not y[a:b].any())
    return AlertScore(
        tp=int((y & p).sum()),
        fp=int((~y & p).sum()),
        tn=int((~y & ~p).sum()),
        fn=int((y & ~p).sum()),
        events=len(labelled),
        events_detected=detected,
        false_alarm_events=false_alarms,
    )


def format_rate(value: float | None, spec: str) -> str:
    """A figure for a table, or '-' where it has no meaning (None from ``AlertScore.defined``)."""
    return "-" if value is None else format(value, spec)
