"""Scored frames as InfluxDB points (``lineguard_score``).

One point per scored frame, tagged with site, line and model version. InfluxDB
stores every field of a point as its own value, and its write path -- not
scoring -- is what limits a worker (``bench/pipeline.py``: five fields took
about 5.2 µs of ``influxd`` CPU per point, three 4.0 µs), so a point carries
only what a reader needs on every frame and marks the rare frames with
extra fields:

* on every frame: ``score``, ``threshold`` (so a dashboard divides one by
  the other in any time bucket) and ``anomaly`` (the debounced alert state,
  read with ``last()``);
* only where true: ``exceed`` (score over the threshold) and ``historical``
  (a late frame, buffered by the gateway during an outage) -- query them
  with ``count("exceed")`` or ``WHERE "historical" = true``;
* only where someone asks "which sensors?": ``top_sensors`` on frames that
  exceed the threshold or are in alert;
* only where a frame exceeds: ``reason``, why it does (the multivariate
  score or the sensor check that fired, by name). A check can hold a line in
  alert while the score sits under the threshold; without the reason that
  alert would look like one from nowhere. One string column of the
  exceeding frames' group only, so quiet frames pay nothing for it
  (``bench/reason_cost.py`` measures the rest).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lineguard.contracts import ALERT_REASONS, REASON_FIELD, SCORE_MEASUREMENT
from lineguard.influx import encode_lines, encode_points

__all__ = ["REASON_NAMES", "RESULT_MEASUREMENT", "SCORE_DIGITS", "reason_names", "result_points"]

RESULT_MEASUREMENT = SCORE_MEASUREMENT
# Scores are written with 12 significant digits: far finer than any reading
# of them (the alert decision is made in the worker, on the exact value), at
# half the cost of the exact shortest repr -- formatting was the worker's
# largest per-frame Python cost after scoring.
SCORE_DIGITS = 12

_EXCEED, _ANOMALY, _HISTORICAL = 4, 2, 1

#: Reason names by the scorer's code (``BatchResult.reason``): "" for 0.
REASON_NAMES: np.ndarray = np.array(("", *ALERT_REASONS), dtype=object)
# As written: None (no field) for 0.
_WRITTEN = np.array((None, *ALERT_REASONS), dtype=object)


def reason_names(codes: np.ndarray) -> np.ndarray:
    """Reason names (object array of str, "" where quiet) from reason codes, in one take.

    Raises
    ------
    ValueError
        For a code outside the contract's reasons (a scorer newer than the
        contract), rather than writing a wrong name.
    """
    c = np.asarray(codes, dtype=np.intp)
    if c.size and (c.min() < 0 or c.max() >= REASON_NAMES.size):
        raise ValueError(
            f"expected reason codes 0..{REASON_NAMES.size - 1} "
            f"({', '.join(ALERT_REASONS)}); got {sorted(set(c.tolist()))}"
        )
    return REASON_NAMES[c]


def result_points(
    tags: dict[str, str],
    time_us: np.ndarray,
    result: Any,
    threshold: float,
    historical: np.ndarray,
    top_names: np.ndarray | None,
) -> str:
    """One ``lineguard_score`` point per frame, as line protocol in frame order.

    Parameters
    ----------
    tags : dict of str
        Shared by every point (site, line, model_version, ...).
    time_us : ndarray of int, shape (n,)
        Frame times.
    result : BatchResult
        The frames' ``score``, ``raw_exceed``, ``anomaly`` and ``reason``.
    threshold : float
        The model's threshold.
    historical : ndarray of bool, shape (n,)
        Late (buffered) frames.
    top_names : ndarray of str, shape (n,), or None
        Comma-separated contributing sensors (written on exceeding or alerted
        frames); None writes no ``top_sensors`` (shadow versions).
    """
    exceed = np.asarray(result.raw_exceed, dtype=bool)
    anomaly = np.asarray(result.anomaly, dtype=bool)
    late = np.asarray(historical, dtype=bool)
    n = len(exceed)
    if n == 0:
        return ""
    times_ns = np.asarray(time_us, dtype=np.int64) * 1000
    score = np.asarray(result.score, dtype=np.float64)
    codes = getattr(result, "reason", None)
    written = None
    if codes is not None and len(codes) == n and np.any(codes):
        reason_names(codes)  # refuse an unknown code before writing anything
        written = _WRITTEN[np.asarray(codes, dtype=np.intp)]
    # Frames with the same flags share one line template (constant fields
    # are written into it once); the groups are then put back in frame
    # order, because time-ordered writes are InfluxDB's cheapest. (Splitting
    # the groups by reason too, to make it a template constant, cost more in
    # extra groups than it saved: bench/RESULTS.md, 2026-12-01.)
    kind = exceed * _EXCEED | anomaly * _ANOMALY | late * _HISTORICAL
    groups = np.unique(kind).tolist()
    ordered = np.empty(n, dtype=object) if len(groups) > 1 else None
    for group in groups:
        mask = kind == group if ordered is not None else slice(None)
        m = n if ordered is None else int(mask.sum())
        fields: dict[str, Any] = {
            "score": score[mask],
            "threshold": np.full(m, float(threshold)),
            "anomaly": np.full(m, bool(group & _ANOMALY)),
        }
        if group & _EXCEED:
            fields["exceed"] = np.ones(m, dtype=bool)
            if written is not None:
                # Exceeding frames are exactly those with a reason (the
                # scorer's warm-up clears both); a code 0 would write none.
                fields[REASON_FIELD] = written[mask]
        if group & _HISTORICAL:
            fields["historical"] = np.ones(m, dtype=bool)
        if group & (_EXCEED | _ANOMALY) and top_names is not None:
            fields["top_sensors"] = np.asarray(top_names, dtype=object)[mask]
        if ordered is None:
            return encode_points(
                RESULT_MEASUREMENT, tags, fields, times_ns, significant_digits=SCORE_DIGITS
            )
        ordered[mask] = encode_lines(
            RESULT_MEASUREMENT, tags, fields, times_ns[mask], significant_digits=SCORE_DIGITS
        )
    return "\n".join(ordered.tolist())
