"""PCA-based process monitoring: Hotelling T² plus the Q / SPE residual.

Classic multivariate statistical process control. Normal operation of a line
moves along a few correlated directions (e.g. pump current, pressure and flow
rise together). PCA on normal data finds that subspace:

* **T²** measures how far a row sits *inside* the normal subspace, in units of
  each component's normal variance (an unusually strong but familiar pattern).
* **Q / SPE** (squared prediction error) measures how far the row sits *off*
  the subspace: a broken correlation, which is what most sensor and process
  faults look like.

The two statistics live on different scales, so each is divided by its own
training control limit (an upper quantile of the in-sample statistic) and the
two are added: a score of 1 means "at the usual limit of one statistic".
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._numeric import ordered_matmul, ordered_sum
from .base import Detector, feature_scale, normalize_rows

__all__ = ["PCADetector"]

# A floor keeps a degenerate training set (no residual space) from turning
# into divisions by ~0 that explode on numerical noise; constant columns get
# an infinite scale (base.feature_scale).
_MIN_LIMIT = 1e-6
# Largest rounding error, in score units, that SPE's fast form may add.
# Scores are compared with thresholds of order 1 and written with 12
# significant digits.
_SPE_SCORE_TOLERANCE = 1e-10


class PCADetector(Detector):
    """Hotelling T² + SPE detector with per-feature attribution.

    Parameters
    ----------
    n_components : float or int, default=0.9
        If in (0, 1): keep the fewest components explaining at least that
        fraction of the (standardized) training variance. If an int >= 1: keep
        that many components (capped at what the data supports).
    limit_quantile : float, default=0.99
        Quantile of the in-sample T² and SPE used as each statistic's
        normalizing scale. It only sets the relative weight of the two terms;
        the alert threshold is calibrated separately on held-back data.

    Attributes
    ----------
    n_features_in_ : int
    mean_, scale_ : ndarray of shape (n_features,)
        Standardization learned on training data (PCA is scale-sensitive).
    components_ : ndarray of shape (n_features, n_components_)
        Orthonormal loadings of the retained components.
    explained_variance_ : ndarray of shape (n_components_,)
    n_components_ : int
    t2_limit_, spe_limit_ : float
        Training-calibrated scales of the two statistics.
    """

    def __init__(self, n_components: float | int = 0.9, limit_quantile: float = 0.99) -> None:
        self.n_components = n_components
        self.limit_quantile = limit_quantile

    def fit(self, X: np.ndarray, y: object = None) -> PCADetector:
        """Learn the normal subspace and the two control scales from normal rows."""
        X = self._validate_fit_input(X, min_samples=3)
        if not 0.0 < self.limit_quantile < 1.0:
            raise ValueError(f"limit_quantile must be in (0, 1), got {self.limit_quantile!r}.")
        n, d = X.shape
        self.n_features_in_ = d
        self.mean_ = X.mean(axis=0)
        self.scale_ = feature_scale(X)
        Z = (X - self.mean_) / self.scale_
        _, s, vt = np.linalg.svd(Z, full_matrices=False)
        var = s**2 / (n - 1)
        usable = int(np.sum(var > 1e-10 * max(var.sum(), 1e-300)))
        k = self._choose_k(var, max(usable, 1))
        self.n_components_ = k
        self.components_ = vt[:k].T.copy()
        self.explained_variance_ = var[:k].copy()
        t2, spe = self._statistics(X, exact_spe=True)
        q = self.limit_quantile
        self.t2_limit_ = float(max(np.quantile(t2, q), _MIN_LIMIT))
        self.spe_limit_ = float(max(np.quantile(spe, q), _MIN_LIMIT))
        return self

    def _choose_k(self, var: np.ndarray, usable: int) -> int:
        nc = self.n_components
        if isinstance(nc, (int, np.integer)) and not isinstance(nc, bool):
            if nc < 1:
                raise ValueError(f"n_components as an int must be >= 1, got {nc}.")
            return int(min(nc, usable))
        if isinstance(nc, float) and 0.0 < nc < 1.0:
            ratio = np.cumsum(var) / var.sum()
            return int(min(np.searchsorted(ratio, nc) + 1, usable))
        raise ValueError(f"n_components must be a float in (0, 1) or an int >= 1, got {nc!r}.")

    def _parts(
        self, Z: np.ndarray, scores: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per-feature non-negative pieces of T² and SPE for standardized rows.

        With z = Λ^{-1/2} Pᵀx (whitened scores) and P orthonormal,
        T² = ||z||² = ||P z||², so the squared entries of P z are a
        non-negative split of T² over features. SPE = ||x - P Pᵀx||² splits
        into the squared residual of each feature. ``scores`` (``Z @ P`` of
        these rows) may come from the scoring pass: a row's product does not
        depend on the other rows, so it is the same number.
        """
        P = self.components_
        # Fixed-order products: identical results for any batch size.
        if scores is None:
            scores = ordered_matmul(Z, P)
        # Both back-projections in one product (rows stacked): each row's
        # result does not depend on the others, so this is the same as two.
        m = scores.shape[0]
        both = ordered_matmul(
            np.concatenate([scores / np.sqrt(self.explained_variance_), scores]), P.T
        )
        back = both[:m]
        resid = Z - both[m:]
        return back**2, resid**2

    def _statistics(self, X: np.ndarray, exact_spe: bool = False) -> tuple[np.ndarray, np.ndarray]:
        t2, spe, _, _ = self._statistics_and_scores(X, exact_spe)
        return t2, spe

    def _statistics_and_scores(
        self, X: np.ndarray, exact_spe: bool = False
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """T² and SPE per raw row, without the per-feature split.

        T² is summed over the whitened scores rather than over their
        back-projection (the same number, P being orthonormal). SPE is
        ``||z||² - ||Pᵀz||²`` (Pythagoras: the residual is orthogonal to
        the scores), which saves the back-projection, a third of the
        scoring time. The subtraction cancels when a row sits almost inside
        the normal subspace, so it is only used where its rounding bound,
        a few ``K eps ||z||²``, is below ``_SPE_SCORE_TOLERANCE`` of the
        score; other rows (a model with almost no residual variance, where
        the bound is large against ``spe_limit_``) get the residual
        computed in full, as ``fit`` does for every row. Also returns the
        standardized rows and their scores (for :meth:`_contributions_at`).
        """
        Z = X - self.mean_
        Z /= self.scale_  # in place: the same two operations, one array
        P = self.components_
        scores = ordered_matmul(Z, P)
        whitened = scores / np.sqrt(self.explained_variance_)
        t2 = ordered_sum(whitened * whitened)
        if exact_spe:
            full = np.arange(Z.shape[0])
            spe = np.empty(Z.shape[0])
        else:
            energy = ordered_sum(Z * Z)
            spe = energy - ordered_sum(scores * scores)
            K, k = P.shape
            bound = (1.0 + 2.0 * np.sqrt(k)) * K * np.finfo(np.float64).eps * energy
            full = np.flatnonzero(bound > _SPE_SCORE_TOLERANCE * self.spe_limit_)
        if full.size:
            resid = Z[full] - ordered_matmul(scores[full], P.T)
            spe[full] = ordered_sum(resid * resid)
        return t2, np.maximum(spe, 0.0), Z, scores

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """T²/T²_limit + SPE/SPE_limit per row (higher = more anomalous)."""
        X = self._validate_score_input(X)
        t2, spe = self._statistics(X)
        return t2 / self.t2_limit_ + spe / self.spe_limit_

    def contributions(self, X: np.ndarray) -> np.ndarray:
        """Per-feature share of the combined score (exact decomposition)."""
        X = self._validate_score_input(X)
        t2, spe = self._parts((X - self.mean_) / self.scale_)
        return normalize_rows(t2 / self.t2_limit_ + spe / self.spe_limit_)

    def _decision_and_context(self, X: np.ndarray) -> tuple[np.ndarray, Any]:
        X = self._validate_score_input(X)
        t2, spe, Z, scores = self._statistics_and_scores(X)
        return t2 / self.t2_limit_ + spe / self.spe_limit_, (Z, scores)

    def _contributions_at(self, X: np.ndarray, rows: np.ndarray, context: Any) -> np.ndarray:
        if context is None:
            return self.contributions(X[rows])
        # The scoring pass's standardized rows and scores: no second product.
        Z, scores = context
        t2, spe = self._parts(Z[rows], scores[rows])
        return normalize_rows(t2 / self.t2_limit_ + spe / self.spe_limit_)
