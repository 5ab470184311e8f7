"""Common contract of every LineGuard anomaly detector.

A detector learns what *normal* telemetry of one production line looks like and
then scores new rows: the higher the score, the less the row resembles normal
operation (PyOD's sign and method name, ``decision_function``). Besides the
score, plant QA needs to know *which* signals drove an alert, so every detector
also decomposes its score into non-negative per-column shares
(:meth:`Detector.contributions`).

Input scale
-----------
Detectors accept any finite float matrix. Scale-sensitive detectors (PCA,
Mahalanobis) standardize internally with statistics learned in ``fit``, and the
others (ECOD, isolation forest) are invariant to per-column monotone rescaling,
so a detector never depends on the caller having standardized its input. In
LineGuard the caller (:class:`lineguard.detectors.scoring.LinePipeline`)
imputes missing values and robust-standardizes raw sensors before building
temporal features; the detector's own scaling then puts those features (value,
rolling mean, rolling std) on a common footing. Missing values are the
caller's job: detectors reject NaN/inf with an explicit error.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError

from ._numeric import ordered_sum

__all__ = ["NO_SPREAD", "Detector", "feature_scale", "normalize_rows", "require_fitted"]

#: Spread (standard deviation) below which a feature did not vary in the fit
#: rows. Features reach the detectors standardized by the line's spread of
#: each sensor (order 1), so this is rounding, never process variation.
NO_SPREAD = 1e-9


def feature_scale(X: np.ndarray) -> np.ndarray:
    """Each feature's standardization scale: its spread, infinite where it has none.

    A feature with no spread in the fit rows (below :data:`NO_SPREAD`) says
    nothing about how far it may normally move. Floored at a tiny scale it
    would turn any later change -- a rare but normal event that a trimmed fit
    left out, a sensor constant in one mode that moves in the next -- into a
    score of 1e15 and more: every such row pages the line, or one of them
    among the held-back rows sets the threshold there and the detector is
    blind. An infinite scale standardizes the feature to 0, so the model is
    fitted and scores as if it were absent; departures from a value that
    never changed are the sensor checks' to judge (``step``).

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        The fit rows.

    Returns
    -------
    ndarray of shape (n_features,)
        Standard deviation per feature, ``inf`` where it is below :data:`NO_SPREAD`.
    """
    std = X.std(axis=0)
    return np.where(std > NO_SPREAD, std, np.inf)


def normalize_rows(raw: np.ndarray) -> np.ndarray:
    """Turn non-negative per-column amounts into per-row shares.

    Parameters
    ----------
    raw : ndarray of shape (n_samples, n_columns)
        Non-negative amounts, e.g. each column's part of the row's score.

    Returns
    -------
    ndarray of shape (n_samples, n_columns)
        Rows divided by their sum; rows whose sum is zero (nothing unusual at
        all) stay all-zero instead of becoming NaN.
    """
    raw = np.maximum(raw, 0.0)
    total = ordered_sum(raw)[:, None]
    # A row exactly at the centre of normal has nothing to attribute.
    return np.divide(raw, total, out=np.zeros_like(raw), where=total > 0)


class Detector(BaseEstimator):
    """Base class: scikit-learn estimator conventions plus an attribution method.

    Conventions every subclass follows:

    * ``__init__`` only stores its parameters (so :func:`sklearn.base.clone`
      and ``get_params`` work).
    * ``fit(X, y=None)`` learns state in attributes ending with ``_`` and
      returns ``self``; ``y`` is ignored (training data is assumed normal).
    * ``decision_function`` and ``contributions`` are pure: they never mutate
      the detector and the fitted state never holds the raw training rows
      (only bounded summaries such as quantiles).
    * Higher score means more anomalous.

    ``judges_modes_itself`` (a class attribute) is True for a local detector,
    one that scores a row by the normal rows nearest to it: it already holds
    each operating mode in its own region, so the line fits it once over all
    modes instead of once per mode (:class:`lineguard.detectors.modes.ModeModels`),
    where a small mode would get a coarser model.
    """

    judges_modes_itself: bool = False

    def fit(self, X: np.ndarray, y: object = None) -> Detector:
        """Learn normal behaviour from ``X`` (n_samples, n_features)."""
        raise NotImplementedError

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """Anomaly score per row, shape (n_samples,); higher = more anomalous."""
        raise NotImplementedError

    def contributions(self, X: np.ndarray) -> np.ndarray:
        """Each column's non-negative share of the row's anomaly.

        Returns an array of shape (n_samples, n_features) whose rows sum to 1
        wherever the row deviates from normal at all (all-zero otherwise).
        """
        raise NotImplementedError

    # -- the scorer's hot path ------------------------------------------------

    def _decision_and_context(self, X: np.ndarray) -> tuple[np.ndarray, Any]:
        """:meth:`decision_function` and whatever of its work
        :meth:`_contributions_at` can reuse on some of the same rows (None:
        nothing). A row's intermediate results never depend on the other
        rows, so reusing them gives the same numbers as recomputing."""
        return self.decision_function(X), None

    def _contributions_at(self, X: np.ndarray, rows: np.ndarray, context: Any) -> np.ndarray:
        """:meth:`contributions` of ``X[rows]``, given the context that
        :meth:`_decision_and_context` returned for ``X``."""
        return self.contributions(X[rows])

    # -- validation helpers -------------------------------------------------

    def _validate_fit_input(self, X: np.ndarray, min_samples: int = 2) -> np.ndarray:
        """Check training data and return it as a float64 2-D array."""
        X = _as_finite_2d(X, type(self).__name__, "fit")
        if X.shape[0] < min_samples:
            raise ValueError(
                f"{type(self).__name__}.fit needs at least {min_samples} rows of normal data, "
                f"got {X.shape[0]}."
            )
        return X

    def _validate_score_input(self, X: np.ndarray) -> np.ndarray:
        """Check scoring data against the fitted feature count."""
        require_fitted(self, "n_features_in_")
        X = _as_finite_2d(X, type(self).__name__, "scoring")
        if X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"{type(self).__name__} was fitted on {self.n_features_in_} features, "
                f"but X has {X.shape[1]} columns."
            )
        return X


def require_fitted(estimator: object, attribute: str) -> None:
    """Raise scikit-learn's :class:`~sklearn.exceptions.NotFittedError` unless
    ``estimator`` has ``attribute``.

    scikit-learn's ``check_is_fitted`` says the same, but looks up the
    estimator's tags first: a few microseconds that the scorer would pay
    twice per micro-batch, on every line.
    """
    if not hasattr(estimator, attribute):
        raise NotFittedError(
            f"This {type(estimator).__name__} instance is not fitted yet. Call 'fit' with "
            "appropriate arguments before using this estimator."
        )


def _as_finite_2d(X: np.ndarray, owner: str, stage: str) -> np.ndarray:
    # asarray avoids a copy when the caller already passes float64; scoring
    # code never writes into X, so the caller's array is never modified.
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(
            f"{owner} {stage} expects a 2-D array (n_samples, n_features), "
            f"got an array with shape {X.shape}."
        )
    if X.shape[1] == 0:
        raise ValueError(f"{owner} {stage} expects at least one feature column, got 0.")
    if not np.isfinite(X).all():
        bad = int((~np.isfinite(X)).sum())
        raise ValueError(
            f"{owner} {stage} expects finite values (impute missing telemetry first), "
            f"got {bad} NaN/inf entries."
        )
    return X
