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
  exceed the threshold or are in alert.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lineguard.contracts import SCORE_MEASUREMENT
from lineguard.influx import encode_points

__all__ = ["RESULT_MEASUREMENT", "SCORE_DIGITS", "result_points"]

RESULT_MEASUREMENT = SCORE_MEASUREMENT
# Scores are written with 12 significant digits: far finer than any reading
# of them (the alert decision is made in the worker, on the exact value), at
# half the cost of the exact shortest repr -- formatting was the worker's
# largest per-frame Python cost after scoring.
SCORE_DIGITS = 12

_EXCEED, _ANOMALY, _HISTORICAL = 4, 2, 1


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
        The frames' ``score``, ``raw_exceed`` and ``anomaly``.
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
    # Frames with the same flags share one line template (constant fields
    # are written into it once); the groups are then put back in frame
    # order, because time-ordered writes are InfluxDB's cheapest.
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
        if group & _HISTORICAL:
            fields["historical"] = np.ones(m, dtype=bool)
        if group & (_EXCEED | _ANOMALY) and top_names is not None:
            fields["top_sensors"] = np.asarray(top_names, dtype=object)[mask]
        text = encode_points(
            RESULT_MEASUREMENT, tags, fields, times_ns[mask], significant_digits=SCORE_DIGITS
        )
        if ordered is None:
            return text
        ordered[mask] = text.split("\n")
    return "\n".join(ordered.tolist())
