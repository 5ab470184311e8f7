"""``auto``: several detectors combined on a common, normal-data scale.

Which detector suits a line is not known in advance. PCA's T²+SPE catches
broken correlations between many sensors; a robust Mahalanobis distance is
sharper when normal operation is compact and elliptical but over-reacts to a
regime its short history never showed. Rather than pick one from fault
labels (which a new line does not have), :class:`QuantileEnsemble` runs
several and averages their scores after putting each on the same footing,
using only the training rows:

1. The training rows are split in time order: members are fitted on the
   older part and score the most recent part (``validation_fraction``), rows
   they did not see -- how each member behaves on *new normal* data.
2. Each member's score is rescaled by those validation scores: its median
   maps to 0 and its ``tail_quantile`` to 1. A member whose scores are
   inflated on new normal rows (it overfits, or the line drifts) is
   shrunk; one that is tight on normal rows keeps its contrast. This is a
   quantile normalisation that, unlike ranks, does not saturate beyond the
   largest validation score, so the alert threshold can still sit in the
   far tail.
3. The members are refitted on all training rows (more data; the scale from
   step 2 is then slightly conservative, see
   :mod:`lineguard.detectors.calibration`), and the ensemble score is the
   mean of the rescaled member scores.

Attribution: each member's per-feature shares, weighted by that member's
positive part of the rescaled score, renormalised.
"""

from __future__ import annotations

import math

import numpy as np
from sklearn.base import clone

from .base import Detector, normalize_rows
from .covariance import RobustMahalanobis
from .pca import PCADetector

__all__ = ["QuantileEnsemble"]

_MIN_SPREAD = 1e-9


class QuantileEnsemble(Detector):
    """Mean of member detectors' scores, each rescaled on held-back normal rows.

    Parameters
    ----------
    members : tuple of Detector or None, default=None
        Unfitted member detectors; None means ``(PCADetector(),
        RobustMahalanobis(random_state=random_state))``.
    validation_fraction : float, default=0.3
        Most recent share of the training rows used to rescale the members.
    tail_quantile : float, default=0.99
        Validation quantile that maps to 1 on every member's scale.
    random_state : int or None, default=0
        Seed for the default stochastic member (MinCovDet restarts).

    Attributes
    ----------
    n_features_in_ : int
    members_ : list of Detector
        Members refitted on all training rows.
    centers_, spreads_ : ndarray of shape (n_members,)
        Validation median and ``tail_quantile - median`` of each member.
    """

    def __init__(
        self,
        members: tuple[Detector, ...] | None = None,
        validation_fraction: float = 0.3,
        tail_quantile: float = 0.99,
        random_state: int | None = 0,
    ) -> None:
        self.members = members
        self.validation_fraction = validation_fraction
        self.tail_quantile = tail_quantile
        self.random_state = random_state

    def _templates(self) -> list[Detector]:
        if self.members is None:
            return [PCADetector(), RobustMahalanobis(random_state=self.random_state)]
        if not self.members:
            raise ValueError("QuantileEnsemble needs at least one member detector, got none.")
        return list(self.members)

    def fit(self, X: np.ndarray, y: object = None) -> QuantileEnsemble:
        """Fit members on older rows, rescale on recent rows, refit on all."""
        if not 0.0 < self.validation_fraction < 1.0:
            raise ValueError(
                f"validation_fraction must be in (0, 1), got {self.validation_fraction!r}."
            )
        if not 0.5 < self.tail_quantile < 1.0:
            raise ValueError(f"tail_quantile must be in (0.5, 1), got {self.tail_quantile!r}.")
        templates = self._templates()
        X = self._validate_fit_input(X, min_samples=8)
        n_val = math.ceil(X.shape[0] * self.validation_fraction)
        n_fit = X.shape[0] - n_val
        inflation = []
        for template in templates:
            member = clone(template).fit(X[:n_fit])
            seen = _tail(member.decision_function(X[:n_fit]), self.tail_quantile)
            unseen = _tail(member.decision_function(X[n_fit:]), self.tail_quantile)
            inflation.append(max(unseen[1] / seen[1], 1.0))
        self.n_features_in_ = X.shape[1]
        self.members_ = [clone(t).fit(X) for t in templates]
        scales = [_tail(m.decision_function(X), self.tail_quantile) for m in self.members_]
        self.centers_ = np.array([c for c, _ in scales])
        self.spreads_ = np.array([w for _, w in scales])
        self.inflation_ = np.asarray(inflation)
        weights = 1.0 / self.inflation_
        self.weights_ = weights / weights.sum()
        return self

    def _scaled(self, X: np.ndarray) -> np.ndarray:
        """Rescaled member scores, shape (n_samples, n_members)."""
        raw = np.column_stack([m.decision_function(X) for m in self.members_])
        return (raw - self.centers_) / self.spreads_

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """Mean of the members' rescaled scores (higher = more anomalous)."""
        X = self._validate_score_input(X)
        scaled = self._scaled(X)
        # Fixed-order sum over members: identical for any batch size.
        total = np.zeros(X.shape[0])
        for j in range(scaled.shape[1]):
            total += self.weights_[j] * scaled[:, j]
        return total

    def contributions(self, X: np.ndarray) -> np.ndarray:
        """Members' feature shares weighted by their positive rescaled scores."""
        X = self._validate_score_input(X)
        weights = np.maximum(self._scaled(X), 0.0) * self.weights_
        out = np.zeros(X.shape)
        for j, member in enumerate(self.members_):
            out += weights[:, j, None] * member.contributions(X)
        return normalize_rows(out)


def _tail(scores: np.ndarray, q: float) -> tuple[float, float]:
    """``(median, quantile q - median)`` of scores, the spread floored above 0."""
    center = float(np.median(scores))
    spread = float(np.quantile(scores, q)) - center
    return center, max(spread, _MIN_SPREAD, abs(center) * 1e-6)
