"""Alert frames marked by their reason, for the matplotlib reports.

A sensor check (freeze, step, relation) can hold a line in alert while the
multivariate score sits under its threshold. A plot of the score alone then
shows an alert from nowhere. Both reports (the incident report and the
evaluation report) therefore draw each alert frame with the marker and
colour of its reason, and name the sensor behind a check in the legend:
a frozen flow meter reads "freeze (FT2)" where the score line is flat.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from lineguard.contracts import ALERT_REASONS

__all__ = ["HELD", "REASON_STYLES", "mark_reasons", "reason_label"]

#: Marker and colour per reason; checks get shapes that differ from the
#: score's dots so they stay distinct in grey print too.
REASON_STYLES: dict[str, tuple[str, str]] = {
    "score": ("o", "#d1495b"),
    "freeze": ("s", "#1b9e77"),
    "step": ("^", "#7570b3"),
    "relation": ("D", "#e7298a"),
    "unseen_mode": ("X", "#66a61e"),
}
#: Label of alert frames without a reason of their own (the k-of-n debounce
#: holds the alert between exceeding frames).
HELD = "held by debounce"
_HELD_STYLE = ("o", "#9aa0a6")
_SENSORS_IN_LABEL = 2


def reason_label(reason: str, sensors: Sequence[str]) -> str:
    """Legend text: the reason and the sensors behind it, most frequent first."""
    named = [s for s, _ in Counter(s for s in sensors if s).most_common(_SENSORS_IN_LABEL)]
    return f"{reason} ({', '.join(named)})" if named else reason


def mark_reasons(
    ax: Any,
    t: np.ndarray,
    score: np.ndarray,
    anomaly: np.ndarray,
    reasons: Sequence[str],
    top_sensors: Sequence[str],
    size: float = 9.0,
) -> list[Any]:
    """Scatter the alert frames on ``ax``, one artist per reason present.

    Parameters
    ----------
    ax : matplotlib Axes
        The score axis.
    t, score : ndarray, shape (n,)
        Frame times (as plotted) and scores.
    anomaly : ndarray of bool, shape (n,)
        Frames in alert; only these are marked.
    reasons : sequence of str, length n
        Each frame's reason name, ``""`` where it does not exceed.
    top_sensors : sequence of str, length n
        Each frame's contributing sensors, comma-separated; the first is the
        sensor behind its reason (the check's own where a check fired).
    size : float
        Marker area.

    Returns
    -------
    list of PathCollection
        One per reason with alert frames, in the contract's order, then the
        frames held by the debounce; each with ``gid`` ``reason:<name>``
        (``reason:`` for held frames) and the legend label.
    """
    flags = np.asarray(anomaly, dtype=bool)
    why = np.asarray(list(reasons), dtype=object)
    first = np.array([(s or "").split(",", 1)[0] for s in top_sensors], dtype=object)
    if why.shape != flags.shape or first.shape != flags.shape:
        raise ValueError(
            f"expected one reason and one top_sensors entry per frame ({flags.size}); "
            f"got {why.size} and {first.size}"
        )
    artists = []
    for reason in (*ALERT_REASONS, ""):
        mask = flags & (why == reason)
        if not mask.any():
            continue
        marker, colour = REASON_STYLES.get(reason, _HELD_STYLE)
        label = reason_label(reason, first[mask].tolist()) if reason else HELD
        artists.append(
            ax.scatter(
                t[mask],
                np.asarray(score)[mask],
                s=size,
                marker=marker,
                color=colour,
                zorder=3,
                label=label,
                gid=f"reason:{reason}",
            )
        )
    return artists
