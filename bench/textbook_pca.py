"""Textbook PCA T² + Q (SPE) monitoring with 99 % limits: the reference baseline.

Deliberately independent of :mod:`lineguard.detectors` (shares no code with
it), so a comparison against it is a comparison against the method as
process-monitoring textbooks give it (MacGregor & Kourti 1995; Jackson &
Mudholkar 1979):

* standardize each variable by its training mean and std (constant ones
  dropped);
* keep the principal components explaining 90 % of the variance;
* T² limit from the F distribution, ``a (n-1)(n+1) / (n (n-a)) F(a, n-a)``;
* Q limit from Jackson & Mudholkar's approximation with the residual
  eigenvalues;
* a row alarms when T² or Q exceeds its 99 % limit. No debounce, no
  temporal features.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

__all__ = ["TextbookPCA"]


class TextbookPCA:
    """PCA T²/Q monitor fitted on normal rows; ``alarms(X)`` gives 0/1 per row."""

    def __init__(self, variance: float = 0.9, alpha: float = 0.01) -> None:
        self.variance = variance
        self.alpha = alpha

    def fit(self, X: np.ndarray) -> TextbookPCA:
        """Learn mean, scale, loadings and the two control limits."""
        X = np.asarray(X, dtype=np.float64)
        std = X.std(axis=0)
        self.keep_ = std > 1e-12
        self.mean_ = X[:, self.keep_].mean(axis=0)
        self.std_ = std[self.keep_]
        Z = (X[:, self.keep_] - self.mean_) / self.std_
        n = Z.shape[0]
        eigval, eigvec = np.linalg.eigh(np.cov(Z, rowvar=False))
        order = np.argsort(eigval)[::-1]
        eigval, eigvec = np.maximum(eigval[order], 0.0), eigvec[:, order]
        a = int(np.searchsorted(np.cumsum(eigval) / eigval.sum(), self.variance) + 1)
        a = min(a, Z.shape[1] - 1) if Z.shape[1] > 1 else 1
        self.P_ = eigvec[:, :a]
        self.lam_ = eigval[:a]
        f = stats.f.ppf(1 - self.alpha, a, n - a)
        self.t2_limit_ = a * (n - 1) * (n + 1) / (n * (n - a)) * f
        resid = eigval[a:]
        t1, t2, t3 = (float(np.sum(resid**i)) for i in (1, 2, 3))
        if t1 <= 0:
            self.q_limit_ = 0.0
        else:
            h0 = 1 - 2 * t1 * t3 / (3 * t2**2)
            c = stats.norm.ppf(1 - self.alpha)
            self.q_limit_ = t1 * (
                c * np.sqrt(2 * t2 * h0**2) / t1 + 1 + t2 * h0 * (h0 - 1) / t1**2
            ) ** (1 / h0)
        return self

    def alarms(self, X: np.ndarray) -> np.ndarray:
        """1 where T² or Q exceeds its limit."""
        Z = (np.asarray(X, dtype=np.float64)[:, self.keep_] - self.mean_) / self.std_
        T = Z @ self.P_
        t2 = np.sum(T**2 / np.maximum(self.lam_, 1e-12), axis=1)
        q = np.sum((Z - T @ self.P_.T) ** 2, axis=1)
        return ((t2 > self.t2_limit_) | (q > self.q_limit_)).astype(np.int8)
