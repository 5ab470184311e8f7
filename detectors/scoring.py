"""The scoring hot path shared by the live stream worker and offline evaluation.

One fitted :class:`LinePipeline` per production line turns raw sensor rows
into anomaly scores: impute missing readings, robust-standardize each sensor,
add trailing-window features, score with the line's detector.

:func:`score_batch` is the only function the worker calls per micro-batch.
It is pure: everything that must survive between batches (the feature
window's context rows and the recent threshold exceedances used for
debouncing) travels in a small :class:`ScoringState` that the caller stores
(in memory, or as JSON alongside the consumer offset). Because features and
debounce both carry their history in that state, results do not depend on how
the stream happens to be cut into batches -- offline evaluation that scores a
whole file at once reproduces exactly what the live worker would have raised.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, clone

from ._numeric import blas_rows_are_independent
from .base import Detector, require_fitted
from .features import TemporalFeatures
from .modes import ModeModels, steady_modes
from .robust import TRIM_STEPS, trimmed_rows
from .sensor_checks import CheckState, SensorChecks

__all__ = [
    "DEFAULT_DEBOUNCE",
    "TOP_K_SENSORS",
    "BatchResult",
    "LinePipeline",
    "ScoringState",
    "SensorGaps",
    "debounce",
    "explained_rows",
    "gap_bound_us",
    "score_batch",
    "segment_starts",
    "sensor_gaps",
    "warm_up",
]

#: How many contributing sensors an alert names.
TOP_K_SENSORS = 3

#: Default debounce (k, n): alert when k of the last n rows exceed the threshold.
#: 2 of 5 never alerts on an isolated spike (the commonest raw exceedance) and
#: adds one row of latency. A fault that crosses the threshold only on some
#: frames -- a weak fault hovering at the threshold -- still alerts while it
#: lasts, where 3 of 5 drops in and out. On SKAB's protocol the change cut the
#: miss rate in every one of the 20 runs (20.9 % -> 19.5 % in total) for 1.4
#: points of false-alarm rate and one more false-alarm event (31 vs 30):
#: false alarms there come from sustained excursions, which any k passes.
DEFAULT_DEBOUNCE: tuple[int, int] = (2, 5)

_MIN_SCALE = 1e-9

#: A gap longer than this many trailing windows of the training sampling
#: interval resets a line's streaming state (see :func:`gap_bound_us`).
GAP_WINDOWS = 1.0
# Rows per scoring step inside score_batch (see there).
_CHUNK_ROWS = 512


def gap_bound_us(time_us: np.ndarray, window: int) -> int | None:
    """Longest pause between two frames that still continues a line's stream.

    A trailing window of ``window`` rows spans ``window`` sampling intervals
    of continuous telemetry. After a pause at least that long, every row the
    window would still hold predates the pause: it describes the line before
    a shift change or batch changeover, not now, and mixing it with the new
    rows makes a step out of nothing (issue 18: scores of 75-185 against a
    threshold of 5 on the first frames after a 40-minute pause). So the bound
    is ``GAP_WINDOWS * window`` times the training data's median sampling
    interval -- a property of the line's data, stored in the model, applied
    identically by offline evaluation and the live worker.

    Parameters
    ----------
    time_us : ndarray of int64, shape (n,)
        Training frame times, increasing.
    window : int
        Trailing window in rows.

    Returns
    -------
    int or None
        Bound in microseconds; None when fewer than 2 frames give no interval.
    """
    t = np.asarray(time_us, dtype=np.int64).ravel()
    steps = np.diff(t)
    steps = steps[steps > 0]
    if steps.size == 0:
        return None
    return math.ceil(GAP_WINDOWS * max(int(window), 1) * float(np.median(steps)))


def segment_starts(time_us: np.ndarray | None, bound_us: int | None, n_rows: int) -> np.ndarray:
    """Row indices where a gap-free segment starts (always includes 0).

    A row starts a new segment when the time since the previous row exceeds
    ``bound_us`` or goes backwards (a clock reset or an unsorted merge: the
    window cannot be trusted across it either).
    """
    if time_us is None or bound_us is None or n_rows == 0:
        return np.zeros(1 if n_rows else 0, dtype=np.intp)
    t = np.asarray(time_us, dtype=np.int64).ravel()
    if t.size != n_rows:
        raise ValueError(f"time_us must hold one time per row ({n_rows}), got {t.size}.")
    d = np.diff(t)
    cuts = np.flatnonzero((d > bound_us) | (d < 0)) + 1
    return np.concatenate([[0], cuts]).astype(np.intp)


class LinePipeline(BaseEstimator):
    """Preprocessing + temporal features + detector for one production line.

    Parameters
    ----------
    sensors : list of str
        Sensor names, in the column order of every ``X`` given to this
        pipeline (the worker builds rows in this order).
    detector : Detector
        Unfitted detector template; ``fit`` trains a clone (``detector_``).
    window : int, default=10
        Trailing window, in rows, of :class:`TemporalFeatures`.
    detrend_slow : float or None, default=None
        Passed to :class:`TemporalFeatures`: sensors whose training readings
        10 samples apart correlate above this are judged by their dynamics,
        not their level (thermal drift). None: every sensor by its level.
    sensor_checks : SensorChecks or None, default=None
        Unfitted per-sensor, per-mode checks (freeze, step, relation, unseen
        mode) run beside the detector; ``fit`` trains a clone (``checks_``).
        None: the detector alone.
    keep_bounded_levels : bool, default=False
        Passed to :class:`TemporalFeatures`: slow sensors whose level the
        normal rows bound (recurring across segments, or stable over a long
        enough history) keep their level instead of being detrended.
    max_trim : float, default=0.0
        Trimmed fit (:mod:`lineguard.detectors.robust`): the detector is
        refitted, a few times, without the share of each operating mode's
        training rows it scores highest. 0 fits once, on every row.
    mode_models : ModeModels or None, default=None
        Unfitted per-mode models (:mod:`lineguard.detectors.modes`): each
        operating mode of the sensor checks with enough training rows gets a
        detector of its own, the others keep the pooled one. Needs
        ``sensor_checks`` (the modes are theirs) and more than one mode;
        otherwise ignored (``mode_models_`` is None).

    Attributes
    ----------
    n_features_in_ : int
        ``len(sensors)``.
    center_ : ndarray of shape (n_sensors,)
        Training median per sensor; also the value imputed for missing readings.
    scale_ : ndarray of shape (n_sensors,)
        Robust spread per sensor: IQR / 1.349 (equals the std for Gaussian
        data but ignores spikes), falling back to the std and then to 1 for
        sensors that are almost constant in training; ``inf`` for a sensor
        with one value in every training row, which the features then leave
        out (its departures are the step check's, see
        :class:`~lineguard.detectors.sensor_checks.SensorChecks`).
    features_ : TemporalFeatures
    detector_ : Detector
        Fitted clone of ``detector``.
    feature_names_out_ : ndarray of str
        Names of the detector's input features.
    max_gap_us_ : int or None
        Gap bound learned from the training times (:func:`gap_bound_us`);
        None when fitted without times (no resets).
    checks_ : SensorChecks or None
        Fitted clone of ``sensor_checks``.
    trimmed_rows_ : int
        Training feature rows the trimmed fit left out (0 without ``max_trim``).
    mode_models_ : ModeModels or None
        Fitted clone of ``mode_models``; None without it or with one mode
        (and on models saved before modes existed: they score as before).

    Notes
    -----
    Missing readings (NaN) are forward-filled (see :meth:`transform`).
    Training rows must be consecutive in time; the first ``window - 1``
    feature rows (incomplete windows) are not used to train the detector.
    """

    def __init__(
        self,
        sensors: list[str],
        detector: Detector,
        window: int = 10,
        detrend_slow: float | None = None,
        sensor_checks: SensorChecks | None = None,
        keep_bounded_levels: bool = False,
        max_trim: float = 0.0,
        mode_models: ModeModels | None = None,
    ) -> None:
        self.sensors = sensors
        self.detector = detector
        self.window = window
        self.detrend_slow = detrend_slow
        self.sensor_checks = sensor_checks
        self.keep_bounded_levels = keep_bounded_levels
        self.max_trim = max_trim
        self.mode_models = mode_models

    def fit(
        self, X: np.ndarray, y: object = None, time_us: np.ndarray | None = None
    ) -> LinePipeline:
        """Learn scaling and the detector from normal rows in time order.

        Parameters
        ----------
        X : ndarray of shape (n_rows, n_sensors)
            Raw normal rows, oldest first (NaN = missing).
        y : ignored
        time_us : ndarray of int64, shape (n_rows,), optional
            Frame times. With them the pipeline learns its gap bound
            (``max_gap_us_``, see :func:`gap_bound_us`) and treats the rows
            as segments split at such gaps -- several recorded runs, or a
            history with pauses -- so no training window spans a gap either.
        """
        if not isinstance(self.window, (int, np.integer)) or self.window < 1:
            raise ValueError(f"window must be an int >= 1, got {self.window!r}.")
        X = self._check_raw(X, fitted=False)
        n_warm = self.window - 1
        if X.shape[0] < n_warm + 2:
            raise ValueError(
                f"LinePipeline.fit needs more than window - 1 + 1 = {n_warm + 1} rows for "
                f"window={self.window}, got {X.shape[0]}."
            )
        all_missing = np.isnan(X).all(axis=0)
        if all_missing.any():
            names = [s for s, bad in zip(self.sensors, all_missing, strict=True) if bad]
            raise ValueError(f"Sensors with no reading at all in the training data: {names}.")
        self.n_features_in_ = X.shape[1]
        self.center_ = np.nanmedian(X, axis=0)
        q75, q25 = np.nanpercentile(X, [75, 25], axis=0)
        iqr_sigma = (q75 - q25) / 1.349
        std = np.nanstd(X, axis=0)
        scale = np.where(iqr_sigma > _MIN_SCALE, iqr_sigma, std)
        self.scale_ = np.where(scale > _MIN_SCALE, scale, 1.0)
        # A sensor with one value in every training row says nothing about
        # normal variation: any change would be "infinitely many" training
        # spreads away and page the line on every later row. An infinite
        # scale keeps it out of the features at no cost (every reading
        # standardizes to 0); the sensor checks judge its departures (step).
        flat = np.nanmax(X, axis=0) == np.nanmin(X, axis=0)
        self.scale_[flat] = np.inf
        self.max_gap_us_ = None if time_us is None else gap_bound_us(time_us, self.window)
        starts = segment_starts(time_us, self.max_gap_us_, X.shape[0])
        X_imp = self._impute(X, None)
        Z = self._standardize(X_imp)
        checks = getattr(self, "sensor_checks", None)
        self.checks_ = None if checks is None else clone(checks).fit(X_imp, starts=starts)
        self.features_ = TemporalFeatures(
            window=self.window,
            detrend_slow=getattr(self, "detrend_slow", None),
            keep_bounded_levels=getattr(self, "keep_bounded_levels", False),
        ).fit(Z, starts=starts)
        # Each gap-free segment starts a fresh window, as live scoring does
        # after a gap; its first window - 1 rows are not full windows.
        parts, rows = [], []
        for lo, hi in itertools.pairwise([*starts.tolist(), X.shape[0]]):
            F, _ = self.features_.transform(Z[lo:hi])
            parts.append(F[n_warm:])
            rows.append(np.arange(lo + n_warm, hi))
        F = np.concatenate(parts, axis=0)
        F_rows = np.concatenate(rows)
        if F.shape[0] < 2:
            raise ValueError(
                f"LinePipeline.fit found fewer than 2 full-window rows in {len(starts)} "
                f"gap-free segments of {X.shape[0]} rows (window={self.window})."
            )
        self.detector_ = clone(self.detector).fit(F)
        steady = None
        if self.checks_ is not None and self.checks_.modes_.size > 1:
            # Each row's mode where its whole window is in it; -1 where the
            # window reaches across a switch (a transition).
            steady = np.concatenate(
                [
                    steady_modes(self.checks_.modes_of(X_imp[lo:hi]), 0, self.window)
                    for lo, hi in itertools.pairwise([*starts.tolist(), X.shape[0]])
                ]
            )[F_rows]
        # Event channels (0/1 channels set aside from the modes) split the
        # trimmed fits' groups: a reject gate open on 2 % of the rows is a
        # category of normal rows, not the tail of the closed ones, and cut
        # with that tail its next opening would score as a fault.
        aside = getattr(self.checks_, "channels_set_aside_", None)
        events = None
        if aside is not None and aside.any():
            events = _group_codes(X_imp[F_rows][:, aside])
        self.trimmed_rows_ = 0
        max_trim = getattr(self, "max_trim", 0.0)
        if max_trim:
            # Concentration steps (lineguard.detectors.robust), per mode.
            # Transitions are never trimmed: a line's switches are rare but
            # normal, the pooled model is the only one that judges them, and
            # cut from its fit the first switch after training would score as
            # a fault (thousands of limits on a conveyor that starts and stops).
            switching = None if steady is None else steady < 0
            modes = steady
            if events is not None:
                modes = _group_codes(
                    np.c_[np.zeros_like(events) if steady is None else steady, events]
                )
            for _ in range(TRIM_STEPS):
                keep = trimmed_rows(self.detector_.decision_function(F), max_trim, modes)
                if switching is not None:
                    keep |= switching
                self.trimmed_rows_ = int((~keep).sum())
                if not self.trimmed_rows_ or keep.sum() < 2:
                    break
                self.detector_ = clone(self.detector).fit(F[keep])
        self.mode_models_ = None
        mode_models = getattr(self, "mode_models", None)
        if mode_models is not None and getattr(self.detector, "judges_modes_itself", False):
            mode_models = None
        if mode_models is not None and steady is not None:
            # Mode models judge every feature but the state and phase channels' own.
            state = np.tile(self.checks_.mode_channels, F.shape[1] // X.shape[1])
            # Transitions (windows across a switch) are the pooled model's.
            self.mode_models_ = clone(mode_models).fit(
                F,
                steady,
                self.checks_.modes_,
                self.detector,
                columns=np.flatnonzero(~state),
                trim_groups=events,
            )
        self.feature_names_out_ = self.features_.get_feature_names_out(list(self.sensors))
        return self

    def _check_raw(self, X: np.ndarray, fitted: bool = True) -> np.ndarray:
        return self._raw_rows(X, fitted)[0]

    def _raw_rows(self, X: np.ndarray, fitted: bool = True) -> tuple[np.ndarray, bool]:
        """Validated float64 rows and whether every reading is present.

        One pass over the rows answers both questions in the usual batch
        (every reading finite: no inf, nothing to impute); only a batch with
        a gap pays for telling NaN (missing, imputed) from inf (rejected).
        """
        if fitted:
            require_fitted(self, "detector_")
        X = np.asarray(X, dtype=np.float64)
        d = len(self.sensors)
        if X.ndim != 2 or X.shape[1] != d:
            raise ValueError(
                f"Expected rows of {d} sensors {list(self.sensors)} as a 2-D array, "
                f"got shape {X.shape}."
            )
        if np.isfinite(X).all():
            return X, True
        if np.isinf(X).any():
            raise ValueError("Telemetry must not contain inf; use NaN for missing readings.")
        return X, False

    def _impute(self, X: np.ndarray, last: np.ndarray | None, complete: bool = False) -> np.ndarray:
        """Carry the last observed reading forward; the training median before any."""
        if complete or not np.isnan(X).any():
            return X  # the usual batch: nothing to fill
        start = self.center_ if last is None else np.where(np.isnan(last), self.center_, last)
        H = np.concatenate([start[None, :], X], axis=0)
        # Vectorized forward fill: index of the latest non-missing row per column.
        idx = np.where(np.isnan(H), 0, np.arange(H.shape[0])[:, None])
        np.maximum.accumulate(idx, axis=0, out=idx)
        return H[idx, np.arange(H.shape[1])][1:]

    def _standardize(self, X: np.ndarray) -> np.ndarray:
        # In place on the difference: the same two operations, one array.
        Z = X - self.center_
        Z /= self.scale_
        return Z

    def transform(
        self, X: np.ndarray, context: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Raw rows -> detector features and the next context (:meth:`transform_rows`)."""
        F, new_context, _ = self.transform_rows(X, context)
        return F, new_context

    def transform_rows(
        self, X: np.ndarray, context: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Raw rows -> detector features, carrying the imputed-row context.

        Parameters
        ----------
        X : ndarray of shape (n_samples, n_sensors)
            Raw telemetry, NaN for missing readings.
        context : ndarray of shape (n_context, n_sensors) or None
            As returned by the previous call: the last ``max(window - 1, 1)``
            rows before ``X``, already imputed, in raw sensor units (so a
            state survives a model retrain). None at stream start.

        Returns
        -------
        features : ndarray of shape (n_samples, n_features_out)
        new_context : ndarray of shape (n_context', n_sensors)
            Context to pass with the next batch.
        imputed : ndarray of shape (n_samples, n_sensors)
            ``X`` with missing readings filled (raw units), for the checks.

        Notes
        -----
        A missing reading is replaced by the sensor's last observed value
        (last observation carried forward, also across batches through the
        context), or by the training median before the first reading. Process
        variables change slowly relative to the sampling rate, so this keeps a
        dropped reading from creating a jump -- and an alert -- by itself; a
        sensor that stays missing is a data-quality issue for the ingest layer.
        """
        X, complete = self._raw_rows(X)
        d = X.shape[1]
        ctx = np.empty((0, d)) if context is None else self._check_raw(context, fitted=False)
        X_imp = self._impute(X, ctx[-1] if ctx.shape[0] else None, complete)
        if ctx.shape[0] and np.isnan(ctx).any():
            ctx = self._impute(ctx, None)
        n_ctx = self.window - 1
        # The standardized rows are finite by construction (finite readings,
        # finite centre, positive scale): the features skip their own check,
        # and the detector's input check still rejects anything non-finite.
        F, _ = self.features_._transform_finite(
            self._standardize(X_imp),
            self._standardize(ctx[ctx.shape[0] - min(n_ctx, ctx.shape[0]) :]),
        )
        # Keep >= 1 row even for window=1 so forward fill can cross batches.
        keep = max(n_ctx, 1)
        if X_imp.shape[0] >= keep:
            new_context = X_imp[X_imp.shape[0] - keep :].copy()
        else:
            history = np.concatenate([ctx, X_imp], axis=0)
            new_context = history[history.shape[0] - min(keep, history.shape[0]) :].copy()
        return F, new_context, X_imp

    def decision_function(self, X: np.ndarray, context: np.ndarray | None = None) -> np.ndarray:
        """Anomaly score per raw row (higher = more anomalous)."""
        F, _, X_imp = self.transform_rows(X, context)
        return self.score_features(F, X_imp, context)[0]

    def score_features(
        self, features: np.ndarray, imputed: np.ndarray, context: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Detector score of feature rows, judged in each row's operating mode.

        Parameters
        ----------
        features : ndarray of shape (n, n_features_out)
        imputed : ndarray of shape (n, n_sensors)
            The same rows, imputed, raw units (:meth:`transform_rows`): they
            say which mode each row is in.
        context : ndarray of shape (n_context, n_sensors) or None
            The context given to :meth:`transform_rows` (the rows before):
            a row whose trailing window reaches back into another mode is a
            transition, judged by the pooled model.

        Returns
        -------
        score : ndarray of shape (n,)
        modes : ndarray of intp, shape (n,), or None
            Mode per row where per-mode models are in use; -1 where the
            pooled model judged it (unseen mode, or a transition).
        """
        mode_models = getattr(self, "mode_models_", None)
        if mode_models is None:
            return self.detector_.decision_function(features), None
        rows = imputed
        n_ctx = 0
        if context is not None and context.shape[0]:
            ctx = context[context.shape[0] - min(self.window - 1, context.shape[0]) :]
            if np.isnan(ctx).any():
                ctx = self._impute(ctx, None)
            rows = np.concatenate([ctx, imputed], axis=0)
            n_ctx = ctx.shape[0]
        modes = steady_modes(self.checks_.modes_of(rows), n_ctx, self.window)
        return mode_models.decision_function(features, modes, self.detector_), modes

    def sensor_contributions(
        self, features: np.ndarray, modes: np.ndarray | None = None
    ) -> np.ndarray:
        """Map the detector's feature attributions back onto sensors.

        Every feature is derived from exactly one sensor (value, rolling mean
        or rolling std of it), so a sensor's share is the sum of its features'
        shares; rows still sum to 1 wherever the score is positive. With
        ``modes`` (from :meth:`score_features`) each row's shares come from
        the model that scored it.
        """
        mode_models = getattr(self, "mode_models_", None)
        if mode_models is not None and modes is not None:
            contrib = mode_models.contributions(features, modes, self.detector_)
        else:
            contrib = self.detector_.contributions(features)
        return self._sensor_shares(contrib)

    def _sensor_shares(self, contrib: np.ndarray) -> np.ndarray:
        """Feature shares summed per sensor (:meth:`sensor_contributions`)."""
        sensor_shares = np.zeros((contrib.shape[0], self.n_features_in_))
        for block in range(contrib.shape[1] // self.n_features_in_):
            d = self.n_features_in_
            sensor_shares += contrib[:, block * d : (block + 1) * d]
        return sensor_shares


@dataclass(frozen=True)
class ScoringState:
    """What one line's scorer carries from one micro-batch to the next.

    Attributes
    ----------
    context : ndarray of shape (n_context, n_sensors) or None
        Last ``max(window - 1, 1)`` rows, imputed, in raw sensor units; None
        at stream start.
    flags : ndarray of bool, shape (<= n - 1,)
        Most recent raw threshold exceedances, for k-of-n debouncing.
    alerted : bool
        Whether the last row was in alert (the next row, if quiet, is where
        the alert clears and its sensors are reported).
    last_time_us : int or None
        Time of the last scored row when the caller passes times; the next
        batch's first row is compared with it to detect a gap.
    checks : CheckState or None
        The sensor checks' run lengths and last mode (None: none yet).
    """

    context: np.ndarray | None = None
    flags: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    alerted: bool = False
    last_time_us: int | None = None
    checks: CheckState | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (any NaN becomes None)."""
        ctx = None
        if self.context is not None and not np.isnan(self.context).any():
            ctx = np.asarray(self.context, dtype=np.float64).tolist()  # the usual case, in C
        elif self.context is not None:
            ctx = [[None if np.isnan(v) else float(v) for v in row] for row in self.context]
        return {
            "context": ctx,
            "flags": [bool(f) for f in self.flags],
            "alerted": bool(self.alerted),
            "last_time_us": None if self.last_time_us is None else int(self.last_time_us),
            "checks": None
            if self.checks is None
            else {"runs": self.checks.runs.tolist(), "mode": int(self.checks.mode)},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScoringState:
        """Inverse of :meth:`to_dict`."""
        ctx = data.get("context")
        context = None
        # No rows of context is the same situation as stream start.
        if ctx:
            context = np.array(
                [[np.nan if v is None else v for v in row] for row in ctx], dtype=np.float64
            )
        flags = np.asarray(data.get("flags", []), dtype=bool)
        last = data.get("last_time_us")
        checks = data.get("checks")
        return cls(
            context=context,
            flags=flags,
            alerted=bool(data.get("alerted", False)),
            last_time_us=None if last is None else int(last),
            checks=None
            if checks is None
            else CheckState(np.asarray(checks["runs"], dtype=np.int64), int(checks["mode"])),
        )


@dataclass(frozen=True)
class BatchResult:
    """Per-row outputs for one micro-batch.

    Attributes
    ----------
    score : ndarray of float, shape (n,)
        Detector score (higher = more anomalous).
    raw_exceed : ndarray of bool, shape (n,)
        ``score > threshold``, except on the first ``window - 1`` rows of a
        stream (partial feature window), which never count.
    anomaly : ndarray of bool, shape (n,)
        Debounced alert: at least ``k`` exceedances among the last ``n``
        rows (including rows of earlier batches).
    top_sensors : ndarray of int, shape (n, min(3, n_sensors))
        Indices (into ``pipeline.sensors``) of the sensors contributing most
        to each row's score, largest first; -1 where a sensor contributed
        nothing (row exactly at the normal centre) and on quiet rows, which
        are not explained (see :func:`explained_rows`). Where a sensor check
        fired, the sensor it blames comes first.
    reason : ndarray of int8, shape (n,)
        Why a row exceeds: a code into
        :data:`lineguard.detectors.sensor_checks.REASONS` (0 none, 1 the
        score, 2 freeze, 3 step, 4 relation, 5 unseen mode).
    """

    score: np.ndarray
    raw_exceed: np.ndarray
    anomaly: np.ndarray
    top_sensors: np.ndarray
    reason: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int8))


def debounce(
    raw_flags: np.ndarray, history: np.ndarray | None, k: int, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """k-of-n alert debouncing across batch boundaries.

    A single noisy frame over threshold should not page the line; a fault
    persists. A row is alerted when at least ``k`` of the last ``n`` rows
    (itself included) exceeded the threshold.

    Parameters
    ----------
    raw_flags : array of bool, shape (m,)
        Exceedances of the new rows, in time order.
    history : array of bool, shape (<= n - 1,) or None
        Exceedances of the rows just before, as returned by the last call.
    k, n : int
        ``1 <= k <= n``. ``k = n = 1`` disables debouncing.

    Returns
    -------
    anomaly : ndarray of bool, shape (m,)
    new_history : ndarray of bool, shape (min(n - 1, rows seen),)
    """
    if not (isinstance(k, (int, np.integer)) and isinstance(n, (int, np.integer))):
        raise TypeError(f"k and n must be ints, got k={k!r}, n={n!r}.")
    if not 1 <= k <= n:
        raise ValueError(f"Debounce needs 1 <= k <= n, got k={k}, n={n}.")
    raw = np.asarray(raw_flags, dtype=bool).ravel()
    hist = np.zeros(0, dtype=bool) if history is None else np.asarray(history, dtype=bool).ravel()
    if hist.size > n - 1:
        raise ValueError(
            f"Debounce history must hold at most n - 1 = {n - 1} flags, got {hist.size}."
        )
    seq = np.concatenate([hist, raw])
    # Integer prefix sums: exact, so the result never depends on batching.
    csum = np.zeros(seq.size + 1, dtype=np.int64)
    np.cumsum(seq, dtype=np.int64, out=csum[1:])
    end = np.arange(hist.size + 1, seq.size + 1)
    count = csum[end] - csum[np.maximum(end - n, 0)]
    keep = min(n - 1, seq.size)
    return count >= k, seq[seq.size - keep :].copy()


def _top_k(shares: np.ndarray, top: int) -> np.ndarray:
    """Column indices of each row's ``top`` largest shares, largest first.

    Equal to a stable sort of the negated shares (ties go to the lower sensor
    index) because ``argmax`` returns the first maximum; ``top`` passes of
    argmax are several times cheaper than sorting every row of 50+ sensors.
    """
    n = shares.shape[0]
    work = np.array(shares, dtype=np.float64)
    out = np.empty((n, top), dtype=np.intp)
    rows = np.arange(n)
    for r in range(top):
        picked = work.argmax(axis=1)
        out[:, r] = picked
        work[rows, picked] = -np.inf
    return out


def score_batch(
    pipeline: LinePipeline,
    X: np.ndarray,
    state: ScoringState | None,
    threshold: float,
    k: int = 1,
    n: int = 1,
    time_us: np.ndarray | None = None,
) -> tuple[BatchResult, ScoringState]:
    """Score one micro-batch of a line's telemetry.

    Parameters
    ----------
    pipeline : LinePipeline
        The line's fitted pipeline.
    X : ndarray of shape (m, n_sensors)
        Raw rows in time order, columns in ``pipeline.sensors`` order, NaN for
        missing readings.
    state : ScoringState or None
        State returned by the previous call for this line (None at start).
    threshold : float
        Score above which a row counts as an exceedance (from calibration).
    k, n : int, default=1
        Debounce: alert when >= k of the last n rows exceed.
    time_us : ndarray of int64, shape (m,), optional
        Frame times. Where the pause before a row exceeds the pipeline's
        ``max_gap_us_`` (also against the previous batch's last row), the
        state is reset there: the row starts a fresh stream, its trailing
        window never reaches across the gap, and like any stream's first
        rows it does not alert until the window has filled.

    Returns
    -------
    result : BatchResult
    new_state : ScoringState
        Pass it with the next batch of the same line.
    """
    if not np.isfinite(threshold):
        raise ValueError(f"threshold must be a finite float, got {threshold!r}.")
    state = ScoringState() if state is None else state
    X = np.asarray(X, dtype=np.float64)
    if X.ndim == 2 and X.shape[0] == 0:
        # Empty poll: nothing to score, history unchanged.
        top = min(TOP_K_SENSORS, len(pipeline.sensors))
        empty = BatchResult(
            np.zeros(0),
            np.zeros(0, bool),
            np.zeros(0, bool),
            np.zeros((0, top), int),
            np.zeros(0, np.int8),
        )
        return empty, state
    if time_us is not None:
        t = np.asarray(time_us, dtype=np.int64).ravel()
        if X.ndim != 2 or t.size != X.shape[0]:
            raise ValueError(
                f"time_us must hold one time per row of X ({X.shape[0] if X.ndim else 0}), "
                f"got {t.size}."
            )
        bound = getattr(pipeline, "max_gap_us_", None)
        if bound is not None:
            starts = segment_starts(t, bound, t.size)
            last = state.last_time_us
            if last is not None and (t[0] - last > bound or t[0] < last):
                state = ScoringState()  # the gap sits before this batch's first row
            if starts.size > 1:
                # One call per gap-free segment (a handful per batch at most):
                # each segment after a gap starts from a fresh state.
                parts = []
                bounds = [*starts.tolist(), t.size]
                for i, (lo, hi) in enumerate(itertools.pairwise(bounds)):
                    part, state = score_batch(
                        pipeline, X[lo:hi], state if i == 0 else None, threshold, k, n, t[lo:hi]
                    )
                    parts.append(part)
                return _concat(parts), state
        result, state = score_batch(pipeline, X, state, threshold, k, n)
        return result, replace(state, last_time_us=int(t[-1]))
    if X.ndim == 2 and X.shape[0] > _CHUNK_ROWS:
        # Results do not depend on batching (see the module docstring), so a
        # large batch is scored in cache-sized chunks: the window features
        # build (rows, sensors, window) temporaries that otherwise fall out
        # of the CPU cache and halve the rate.
        parts = []
        for start in range(0, X.shape[0], _CHUNK_ROWS):
            part, state = score_batch(
                pipeline, X[start : start + _CHUNK_ROWS], state, threshold, k, n
            )
            parts.append(part)
        return _concat(parts), state
    features, context, X_imp = pipeline.transform_rows(X, state.context)
    if getattr(pipeline, "mode_models_", None) is None:
        # The detector keeps what attribution can reuse of the scoring pass.
        score, scored = pipeline.detector_._decision_and_context(features)
        modes = None
    else:
        score, modes = pipeline.score_features(features, X_imp, state.context)
        scored = None
    raw = score > threshold
    reason = raw.astype(np.int8)
    checks = getattr(pipeline, "checks_", None)
    check_state = None
    if checks is not None:
        prev = None
        if state.context is not None and state.context.shape[0]:
            prev = state.context[-1]
            prev = None if np.isnan(prev).any() else prev
        # X_imp is finite float64 by construction (no inf in X, every NaN
        # imputed from finite values), so the checks' validation is skipped.
        found, check_state = checks._check_rows(X_imp, prev, state.checks, state.context)
        fired = found.reason > 0
        # A check names its cause and its sensor: it takes precedence.
        reason = np.where(fired, found.reason, reason)
        raw = raw | fired
    # At stream start the first window - 1 rows have a partial trailing
    # window, unlike every training row (fit skips them): they are scored
    # but do not count towards an alert. The context holds min(window - 1,
    # rows seen) rows, so this is the same for any batching.
    warm_up = pipeline.window - 1 - (0 if state.context is None else state.context.shape[0])
    if warm_up > 0:
        raw[:warm_up] = False
        reason[:warm_up] = 0
    anomaly, flags = debounce(raw, state.flags, k, n)
    top = min(TOP_K_SENSORS, len(pipeline.sensors))
    top_sensors = np.full((X.shape[0], top), -1, dtype=np.intp)
    explain = explained_rows(raw, anomaly, state.alerted)
    if explain.any():
        # Attribution only where someone reads it: most frames of a healthy
        # line are quiet, and attribution costs as much as the score.
        if modes is None:
            shares = pipeline._sensor_shares(
                pipeline.detector_._contributions_at(features, explain, scored)
            )
        else:
            shares = pipeline.sensor_contributions(features[explain], modes[explain])
        if checks is not None:
            # Shares sum to at most 1, so +2 puts the blamed sensor first.
            blamed = found.sensor[explain]
            rows = np.flatnonzero(blamed >= 0)
            shares[rows, blamed[rows]] += 2.0
        order = _top_k(shares, top)
        picked = shares[np.arange(order.shape[0])[:, None], order]
        top_sensors[explain] = np.where(picked > 0, order, -1)
    result = BatchResult(
        score=score, raw_exceed=raw, anomaly=anomaly, top_sensors=top_sensors, reason=reason
    )
    alerted = bool(anomaly[-1])
    return result, ScoringState(
        context=context,
        flags=flags,
        alerted=alerted,
        last_time_us=state.last_time_us,
        checks=check_state,
    )


def _concat(parts: list[BatchResult]) -> BatchResult:
    return BatchResult(
        score=np.concatenate([p.score for p in parts]),
        raw_exceed=np.concatenate([p.raw_exceed for p in parts]),
        anomaly=np.concatenate([p.anomaly for p in parts]),
        top_sensors=np.concatenate([p.top_sensors for p in parts]),
        reason=np.concatenate([p.reason for p in parts]),
    )


@dataclass(frozen=True)
class SensorGaps:
    """Where one block of a line's frames had no reading, per model sensor.

    Scoring imputes a missing reading (last value, else the training
    median), which is right for a reading lost now and then and wrong for a
    sensor that sends nothing: the model then watches a line on which that
    axis never moves. These counts make both visible.

    Attributes
    ----------
    imputed : ndarray of int, shape (n_sensors,)
        Frames of the block where the sensor's reading was missing (imputed).
    dead : ndarray of bool, shape (n_sensors,)
        True where the sensor had no reading in any frame of the block: a
        dead sensor, or one the gateway does not map (an alert reason of its
        own, not normal scoring).
    """

    imputed: np.ndarray
    dead: np.ndarray

    def dead_names(self, sensors: list[str] | tuple[str, ...]) -> list[str]:
        """Names of the dead sensors, in the model's order."""
        return [s for s, d in zip(sensors, self.dead.tolist(), strict=True) if d]


def sensor_gaps(X: np.ndarray) -> SensorGaps:
    """Count the missing readings of one record's frames (one vectorized pass).

    Parameters
    ----------
    X : ndarray of shape (m, n_sensors)
        Raw rows in the model's sensor order, NaN where a reading is missing
        (or the record has no such sensor).

    Returns
    -------
    SensorGaps
    """
    missing = np.isnan(np.asarray(X, dtype=np.float64))
    m, d = missing.shape
    if not missing.any():  # the common record: every reading there
        return SensorGaps(imputed=np.zeros(d, dtype=np.intp), dead=np.zeros(d, dtype=bool))
    # count_nonzero over a bool array is several times faster than its sum.
    imputed = np.count_nonzero(missing, axis=0)
    return SensorGaps(imputed=imputed, dead=imputed == m)


def warm_up() -> None:
    """Do the hot path's one-time work now, before the first micro-batch.

    Runs the BLAS row-independence probe (tens of milliseconds) that would
    otherwise stall the first batch a worker scores.
    """
    blas_rows_are_independent()


def explained_rows(raw: np.ndarray, anomaly: np.ndarray, alerted: bool = False) -> np.ndarray:
    """Rows whose contributing sensors are reported.

    Over the threshold, in alert, or right after an alerted row (where an
    alert clears, the message names the sensors too). ``alerted`` says
    whether the row before the first one was in alert.
    """
    after_alert = np.concatenate(([alerted], anomaly[:-1]))
    return raw | anomaly | after_alert


def _group_codes(keys: np.ndarray) -> np.ndarray:
    """One integer per distinct row of ``keys`` (2-D, or 1-D: one key per row)."""
    return np.unique(keys, axis=0, return_inverse=True)[1].ravel()
