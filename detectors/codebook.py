"""Distance to the nearest normal state: a k-means codebook of the fit rows.

A discrete machine runs in cycles: an axis moves out, a gripper closes, the
axis moves back. Its readings trace one closed path through feature space,
and each reading is right only for its place on that path -- a motor current
that is normal at full speed is a fault at standstill. The path is not a
linear subspace (PCA), not one ellipsoid (Mahalanobis), not a product of
marginals (ECOD), and axis-aligned splits (isolation forest) cover its
neighbourhood only coarsely. So a current 20 % too high during motion, which
stays inside the current's normal range, scored inside every one of them
(``bench/cycle_line.py``).

What does hold is the nearest-neighbour view: a normal row lies close to some
normal row seen before; a faulty one is far from all of them. Keeping the fit
rows would keep raw process data in every saved model and make scoring cost
grow with the history, so the rows are summarised by a k-means codebook of at
most ``n_centres`` centres (vector quantisation), on average the mean of
``min_rows_per_centre`` rows or more, and never of one row alone. The score
is a row's distance to the nearest centre, in the fit rows' standardised
units; the attribution is each column's share of the squared distance to
that centre -- the sensors in which the row differs from the normal state
it most resembles.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.cluster import KMeans

from ._numeric import ordered_matmul, ordered_sum
from .base import Detector, feature_scale, normalize_rows

__all__ = ["CodebookDetector"]


class CodebookDetector(Detector):
    """Distance to the nearest of a k-means codebook of normal rows.

    Parameters
    ----------
    n_centres : int, default=512
        Most centres in the codebook. A cycle's path needs enough centres to
        follow it closely: on ``bench/cycle_line.py``'s station, 512 centres
        of 4 rows each caught 56-65 % of the fault's rows where 256 of 8
        caught 43-57 % (two seeds, one run); scoring cost grows with the count.
    min_rows_per_centre : int, default=4
        Fit rows per centre, at least, on average: a short history gets
        fewer centres, each an average the next normal row can be expected
        near. A cluster of one row is dropped (its centre would be that row,
        carried in the model).
    max_iter : int, default=100
        Lloyd iterations of the k-means fit.
    random_state : int or None, default=0
        Seed of the k-means initialisation; fixed so a retrain is reproducible.

    Attributes
    ----------
    n_features_in_ : int
    mean_, scale_ : ndarray of shape (n_features,)
        Standardisation of the fit rows (``scale_`` infinite for a column
        without spread: it neither scores nor takes a share).
    centres_ : ndarray of shape (n_centres, n_features)
        The codebook, in standardised units (zero in no-spread columns).
    centre_norms_ : ndarray of shape (n_centres,)
        Squared norms of the centres.
    """

    #: Each mode is a region of the codebook: one codebook over all modes
    #: (a model per mode only has fewer centres; ``bench/cycle_line.py``: with
    #: one per mode, 14-20 % of the fault caught on 4 runs instead of 56-67 %).
    judges_modes_itself = True

    def __init__(
        self,
        n_centres: int = 512,
        min_rows_per_centre: int = 4,
        max_iter: int = 100,
        random_state: int | None = 0,
    ) -> None:
        self.n_centres = n_centres
        self.min_rows_per_centre = min_rows_per_centre
        self.max_iter = max_iter
        self.random_state = random_state

    def fit(self, X: np.ndarray, y: object = None) -> CodebookDetector:
        """Summarise the normal rows by their k-means codebook."""
        X = self._validate_fit_input(X)
        if self.n_centres < 1 or self.min_rows_per_centre < 1:
            raise ValueError(
                "CodebookDetector expects n_centres >= 1 and min_rows_per_centre >= 1; "
                f"got {self.n_centres} and {self.min_rows_per_centre}"
            )
        self.n_features_in_ = X.shape[1]
        self.mean_ = X.mean(axis=0)
        self.scale_ = feature_scale(X)
        Z = self._standardize(X)
        distinct = np.unique(Z, axis=0).shape[0]
        k = max(1, min(self.n_centres, X.shape[0] // self.min_rows_per_centre, distinct))
        km = KMeans(
            n_clusters=k, n_init=1, max_iter=self.max_iter, random_state=self.random_state
        ).fit(Z)
        # A centre of one row would be that row, kept in the model: a row no
        # other normal row is near is left to score as far (as a trimmed fit
        # would leave it out). With k <= n / min_rows_per_centre (or one
        # cluster of all rows) some cluster always holds two rows or more.
        shared = np.bincount(km.labels_, minlength=k) >= 2
        self.centres_ = np.ascontiguousarray(km.cluster_centers_[shared])
        self.centre_norms_ = ordered_sum(self.centres_ * self.centres_)
        return self

    def _standardize(self, X: np.ndarray) -> np.ndarray:
        return (X - self.mean_) / self.scale_

    def _nearest(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Standardised rows, each one's nearest centre and squared distance to it.

        ``|z|^2 - 2 z.c + |c|^2`` with row-independent products
        (:mod:`._numeric`), so a row's score is the same in any batch.
        """
        Z = self._standardize(self._validate_score_input(X))
        cross = ordered_matmul(Z, self.centres_.T)
        d2 = self.centre_norms_[None, :] - 2.0 * cross
        nearest = np.argmin(d2, axis=1)
        rows = np.arange(Z.shape[0])
        dist2 = np.maximum(d2[rows, nearest] + ordered_sum(Z * Z), 0.0)
        return Z, nearest, dist2

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """Distance to the nearest centre (higher = farther from every normal state)."""
        return np.sqrt(self._nearest(X)[2])

    def _shares(self, Z: np.ndarray, nearest: np.ndarray) -> np.ndarray:
        return normalize_rows((Z - self.centres_[nearest]) ** 2)

    def contributions(self, X: np.ndarray) -> np.ndarray:
        """Each column's share of the squared distance to the nearest centre."""
        Z, nearest, _ = self._nearest(X)
        return self._shares(Z, nearest)

    def _decision_and_context(self, X: np.ndarray) -> tuple[np.ndarray, Any]:
        Z, nearest, dist2 = self._nearest(X)
        return np.sqrt(dist2), (Z, nearest)

    def _contributions_at(self, X: np.ndarray, rows: np.ndarray, context: Any) -> np.ndarray:
        Z, nearest = context
        return self._shares(Z[rows], nearest[rows])
