"""Isolation forest wrapper with LineGuard's sign convention and attribution.

An isolation forest isolates rows with random axis-aligned splits; rows that
are isolated in few splits are rare. It makes no distributional assumption
and copes with multi-modal normal operation (several recipes on one line),
but it cannot see a broken correlation that stays inside every column's
normal range as well as PCA can.

scikit-learn's ``score_samples`` is *higher for normal* rows; this wrapper
negates it explicitly so that higher means more anomalous (in [0, 1]).
"""

from __future__ import annotations

import numpy as np
from sklearn.ensemble import IsolationForest

from .base import Detector, normalize_rows

__all__ = ["IsolationForestDetector"]

_MIN_SCALE = 1e-9


class IsolationForestDetector(Detector):
    """Isolation forest scored as ``-IsolationForest.score_samples``.

    Parameters
    ----------
    n_estimators : int, default=200
        Number of trees; more trees give smoother, more repeatable scores.
    max_samples : int or float or "auto", default="auto"
        Rows drawn per tree (scikit-learn semantics).
    max_features : float, default=1.0
        Fraction of columns drawn per tree.
    random_state : int or None, default=0
        Seed; fixed by default so a retrained line model is reproducible.

    Attributes
    ----------
    n_features_in_ : int
    forest_ : sklearn.ensemble.IsolationForest
    center_, scale_ : ndarray of shape (n_features,)
        Training median and robust spread (IQR / 1.349, falling back to the
        standard deviation), used only for attribution.

    Notes
    -----
    A forest has no exact additive decomposition of its score, so
    :meth:`contributions` reports each column's squared robust z-score
    share: the columns furthest from their normal median, in units of their
    normal spread. It is a proxy that agrees with the forest on the
    single-sensor excursions plant QA mostly asks about.
    """

    def __init__(
        self,
        n_estimators: int = 200,
        max_samples: int | float | str = "auto",
        max_features: float = 1.0,
        random_state: int | None = 0,
    ) -> None:
        self.n_estimators = n_estimators
        self.max_samples = max_samples
        self.max_features = max_features
        self.random_state = random_state

    def fit(self, X: np.ndarray, y: object = None) -> IsolationForestDetector:
        """Grow the forest on normal rows and record robust column scales."""
        X = self._validate_fit_input(X)
        self.n_features_in_ = X.shape[1]
        self.forest_ = IsolationForest(
            n_estimators=self.n_estimators,
            max_samples=self.max_samples,
            max_features=self.max_features,
            random_state=self.random_state,
        ).fit(X)
        self.center_ = np.median(X, axis=0)
        q75, q25 = np.percentile(X, [75, 25], axis=0)
        iqr_sigma = (q75 - q25) / 1.349
        std = X.std(axis=0)
        self.scale_ = np.maximum(np.where(iqr_sigma > _MIN_SCALE, iqr_sigma, std), _MIN_SCALE)
        return self

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """Negated scikit-learn ``score_samples`` (higher = more anomalous)."""
        X = self._validate_score_input(X)
        return -self.forest_.score_samples(X)

    def contributions(self, X: np.ndarray) -> np.ndarray:
        """Share of each column's squared robust z-score (see Notes)."""
        X = self._validate_score_input(X)
        return normalize_rows(((X - self.center_) / self.scale_) ** 2)
