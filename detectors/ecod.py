"""ECOD frozen for serving: empirical-CDF outlier scores against fixed training ECDFs.

ECOD (Li et al., 2022) scores a row by how deep it sits in the tails of each
column's empirical distribution: per column, the negative log of the left and
right tail probabilities, choosing the tail that the column's skewness points
to, summed over columns. It has no hyper-parameters, is invariant to monotone
rescaling of each sensor, and its per-column terms are a natural attribution.

PyOD's ``ECOD.decision_function`` recomputes the ECDF on *training + new* rows
every call, so a micro-batch's scores depend on the other rows in the batch
and each call costs a sort of the whole training set. :class:`FrozenECOD`
stores each column's sorted training values once (or at most
``max_quantiles`` evenly spaced quantiles of them) and looks new values up
with :func:`numpy.searchsorted`. For a single scored row this reproduces
PyOD's tail probabilities exactly (the scored value counts itself, which also
keeps probabilities away from zero); for a batch each row is scored as if it
were alone, which is what a streaming detector needs.
"""

from __future__ import annotations

import numpy as np

from ._numeric import ordered_sum
from .base import NO_SPREAD, Detector, normalize_rows

__all__ = ["FrozenECOD"]


class FrozenECOD(Detector):
    """Empirical-CDF-based outlier detector with a frozen training ECDF.

    Parameters
    ----------
    max_quantiles : int, default=2048
        Upper bound on the stored support points per column. Training sets
        larger than this are summarized by that many evenly spaced quantiles,
        which bounds memory and lookup cost independently of history length.

    Attributes
    ----------
    n_features_in_ : int
    support_ : ndarray of shape (m, n_features)
        Sorted training values (or quantiles) per column, ``m <= max_quantiles``.
    skew_sign_ : ndarray of shape (n_features,)
        Sign of each column's training skewness (-1, 0 or 1); picks the tail
        that counts as "unusual" for skewed sensors, as in PyOD.
    varying_ : ndarray of int
        Columns with spread in the fit rows; the others score 0.
    """

    def __init__(self, max_quantiles: int = 2048) -> None:
        self.max_quantiles = max_quantiles

    def fit(self, X: np.ndarray, y: object = None) -> FrozenECOD:
        """Store the per-column training ECDF (sorted values or quantiles)."""
        X = self._validate_fit_input(X)
        if int(self.max_quantiles) < 2:
            raise ValueError(f"max_quantiles must be >= 2, got {self.max_quantiles!r}.")
        n, d = X.shape
        self.n_features_in_ = d
        if n <= self.max_quantiles:
            support = np.sort(X, axis=0)
        else:
            # Mid-point probabilities: each stored value stands for n/m rows.
            probs = (np.arange(self.max_quantiles) + 0.5) / self.max_quantiles
            support = np.quantile(X, probs, axis=0)
        self.support_ = np.ascontiguousarray(support)
        self.skew_sign_ = np.sign(_skewness(X))
        # A column with one value in every fit row has an ECDF that puts any
        # other value in its most extreme tail: a change by rounding would
        # score as high as the strongest anomaly a column can show. It says
        # nothing about normal spread, so it is left out of the score, as the
        # scale-based detectors leave it (base.feature_scale).
        self.varying_ = np.flatnonzero(X.std(axis=0) > NO_SPREAD)
        return self

    def _tail_scores(self, X: np.ndarray) -> np.ndarray:
        """Per-column ECOD outlyingness -log(tail probability), shape (n, d)."""
        m = self.support_.shape[0]
        n, d = X.shape
        # Columns left out (no spread in the fit rows) score 0, as their one
        # fit value does: it is in both tails' every support point.
        below = np.full((n, d), float(m))
        above = np.full((n, d), float(m))
        # A model saved before ``varying_`` existed scores every column.
        columns = getattr(self, "varying_", range(d))
        for j in columns:  # d is small (sensors x features); each lookup is vectorized
            col = self.support_[:, j]
            below[:, j] = np.searchsorted(col, X[:, j], side="right")
            above[:, j] = m - np.searchsorted(col, X[:, j], side="left")
        # "+1": the scored value is part of its own ECDF, as in PyOD's
        # train+test ECDF; it also keeps -log finite beyond the training range.
        u_left = -np.log((below + 1.0) / (m + 1.0))
        u_right = -np.log((above + 1.0) / (m + 1.0))
        s = self.skew_sign_
        # PyOD: negative skew -> left tail, positive -> right tail, symmetric -> both.
        u_skew = np.where(s < 0, u_left, np.where(s > 0, u_right, u_left + u_right))
        return np.maximum(np.maximum(u_left, u_right), u_skew)

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """Sum of per-column tail scores (higher = more anomalous)."""
        X = self._validate_score_input(X)
        return ordered_sum(self._tail_scores(X))

    def contributions(self, X: np.ndarray) -> np.ndarray:
        """Each column's share of the summed tail score."""
        X = self._validate_score_input(X)
        return normalize_rows(self._tail_scores(X))


def _skewness(X: np.ndarray) -> np.ndarray:
    """Biased sample skewness per column (scipy.stats.skew default); 0 if constant."""
    centered = X - X.mean(axis=0)
    m2 = (centered**2).mean(axis=0)
    m3 = (centered**3).mean(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        g = m3 / m2**1.5
    # Constant or numerically flat columns have no preferred tail.
    return np.where(m2 > 1e-24 * np.maximum(1.0, X.mean(axis=0) ** 2), g, 0.0)
