"""The multivariate score judged per operating mode: per-mode models and thresholds.

A batch line (fill, mix, transfer, heat, cool, discharge) is many processes
in one. A single model of "normal" over all of them has to cover the union of
every phase: its normal subspace is wide, so a fault that would be glaring in
the phase it happens in (a level that rises while every valve is shut) looks
like an ordinary row of some other phase. And the score's normal spread
differs by phase: a transfer, short and turbulent, scores high under the
pooled model on every batch, so a single threshold is set by it and is too
lax for the quiet phases.

:class:`ModeModels` keeps, beside the line's pooled detector:

* **a model per mode** that has enough training rows (``min_rows``), fitted
  on that mode's rows only -- its own centring and scaling (each feature's
  normal level and spread *in that mode*), its own subspace and its own
  control limits. Modes with fewer rows are judged by the pooled model: a
  handful of rows cannot say what normal looks like, while the pooled model
  has at least seen the line's every phase;
* optionally (``per_mode_thresholds``, off by default: it doubled MIDAS's
  false alarms on held-out normal runs) **a threshold per mode**:
  :func:`lineguard.detectors.calibration.train_pipeline`
  (:func:`~lineguard.detectors.calibration.mode_thresholds`) calibrates each
  mode with enough held-back rows on its own, from the same target
  false-alarm rate, and stores it here as a factor that maps the mode's
  scores onto the line's one threshold (``factor = T_line / T_mode``). Every
  consumer of the score -- the worker's threshold test, the debounce, the
  incident path, the model envelope -- keeps one threshold per line; a
  mode's scores are simply expressed in units of its own threshold.

Modes are those of the line's sensor checks (:meth:`SensorChecks.modes_of
<lineguard.detectors.sensor_checks.SensorChecks.modes_of>`: each combination
of the 0/1 state channels seen in normal data). A row in a mode never seen in
training gets the pooled model's score unscaled, and the checks give it its
own alert reason (``unseen_mode``): nothing in training says what normal
looks like there. A line without state channels has one mode and no
:class:`ModeModels` at all (the pooled model is then the mode's model).

A row whose trailing feature window reaches back across a mode switch is a
transition: its window statistics mix two modes' physics, which neither
mode's model has seen (a level's trailing mean still holds the fill while the
mixer runs). Transitions are judged by the pooled model, which has seen
every switch of the training batches, and are left out of the mode models'
fits (:func:`steady_modes`).

Scoring stays batched: one vectorized detector call per mode present in the
micro-batch (a handful on a batch line, usually one), never per frame.
"""

from __future__ import annotations

import math

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

from .base import Detector
from .robust import TRIM_STEPS, trimmed_rows

__all__ = ["DEFAULT_MODE_MIN_ROWS", "MODE_FEATURE_RATIO", "ModeModels", "steady_modes"]

#: Fewest training rows a mode needs for a model of its own. 300 rows
#: (5 minutes at 1 Hz) is a few complete phases of a batch line.
DEFAULT_MODE_MIN_ROWS = 300
#: ... and at least this many rows per detector feature: a covariance (PCA)
#: of d features from fewer than ~4 d rows is mostly noise in its small
#: eigenvalues, which is where the residual (SPE) statistic looks.
MODE_FEATURE_RATIO = 4


def steady_modes(modes: np.ndarray, n_context: int, window: int) -> np.ndarray:
    """Each row's mode where its whole trailing window is in it, else -1.

    Parameters
    ----------
    modes : ndarray of int, shape (n_context + n,)
        Modes of the history: the context rows (oldest first), then the rows
        to judge. -1 marks an unseen mode.
    n_context : int
        How many of ``modes`` are context (the scorer's carried rows:
        ``min(window - 1, rows seen)``, so the result does not depend on
        batching). At stream start or after a gap there are none, and a
        row's window starts at the stream's first row.
    window : int
        Trailing window, in rows.

    Returns
    -------
    ndarray of intp, shape (n,)
        The mode of each judged row, or -1 where its window spans a switch
        (or the mode is unseen).
    """
    g = np.asarray(modes, dtype=np.intp).ravel()
    if not 0 <= n_context <= g.size:
        raise ValueError(f"n_context must be in [0, {g.size}], got {n_context}.")
    pos = np.arange(g.size)
    change = np.zeros(g.size, dtype=bool)
    change[1:] = g[1:] != g[:-1]
    last = np.where(change, pos, 0)
    np.maximum.accumulate(last, out=last)
    # Row j's window covers [j - window + 1, j]: steady when the mode last
    # changed at or before its first row.
    steady = last <= np.maximum(pos - int(window) + 1, 0)
    return np.where(steady, g, -1)[n_context:]


class ModeModels(BaseEstimator):
    """Per-mode detectors with a pooled fallback, and per-mode score factors.

    Parameters
    ----------
    min_rows : int, default=300
        A mode needs this many training feature rows, and
        ``MODE_FEATURE_RATIO`` per feature, for a model of its own.
    per_mode_models : bool, default=True
        Fit a model per mode. False keeps the pooled model everywhere and
        only scales each mode's scores to its own threshold (the ablation
        "per-mode thresholds only").
    per_mode_thresholds : bool, default=False
        Let training calibrate a threshold per mode (:meth:`set_thresholds`).
        False keeps the line's one threshold for every mode. Off by default,
        chosen on normal rows (docs/evaluating-detectors.md, 2026-12-01
        "Operating modes"): on MIDAS, thresholds per mode from the 30 %
        held-back rows -- a few hundred rows of each phase, from the most
        recent batches only -- doubled the false-alarm rate on held-out
        normal runs (0.31 % -> 0.65 %; all normal rows 0.14 % -> 0.42 %).
    max_trim : float, default=0.0
        Each mode's model is fitted by concentration steps that leave out
        this share of the mode's highest-scoring rows
        (:mod:`lineguard.detectors.robust`); 0 fits once.
    allowed_modes : sequence of int, optional
        Codes (:attr:`codes_`) of the modes that may have a model of their
        own (default: every mode with enough rows). Training's refit on all
        rows passes the modes the calibrated model had, so each mode's threshold stays that of the
        same kind of model.

    Attributes
    ----------
    n_modes_ : int
        Modes of the line (those of its sensor checks).
    codes_ : ndarray of int64, shape (n_modes,)
        Each mode's code (its state channels, bit-packed: the checks'
        ``modes_``), which names a mode across refits.
    mode_rows_ : ndarray of int64, shape (n_modes,)
        Training feature rows per mode.
    models_ : list of Detector or None, length n_modes
        The mode's own fitted detector; None where the pooled one judges.
    factor_ : ndarray of float, shape (n_modes,)
        Multiplier of each mode's scores (1 until
        :meth:`set_thresholds` is called; 1 where the mode's threshold is the
        line's).
    """

    def __init__(
        self,
        min_rows: int = DEFAULT_MODE_MIN_ROWS,
        per_mode_models: bool = True,
        per_mode_thresholds: bool = False,
        max_trim: float = 0.0,
        allowed_modes: list[int] | None = None,
    ) -> None:
        self.min_rows = min_rows
        self.per_mode_models = per_mode_models
        self.per_mode_thresholds = per_mode_thresholds
        self.max_trim = max_trim
        self.allowed_modes = allowed_modes

    def fit(
        self,
        F: np.ndarray,
        modes: np.ndarray,
        codes: np.ndarray,
        template: Detector,
        columns: np.ndarray | None = None,
        trim_groups: np.ndarray | None = None,
    ) -> ModeModels:
        """Fit a clone of ``template`` on each mode with enough rows.

        Parameters
        ----------
        F : ndarray of shape (n, n_features)
            Detector features of normal rows.
        modes : ndarray of int, shape (n,)
            Mode index of each row; -1 for rows no mode model should learn
            from (transitions, :func:`steady_modes`).
        codes : ndarray of int, shape (n_modes,)
            Code of each mode (the sensor checks' ``modes_``).
        template : Detector
            Unfitted detector (the line's detector type).
        columns : ndarray of int, optional
            Feature columns the mode models judge (default: all). The line
            passes every feature but those of its state channels: within a
            mode those are constant, except on the rows just after a switch,
            where their trailing statistics only say how recently the mode
            began -- a model per mode would spend its limits on that.
        trim_groups : ndarray of int, shape (n,), optional
            Groups within which a mode's trimmed fit cuts its share (default:
            the mode is one group). The line passes the values of its event
            channels (0/1 channels set aside from the modes): an open reject
            gate is a category of normal rows, not the tail of the closed ones.
        """
        F = np.asarray(F, dtype=np.float64)
        modes = np.asarray(modes, dtype=np.intp).ravel()
        self.codes_ = np.asarray(codes, dtype=np.int64).ravel().copy()
        n_modes = self.codes_.size
        if modes.shape[0] != F.shape[0]:
            raise ValueError(f"modes must hold one mode per row ({F.shape[0]}), got {modes.size}.")
        if modes.size and (modes.min() < -1 or modes.max() >= n_modes):
            raise ValueError(
                f"Training modes must be in [-1, {n_modes}), got {modes.min()}..{modes.max()}."
            )
        self.n_modes_ = int(n_modes)
        self.n_features_in_ = F.shape[1]
        self.columns_ = (
            np.arange(F.shape[1]) if columns is None else np.asarray(columns, dtype=np.intp)
        )
        F = F[:, self.columns_]
        self.mode_rows_ = np.bincount(modes[modes >= 0], minlength=n_modes).astype(np.int64)
        need = max(int(self.min_rows), MODE_FEATURE_RATIO * F.shape[1])
        self.models_: list[Detector | None] = []
        allowed = self.allowed_modes
        allow = np.ones(n_modes, bool) if allowed is None else np.isin(self.codes_, allowed)
        for m in range(n_modes):
            if not self.per_mode_models or not allow[m] or self.mode_rows_[m] < need:
                self.models_.append(None)
                continue
            Fm = F[modes == m]
            model = clone(template).fit(Fm)
            if self.max_trim:
                groups = None if trim_groups is None else np.asarray(trim_groups)[modes == m]
                for _ in range(TRIM_STEPS):
                    keep = trimmed_rows(model.decision_function(Fm), self.max_trim, groups)
                    if keep.all() or keep.sum() < 2:
                        break
                    model = clone(template).fit(Fm[keep])
            self.models_.append(model)
        self.factor_ = np.ones(n_modes)
        return self

    @property
    def has_own_model(self) -> np.ndarray:
        """Bool per mode: the mode has a model of its own."""
        check_is_fitted(self, "models_")
        return np.array([m is not None for m in self.models_], dtype=bool)

    @property
    def own_model_codes(self) -> list[int]:
        """Codes of the modes with a model of their own."""
        return self.codes_[self.has_own_model].tolist()

    def thresholds_by_code(self, thresholds: np.ndarray) -> dict[int, float]:
        """``{mode code: threshold}`` for the finite entries of ``thresholds``."""
        t = np.asarray(thresholds, dtype=np.float64).ravel()
        if t.size != self.n_modes_:
            raise ValueError(f"Expected {self.n_modes_} mode thresholds, got {t.size}.")
        return {int(c): float(v) for c, v in zip(self.codes_, t, strict=True) if np.isfinite(v)}

    def set_thresholds(self, line_threshold: float, thresholds: dict[int, float]) -> None:
        """Express each mode's scores in units of its own threshold.

        Parameters
        ----------
        line_threshold : float
            The line's one threshold (what the worker compares with).
        thresholds : dict of int to float
            Calibrated threshold by mode code; a mode not in it keeps the
            line's (too few held-back rows to calibrate it).
        """
        check_is_fitted(self, "models_")
        t = np.array([thresholds.get(int(c), np.nan) for c in self.codes_], dtype=np.float64)
        if not (math.isfinite(line_threshold) and line_threshold > 0):
            raise ValueError(f"line_threshold must be finite and > 0, got {line_threshold!r}.")
        ok = np.isfinite(t) & (t > 0)
        self.factor_ = np.where(ok, line_threshold / np.where(ok, t, 1.0), 1.0)

    def decision_function(self, F: np.ndarray, modes: np.ndarray, pooled: Detector) -> np.ndarray:
        """Score per row: its mode's model (else ``pooled``), times the mode's factor.

        Rows in an unseen mode (``-1``) get the pooled score, unscaled.
        """
        self._require_fitted()
        modes = np.asarray(modes, dtype=np.intp).ravel()
        groups = self._groups(modes)
        if len(groups) == 1:
            m, _ = groups[0]
            if m < 0 or self.models_[m] is None:
                score = pooled.decision_function(F)
            else:
                score = self.models_[m].decision_function(F[:, self.columns_])
            return score if m < 0 or self.factor_[m] == 1.0 else score * self.factor_[m]
        Fc = F[:, self.columns_]
        score = np.empty(F.shape[0])
        pooled_rows = [rows for m, rows in groups if m < 0 or self.models_[m] is None]
        if pooled_rows:
            rows = np.concatenate(pooled_rows)
            score[rows] = pooled.decision_function(F[rows])
        for m, rows in groups:
            if m >= 0 and self.models_[m] is not None:
                score[rows] = self.models_[m].decision_function(Fc[rows])
        factor = np.where(modes >= 0, self.factor_[np.maximum(modes, 0)], 1.0)
        return score * factor

    def contributions(self, F: np.ndarray, modes: np.ndarray, pooled: Detector) -> np.ndarray:
        """Per-feature shares of each row's score, from the model that scored it.

        The factor scales a row's whole score, so it does not change shares;
        columns a mode model does not judge get no share from it.
        """
        self._require_fitted()
        modes = np.asarray(modes, dtype=np.intp).ravel()
        out = np.zeros(F.shape)
        for m, rows in self._groups(modes):
            if m < 0 or self.models_[m] is None:
                out[rows] = pooled.contributions(F[rows])
            else:
                out[np.ix_(rows, self.columns_)] = self.models_[m].contributions(
                    F[np.ix_(rows, self.columns_)]
                )
        return out

    def _require_fitted(self) -> None:
        # The hot path: a plain attribute test, not sklearn's check_is_fitted
        # (which builds the estimator's tags on every call).
        if not hasattr(self, "models_"):
            raise NotFittedError(
                "This ModeModels instance is not fitted yet; call fit before scoring."
            )

    @staticmethod
    def _groups(modes: np.ndarray) -> list[tuple[int, np.ndarray]]:
        """(mode, rows) for each mode present, in mode order."""
        if modes.size == 0 or (modes == modes[0]).all():
            return [(int(modes[0]) if modes.size else -1, np.arange(modes.size))]
        order = np.argsort(modes, kind="stable")
        values, first = np.unique(modes[order], return_index=True)
        bounds = [*first.tolist(), modes.size]
        return [(int(v), order[bounds[i] : bounds[i + 1]]) for i, v in enumerate(values.tolist())]
