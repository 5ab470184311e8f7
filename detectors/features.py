"""Temporal features for streaming telemetry.

Many process faults are invisible in a single frame: a valve that starts to
stick raises vibration *variability* before any reading leaves its normal
range, and a drifting sensor keeps every value plausible while its recent
mean walks away. :class:`TemporalFeatures` therefore augments each sensor
with trailing-window statistics.

Streaming contract: the worker sees a line's telemetry in micro-batches of
arbitrary size. ``transform(X, context)`` takes the last ``window - 1`` rows
of earlier batches as ``context`` and returns the new context, so scoring a
series in one call or in any split into batches yields *bitwise identical*
features. At stream start (``context=None``) the first rows use the shorter
history that exists (an expanding window) rather than inventing past data.

Slow sensors
------------
Thermal signals (a casing temperature, a thermocouple) integrate heat over
minutes: their level wanders with ambient conditions and with whatever the
line did before, so a few hundred rows of normal history never cover the
levels a healthy line will visit next. Judged by their level, they page the
plant every time the line warms up -- on SKAB that was most of the false
alarms, right after each fault, while the pump cooled down. With
``detrend_slow`` set, :meth:`TemporalFeatures.fit` marks the sensors whose
training readings :data:`SLOW_LAG` samples apart are still strongly
correlated (autocorrelation above ``detrend_slow``: over many samples their
level barely changes) and describes them by their *dynamics* instead: the value
column becomes the deviation from the trailing mean (how fast it moves now)
and the trailing-mean column is zero. The rolling std stays. Fast sensors
(flows, currents, vibration RMS) keep their levels, which is where a stuck
valve shows. The choice uses the training rows only.

Levels the normal history pins down
-----------------------------------
Dropping a slow sensor's level is a loss wherever the level is where a
fault shows: a control loop that compensates a disturbance leaves only a
sustained shift in a few slow variables, and a batch line's levels and
temperatures are slow by nature. So with ``keep_bounded_levels`` a slow
sensor keeps its level (value and trailing-mean columns, judged by the
detector like any other sensor) when the normal rows are evidence that a
healthy line does not outgrow it (:func:`bounded_levels`):

* with three or more gap-free segments (batches, runs, days), every
  segment's trailing means stay inside the band the other segments span
  (widened by :data:`LEVEL_MARGIN` of it): the level recurs;
* with one stretch of history, its most recent :data:`LEVEL_VALIDATION`
  stay inside the band of the older rows, *and* the older rows hold at
  least :data:`~lineguard.detectors.sensor_checks.MIN_EFFECTIVE_ROWS`
  effective independent rows: a stretch shorter than the sensor's memory
  (400 rows of a casing temperature are worth less than one independent
  reading of its level) shows no range at all.

A warm-up after a fault, or the thermal wander of a short pump test, fails
both tests on normal rows and keeps the dynamics-only description; a
regulated level seen over many batches or a long history passes and keeps
its level, so a sustained shift alarms. Labels are never used.
"""

from __future__ import annotations

import itertools

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from .sensor_checks import MIN_EFFECTIVE_ROWS, effective_rows

__all__ = [
    "LEVEL_MARGIN",
    "LEVEL_VALIDATION",
    "STATS",
    "TemporalFeatures",
    "bounded_levels",
    "lagged_autocorrelation",
]

#: Lag, in rows, at which slow sensors are recognised (see the module docs):
#: ten samples, the shortest trailing window the library uses.
SLOW_LAG = 10

#: Share of a level band's width added on each side before a level counts as
#: outside it: the same margin as the step check's (``range_margin``).
LEVEL_MARGIN = 0.1
#: Most recent share of one stretch of history whose levels must stay inside
#: the older rows' band (the checks' ``validation_fraction``).
LEVEL_VALIDATION = 0.3
#: Share of the held-out levels that may fall outside (the checks'
#: ``validation_max_rate``): a single spike does not decide.
_LEVEL_MAX_OUTSIDE = 0.005

#: Supported per-sensor statistics, in output order.
STATS: tuple[str, ...] = ("value", "mean", "std")


class TemporalFeatures(BaseEstimator):
    """Per-sensor raw value, trailing mean and trailing std over ``window`` rows.

    Parameters
    ----------
    window : int, default=10
        Trailing window length in rows, including the current row. ``1`` means
        no temporal context: only the raw values are produced.
    stats : tuple of str, default=("value", "mean", "std")
        Which statistics to emit, a subset of :data:`STATS`.
    detrend_slow : float or None, default=None
        Lag-:data:`SLOW_LAG` autocorrelation in the training rows above which a
        sensor counts as slow and loses its level columns (module docs).
        None keeps every sensor's level.
    keep_bounded_levels : bool, default=False
        Slow sensors whose level the normal rows pin down
        (:func:`bounded_levels`) keep it (module docs, "Levels the normal
        history pins down"). Only used with ``detrend_slow``.

    Attributes
    ----------
    n_features_in_ : int
        Number of input sensors.
    stats_ : tuple of str
        Statistics actually produced (``("value",)`` when ``window == 1``).
    feature_sources_ : ndarray of shape (n_features_out_,)
        Input column each output feature is computed from; lets the scorer
        sum feature attributions back onto physical sensors.
    n_features_out_ : int
    slow_ : ndarray of bool, shape (n_features_in_,)
        Sensors described by their dynamics rather than their level (see
        the module docs); all False unless ``detrend_slow`` is set.
    level_kept_ : ndarray of bool, shape (n_features_in_,)
        Sensors slow by their autocorrelation whose level was kept because
        the normal rows bound it; all False unless ``keep_bounded_levels``.

    Notes
    -----
    Output columns are grouped by statistic: all sensors' values, then all
    trailing means, then all trailing stds. The std is the population
    standard deviation (ddof=0) of the rows in the window, so it is 0 for a
    single-row window. Input must be finite (impute first).
    """

    def __init__(
        self,
        window: int = 10,
        stats: tuple[str, ...] = STATS,
        detrend_slow: float | None = None,
        keep_bounded_levels: bool = False,
    ) -> None:
        self.window = window
        self.stats = stats
        self.detrend_slow = detrend_slow
        self.keep_bounded_levels = keep_bounded_levels

    def fit(
        self, X: np.ndarray, y: object = None, starts: np.ndarray | None = None
    ) -> TemporalFeatures:
        """Choose, from normal rows, which sensors are described by their dynamics.

        Parameters
        ----------
        X : ndarray of shape (n_rows, n_sensors)
            Normal rows in time order, finite.
        y : ignored
        starts : ndarray of int, optional
            Rows where a gap-free segment starts (several runs or batches);
            used by :func:`bounded_levels`.
        """
        if not isinstance(self.window, (int, np.integer)) or self.window < 1:
            raise ValueError(f"window must be an int >= 1, got {self.window!r}.")
        unknown = [s for s in self.stats if s not in STATS]
        if unknown or not self.stats:
            raise ValueError(f"stats must be a non-empty subset of {STATS}, got {self.stats!r}.")
        X = _check_rows(X, None)
        self.n_features_in_ = X.shape[1]
        # A one-row window has mean == value and std == 0: pure redundancy.
        self.stats_ = ("value",) if self.window == 1 else tuple(s for s in STATS if s in self.stats)
        self.feature_sources_ = np.tile(np.arange(self.n_features_in_), len(self.stats_))
        self.n_features_out_ = int(self.feature_sources_.size)
        self.slow_ = np.zeros(self.n_features_in_, dtype=bool)
        self.level_kept_ = np.zeros(self.n_features_in_, dtype=bool)
        if self.detrend_slow is not None and len(self.stats_) > 1 and "value" in self.stats_:
            if not 0.0 < self.detrend_slow < 1.0:
                raise ValueError(
                    f"detrend_slow must be in (0, 1) or None, got {self.detrend_slow!r}."
                )
            slow = lagged_autocorrelation(X, SLOW_LAG) > self.detrend_slow
            if getattr(self, "keep_bounded_levels", False) and slow.any():
                columns = np.flatnonzero(slow)
                self.level_kept_[columns] = bounded_levels(X[:, columns], self.window, starts)
            self.slow_ = slow & ~self.level_kept_
        return self

    def get_feature_names_out(self, input_features: list[str] | None = None) -> np.ndarray:
        """Names like ``"Pressure"``, ``"Pressure__mean10"``, ``"Pressure__std10"``."""
        check_is_fitted(self, "stats_")
        if input_features is None:
            input_features = [f"x{i}" for i in range(self.n_features_in_)]
        names = []
        slow = getattr(self, "slow_", np.zeros(len(input_features), dtype=bool))
        for stat in self.stats_:
            suffix = "" if stat == "value" else f"__{stat}{self.window}"
            for name, is_slow in zip(input_features, slow, strict=True):
                if is_slow and stat == "value":
                    names.append(f"{name}__dev{self.window}")
                elif is_slow and stat == "mean":
                    names.append(f"{name}__mean{self.window}_off")
                else:
                    names.append(f"{name}{suffix}")
        return np.asarray(names, dtype=object)

    def transform(
        self, X: np.ndarray, context: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Compute features for ``X`` given the preceding rows.

        Parameters
        ----------
        X : ndarray of shape (n_samples, n_features_in_)
            New rows, in time order, finite.
        context : ndarray of shape (n_context, n_features_in_) or None
            The last ``min(window - 1, rows seen so far)`` rows before ``X``,
            as returned by the previous call; None at stream start.

        Returns
        -------
        features : ndarray of shape (n_samples, n_features_out_)
        new_context : ndarray of shape (n_context', n_features_in_)
            Context to pass with the next batch (a copy; never aliases ``X``).
        """
        check_is_fitted(self, "stats_")
        X = _check_rows(X, self.n_features_in_)
        w = self.window
        d = self.n_features_in_
        if context is None:
            context = np.empty((0, d))
        context = _check_rows(context, d, what="context")
        if context.shape[0] > w - 1:
            raise ValueError(
                f"context must hold at most window - 1 = {w - 1} rows, got {context.shape[0]}."
            )
        return self._transform_finite(X, context)

    def _transform_finite(
        self, X: np.ndarray, context: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`transform` on rows already checked: finite float64 of the fitted
        width, ``context`` at most ``window - 1`` rows (the scorer's hot path,
        whose standardized rows are finite by construction)."""
        w = self.window
        history = np.concatenate([context, X], axis=0)
        n = X.shape[0]
        new_context = history[history.shape[0] - min(w - 1, history.shape[0]) :].copy()

        if n == 0:
            return np.empty((0, self.n_features_out_)), new_context
        if self.stats_ == ("value",):  # window 1: nothing trails
            return X.copy(), new_context
        # Each statistic is written straight into its block of the output.
        d = X.shape[1]
        out = np.empty((n, self.n_features_out_))
        block = {stat: out[:, i * d : (i + 1) * d] for i, stat in enumerate(self.stats_)}
        mean, _ = _trailing_mean_std(history, n, w, std_out=block.get("std"))
        slow = getattr(self, "slow_", None)  # absent in models saved before slow_ existed
        detrended = slow is not None and slow.any()
        if "value" in self.stats_:
            block["value"][:] = X
            if detrended:
                # Dynamics instead of level for slow sensors (module docs);
                # only their columns change, so only they are computed.
                columns = np.flatnonzero(slow)
                block["value"][:, columns] -= mean[:, columns]
        if "mean" in self.stats_:
            block["mean"][:] = mean
            if detrended:
                block["mean"][:, slow] = 0.0
        return out, new_context


_Block = tuple[np.ndarray, "np.ndarray | None", "float | np.ndarray"]


def _trailing_mean_std(
    history: np.ndarray, n: int, w: int, std_out: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and population std over each of the last ``n`` rows' trailing windows.

    A window is assembled from blocks of 1, 2, 4, ... rows that neighbouring
    rows share, merged with the pairwise update of Chan, Golub and LeVeque
    for (mean, sum of squared deviations): about ``7 log2(w)`` array passes
    instead of the ``4 w`` of visiting every window position, with the
    stability of the two-pass formula. Deviations are only taken between
    block means, never as ``E[x²] - mean²``, which would turn a constant
    sensor's std of exactly 0 into rounding noise that the detector's
    scaling then magnifies. A row's blocks sit at fixed positions relative to
    the row, so results are bitwise identical however the stream is cut
    into batches. ``std_out`` (shape ``(n, d)``), if given, receives the std.
    """
    d = history.shape[1]
    c = history.shape[0] - n
    counts: float | np.ndarray
    if c >= w - 1:
        # Every window is full (all but a stream's first batch): block sizes
        # are plain numbers. Same operations, in the same order, as below.
        rows = history[c - (w - 1) :]
        counts = 1.0
    else:
        # Stream start: left-pad with w-1-c empty rows (count 0, mean 0).
        # Merging with an empty block is exact, so a full window gets the
        # same bits here as in the branch above.
        pad = w - 1 - c
        rows = np.concatenate([np.zeros((pad, d)), history], axis=0)
        counts = np.concatenate([np.zeros(pad), np.ones(c + n)])[:, None]
    # blocks[k] holds (mean, M2, count) of the 2**k rows starting at each row.
    blocks: list[_Block] = [(rows, None, counts)]
    while 2 ** len(blocks) <= w:
        size = 2 ** (len(blocks) - 1)
        length = blocks[-1][0].shape[0] - size
        blocks.append(_merge(blocks[-1], 0, blocks[-1], size, length))
    # Output row i's window is rows[i : i + w]: the binary digits of w as
    # blocks, largest first, merged left to right.
    window: _Block | None = None
    offset = 0
    for k in range(len(blocks) - 1, -1, -1):
        if w >> k & 1:
            if window is None:
                window = _cut(blocks[k], 0, n)
            else:
                window = _merge(window, 0, blocks[k], offset, n)
            offset += 2**k
    mean, m2, count = window
    if m2 is None:  # w == 1
        std = np.zeros((n, d)) if std_out is None else std_out
        std[:] = 0.0
        return mean.copy(), std
    m2 /= count  # m2 is the last merge's own array
    return mean, np.sqrt(m2, out=std_out)


def _cut(block: _Block, start: int, length: int) -> _Block:
    """Rows ``start:start + length`` of a block (counts may be a plain number)."""
    mean, m2, count = block
    stop = start + length
    return (
        mean[start:stop],
        None if m2 is None else m2[start:stop],
        count[start:stop] if isinstance(count, np.ndarray) else count,
    )


def _merge(a: _Block, a_start: int, b: _Block, b_start: int, length: int) -> _Block:
    """Merge ``length`` rows of block ``a`` (from ``a_start``) with the blocks of
    ``b`` (from ``b_start``) that follow them in time.

    With ``delta = mean_b - mean_a``: ``mean = mean_a + delta * nb / n`` and
    ``M2 = M2_a + M2_b + delta² * na * nb / n``. A block of count 0 has mean
    0, and merging with it leaves the other block's values exact.
    """
    mean_a, m2_a, na = _cut(a, a_start, length)
    mean_b, m2_b, nb = _cut(b, b_start, length)
    total = na + nb
    if isinstance(total, np.ndarray):
        total = np.maximum(total, 1.0)  # two empty blocks: weights 0, not 0/0
    weight_b = nb / total
    weight_ab = na * nb / total
    delta = mean_b - mean_a
    mean = delta * weight_b
    mean += mean_a
    m2 = delta
    m2 *= delta
    m2 *= weight_ab
    if m2_a is not None:
        m2 += m2_a
    if m2_b is not None:
        m2 += m2_b
    return mean, m2, na + nb


def bounded_levels(X: np.ndarray, window: int, starts: np.ndarray | None = None) -> np.ndarray:
    """Per column: do the normal rows show that its level stays in a band?

    The level is the trailing mean over ``window`` rows (full windows, never
    across a segment start). See the module docs for the two tests: levels
    that recur across three or more segments, or, in one stretch, recent
    levels inside the older band with enough effective rows behind it.

    Parameters
    ----------
    X : ndarray of shape (n_rows, n_columns)
        Normal rows in time order, finite.
    window : int
        Trailing window of the level.
    starts : ndarray of int, optional
        First row of each gap-free segment (default: one segment).

    Returns
    -------
    ndarray of bool, shape (n_columns,)
    """
    X = np.asarray(X, dtype=np.float64)
    n, d = X.shape
    bounds = [0] if starts is None else sorted({0, *np.asarray(starts, dtype=int).tolist()})
    levels = [_trailing_levels(X[a:b], window) for a, b in itertools.pairwise([*bounds, n])]
    levels = [m for m in levels if m.shape[0]]
    if len(levels) >= 3:
        outside = np.zeros(d)
        for i, held in enumerate(levels):
            rest = np.concatenate(levels[:i] + levels[i + 1 :], axis=0)
            outside += _outside(held, rest).sum(axis=0)
        return outside / sum(m.shape[0] for m in levels) <= _LEVEL_MAX_OUTSIDE
    m = np.concatenate(levels, axis=0) if levels else np.empty((0, d))
    n_recent = int(np.ceil(m.shape[0] * LEVEL_VALIDATION))
    if n_recent < 1 or m.shape[0] - n_recent < 2:
        return np.zeros(d, dtype=bool)
    older_rows = X[: max(n - (n_recent + window - 1), 2)]
    enough = effective_rows(older_rows) >= MIN_EFFECTIVE_ROWS
    inside = _outside(m[-n_recent:], m[:-n_recent]).mean(axis=0) <= _LEVEL_MAX_OUTSIDE
    return enough & inside


def _trailing_levels(X: np.ndarray, window: int) -> np.ndarray:
    """Trailing means of the full windows of one segment (fit time only)."""
    if X.shape[0] < window:
        return np.empty((0, X.shape[1]))
    c = np.cumsum(np.concatenate([np.zeros((1, X.shape[1])), X], axis=0), axis=0)
    return (c[window:] - c[:-window]) / window


def _outside(levels: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Which of ``levels`` fall outside the widened band of ``reference``."""
    lo, hi = reference.min(axis=0), reference.max(axis=0)
    margin = LEVEL_MARGIN * (hi - lo)
    return (levels < lo - margin) | (levels > hi + margin)


def lagged_autocorrelation(X: np.ndarray, lag: int) -> np.ndarray:
    """Per-column autocorrelation of consecutive rows at ``lag`` rows.

    Parameters
    ----------
    X : ndarray of shape (n_rows, n_columns)
        Rows in time order, finite.
    lag : int
        Distance in rows.

    Returns
    -------
    ndarray of shape (n_columns,)
        In [-1, 1]; 0 for constant columns or when ``n_rows <= lag + 1``.
    """
    X = np.asarray(X, dtype=np.float64)
    out = np.zeros(X.shape[1])
    if lag < 1 or X.shape[0] <= lag + 1:
        return out
    centred = X - X.mean(axis=0)
    energy = np.einsum("ij,ij->j", centred, centred)
    cross = np.einsum("ij,ij->j", centred[lag:], centred[:-lag])
    np.divide(cross, energy, out=out, where=energy > 0)
    return out


def _check_rows(X: np.ndarray, n_cols: int | None, what: str = "X") -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"{what} must be 2-D (n_rows, n_sensors), got shape {X.shape}.")
    if n_cols is not None and X.shape[1] != n_cols:
        raise ValueError(f"{what} must have {n_cols} sensor columns, got {X.shape[1]}.")
    if not np.isfinite(X).all():
        raise ValueError(f"{what} must be finite (impute missing values before features).")
    return X
