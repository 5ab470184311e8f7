"""Robust Mahalanobis distance (Minimum Covariance Determinant).

The squared Mahalanobis distance of a row from the normal mean, using the
normal covariance, is the natural "how unusual is this combination of
readings" measure for roughly elliptical (Gaussian-like) normal operation:
it flags both large excursions and broken correlations. Training windows on a
plant are rarely perfectly clean, so location and covariance are estimated
with MinCovDet, which ignores the most outlying fraction of training rows
instead of letting a short glitch inflate the covariance.
"""

from __future__ import annotations

import numpy as np
from sklearn.covariance import MinCovDet

from ._numeric import ordered_matmul, ordered_sum
from .base import Detector, feature_scale, normalize_rows

__all__ = ["RobustMahalanobis"]


class RobustMahalanobis(Detector):
    """Squared robust Mahalanobis distance with per-feature attribution.

    Parameters
    ----------
    support_fraction : float or None, default=None
        Fraction of training rows MinCovDet keeps (None: scikit-learn's
        default, about (n + d + 1) / 2n).
    ridge : float, default=1e-3
        Added to the diagonal of the (standardized) covariance. Sensors that
        are quantized or constant in training make the covariance singular;
        the ridge keeps the precision matrix finite.
    random_state : int or None, default=0
        Seed for MinCovDet's random restarts.

    Attributes
    ----------
    n_features_in_ : int
    mean_, scale_ : ndarray of shape (n_features,)
        Standardization applied before the covariance estimate.
    location_ : ndarray of shape (n_features,)
        Robust centre in standardized units.
    whitener_ : ndarray of shape (n_features, n_features)
        Symmetric inverse square root of the robust covariance (ZCA). Its
        output coordinates stay aligned with the input features, so the
        squared whitened coordinates split the distance over features.
    """

    def __init__(
        self,
        support_fraction: float | None = None,
        ridge: float = 1e-3,
        random_state: int | None = 0,
    ) -> None:
        self.support_fraction = support_fraction
        self.ridge = ridge
        self.random_state = random_state

    def fit(self, X: np.ndarray, y: object = None) -> RobustMahalanobis:
        """Estimate the robust centre and covariance of normal rows."""
        X = self._validate_fit_input(X)
        if X.shape[0] <= X.shape[1] + 1:
            raise ValueError(
                f"RobustMahalanobis.fit needs more rows than features + 1 to estimate a "
                f"covariance, got {X.shape[0]} rows for {X.shape[1]} features."
            )
        self.n_features_in_ = X.shape[1]
        self.mean_ = X.mean(axis=0)
        self.scale_ = feature_scale(X)
        Z = (X - self.mean_) / self.scale_
        mcd = MinCovDet(support_fraction=self.support_fraction, random_state=self.random_state).fit(
            Z
        )
        cov = mcd.covariance_ + self.ridge * np.eye(Z.shape[1])
        eigval, eigvec = np.linalg.eigh(cov)
        eigval = np.maximum(eigval, self.ridge)
        self.location_ = mcd.location_
        self.whitener_ = (eigvec / np.sqrt(eigval)) @ eigvec.T
        return self

    def _whitened(self, X: np.ndarray) -> np.ndarray:
        return ordered_matmul((X - self.mean_) / self.scale_ - self.location_, self.whitener_)

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """Squared robust Mahalanobis distance (higher = more anomalous)."""
        X = self._validate_score_input(X)
        return ordered_sum(self._whitened(X) ** 2)

    def contributions(self, X: np.ndarray) -> np.ndarray:
        """Share of each feature's squared ZCA-whitened coordinate."""
        X = self._validate_score_input(X)
        return normalize_rows(self._whitened(X) ** 2)
