"""Robust fitting: a minority of anomalous rows in an unlabelled training window.

Nobody labels a plant's training window. A fault that ran for part of it --
a valve that started to stick, a relation that broke for a few minutes -- is
learned as normal: the detector widens its model of "normal" to cover it,
and the line is blind to that very fault from then on.

The defence is a trimmed fit by concentration steps (the C-steps of
Rousseeuw and Van Driessen's FAST-MCD, applied to any detector): fit on all
rows, score them, refit on all but the ``share`` highest-scoring rows, and
repeat a few times. Each step moves the model towards the most typical
rows; anomalous rows fewer than ``share`` are pushed out of the fit however
the first model placed them, which a single outlier rule on the first
model's scores cannot do (the first model has already absorbed them).

The share is taken **per operating mode**: on a batch line a short phase
(a discharge, a heater switching) is rare but normal, and trimming the
whole line's top rows would cut exactly those phases out and make the line
alarm on every batch. Within a mode, the top rows are the atypical ones.
Rows whose trailing window spans a mode switch (transitions) are never
trimmed: only the pooled model judges them, and a conveyor's starts and
stops, a few per cent of its rows, would otherwise all be cut and the first
one after training score thousands of limits (``LinePipeline.fit``).

Always trimming a share costs the fit the most extreme normal rows too. The
alert threshold is calibrated afterwards on held-back rows the trimmed
model never saw (:func:`lineguard.detectors.calibration.train_pipeline`),
so the false-alarm target holds; what changes is only which rows define
"normal". Measured (docs/evaluating-detectors.md): with ``share = 0.1`` a
broken relation filling up to 10 % of the training rows is detected as if
the window were clean; at 15 % the fault starts to be learned.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["DEFAULT_MAX_TRIM", "MIN_TRIM_GROUP_ROWS", "TRIM_STEPS", "trimmed_rows"]

#: Share of each mode's training rows a trimmed fit leaves out.
DEFAULT_MAX_TRIM = 0.1
#: Concentration steps (refits); FAST-MCD finds two or three enough.
TRIM_STEPS = 3
#: Modes with fewer rows are not trimmed (their top rows are not a tail).
MIN_TRIM_GROUP_ROWS = 30


def trimmed_rows(scores: np.ndarray, share: float, groups: np.ndarray | None = None) -> np.ndarray:
    """Rows kept by one concentration step: all but each group's top ``share``.

    Parameters
    ----------
    scores : ndarray of shape (n,)
        Anomaly scores of the training rows under the current fit.
    share : float
        Share of each group's rows to leave out, in [0, 0.5).
    groups : ndarray of int, shape (n,), optional
        Operating mode of each row (default: one group).

    Returns
    -------
    ndarray of bool, shape (n,)
        True for rows kept. Ties at the cut are kept.
    """
    if not 0.0 <= share < 0.5:
        raise ValueError(f"share must be in [0, 0.5), got {share!r}.")
    s = np.asarray(scores, dtype=np.float64).ravel()
    keep = np.ones(s.size, dtype=bool)
    if share == 0.0:
        return keep
    g = np.zeros(s.size, dtype=np.int64) if groups is None else np.asarray(groups).ravel()
    if g.shape != s.shape:
        raise ValueError(f"groups must hold one mode per score ({s.size}), got {g.shape}.")
    for value in np.unique(g):
        sel = np.flatnonzero(g == value)
        n_out = math.floor(share * sel.size)
        if sel.size < MIN_TRIM_GROUP_ROWS or n_out == 0:
            continue
        order = np.argsort(s[sel], kind="stable")
        cut = s[sel][order[sel.size - n_out - 1]]
        keep[sel] = s[sel] <= cut
    return keep
