"""Per-sensor fault checks beside the multivariate score, judged per operating mode.

A multivariate detector asks "is this combination of readings plausible?".
Three common sensor faults pass that test:

* **Freeze (stuck reading).** A frozen level or temperature holds a value
  the line visits every day. Only its *missing variation* gives it away: a
  level that does not move while the fill valve is open, a temperature that
  does not change while the heater is on.
* **Step.** A reading that jumps outside the range its mode normally
  shows (a level of 1.2 with the tank's outlet open).
* **Broken relation.** A reading that drifts away from the value the other
  readings imply (a tank temperature that no longer matches its outflow
  temperature). Each sensor is predicted from all the others by a ridge
  regression fitted on normal rows; its residual is judged per mode.

Operating modes
---------------
What "normal" means for a sensor depends on what the line is doing. A batch
line (fill, mix, heat, cool, discharge) announces its mode in 0/1 state
channels -- valve, heater, cooler, mixer commands. :meth:`SensorChecks.fit`
recognises such channels in the normal data (only the values 0 and 1, both
seen) and takes each combination of their states seen in training as a
mode. Many batch lines (pharma above all) publish instead, or besides, one
integer **phase tag** (an ISA-88 step number: 1 fill, 2 mix, 3 heat ...);
:func:`phase_channels` recognises it from normal rows, and each of its
values is part of the mode key like a state channel's bit. A continuous
line without state or phase channels has one mode. Every limit
below is learned per mode, from normal rows only:

* freeze: the longest run of rows, within the mode, over which the sensor's
  reading did not change. A reading that stays unchanged for
  ``freeze_factor`` times that, plus ``freeze_slack`` rows, is stuck.
  Sensors that often stand still in a mode (a level while nothing flows)
  get a long limit there and are in effect not checked in it.
* step: the mode's [min, max] widened by ``range_margin`` of the sensor's
  overall training range. A sensor that never moved in training (a parked
  valve, a fixed setpoint, an idle channel: ``flat_``) carries no
  information on normal variation, so the multivariate score leaves it out
  (:class:`~lineguard.detectors.scoring.LinePipeline`); the step check
  reports a reading that leaves its one value by more than
  :data:`READING_RESOLUTION`, on every mode.
* relation: ``relation_factor`` times the largest absolute residual seen in
  the mode.

A combination of state channels (and phase values) never seen in training
is reported as an **unseen mode** (its own alert reason), not scored as if it were normal:
nothing in the training data says what normal looks like there. Not every
0/1 column is a command, though: the switches parts trip on an assembly line
(light barriers, part-present sensors) make new combinations all the time.
So the modes are tried on held-back normal rows like the checks, and
channels whose combinations those rows do not bear out are set aside and
judged as sensors (:meth:`SensorChecks._set_aside_unreliable_channels`). Modes with
fewer than ``min_mode_rows`` training rows fall back to the limits learned
over all rows (freeze: not checked).

Streaming
---------
The run lengths and the previous row's mode are what the checks carry from
one micro-batch to the next (:class:`CheckState`); the scorer resets them
with the rest of the line's state after a gap in the data, so a check never
compares readings across a pause. Everything is vectorized over the batch.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import ndtri
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from ._numeric import ordered_matmul

__all__ = [
    "MAX_PHASE_VALUES",
    "MIN_EFFECTIVE_ROWS",
    "MIN_PHASE_RUN",
    "MIN_PHASE_VISITS",
    "READING_RESOLUTION",
    "REASONS",
    "CheckResult",
    "CheckState",
    "SensorChecks",
    "effective_rows",
    "phase_channels",
    "unchanged_runs",
]

#: Alert reasons, by code: 0 quiet, 1 the multivariate score, then the checks.
REASONS: tuple[str, ...] = ("", "score", "freeze", "step", "relation", "unseen_mode")
FREEZE, STEP, RELATION, UNSEEN_MODE = 2, 3, 4, 5

# No limit: a check that does not apply to a sensor in a mode.
_NO_LIMIT = np.inf
_MAX_STATE_CHANNELS = 62
# Bits of the mode code per phase channel: the index of its value among the
# (at most MAX_PHASE_VALUES) values seen in training.
_PHASE_BITS = 4

#: Most distinct values a phase channel may take. An ISA-88 procedure has a
#: handful of phases per unit (fill, mix, heat, cool, discharge, clean ...);
#: a reading with more distinct integer values is a count or a quantised
#: analog value. 16 also keeps a phase value's index in 4 bits of the code.
MAX_PHASE_VALUES = 16
#: Rows a phase channel must hold each of its values for, as the median
#: over that value's runs: three default feature windows (10 rows). A phase
#: is a stretch of operation many windows long (most of its rows must be
#: steady, their windows inside it, for its mode model to learn from), while
#: a quantised analog reading dithers between neighbouring values near each
#: quantisation boundary and gives many runs of a few rows.
MIN_PHASE_RUN = 30
#: Times each phase value must be entered in training (a value held across
#: a gap is entered once): a phase recurs batch after batch, while a product
#: or recipe code that training sees once each never returns to a value in
#: it (a monotone counter fails the jump clause of :func:`phase_channels`).
MIN_PHASE_VISITS = 2

#: Share of a line's rows on which the drift check may fire on *some*
#: sensor of a healthy line under a normal tail: a tenth of the default 1 %
#: false-alarm target, which the multivariate score spends.
DRIFT_ROW_RATE = 1e-3

#: Effective independent rows (:func:`effective_rows`) a sensor's fit rows
#: need before its step and relation checks are trusted from one stretch of
#: history: about the sample size at which a range's extremes stop growing
#: quickly (the expected maximum of 30 normal draws is ~2 sd).
MIN_EFFECTIVE_ROWS = 30.0
#: Rows within which the drift check's relation residual must forget (its
#: effective rows at least the fit rows over this): a residual that carries a
#: slow wander the regressions do not capture has means that follow the
#: wander, and a fit window shows only part of it.
RESIDUAL_MEMORY_ROWS = 10

#: Relative resolution of a reading: changes below ``READING_RESOLUTION *
#: max(|value|, 1)`` are rounding (a float32 hop on the way from the
#: transmitter carries 6e-8 of the value), not a change of the process. It is
#: the tolerance of a sensor that never moved in training and of a relation
#: the other sensors predict exactly.
READING_RESOLUTION = 1e-6


@dataclass(frozen=True)
class CheckState:
    """What the checks carry between micro-batches of one line.

    Attributes
    ----------
    runs : ndarray of int64, shape (n_sensors,)
        Rows, up to the last one, over which each reading has not changed
        within the current mode.
    mode : int
        Mode index of the last row (-1: unseen mode).
    """

    runs: np.ndarray
    mode: int


@dataclass(frozen=True)
class CheckResult:
    """Per-row outcome of the checks for one batch.

    Attributes
    ----------
    reason : ndarray of int8, shape (n,)
        Code into :data:`REASONS` of the strongest check that fired, 0 if none.
    sensor : ndarray of intp, shape (n,)
        Sensor the check blames, -1 where none fired.
    mode : ndarray of intp, shape (n,)
        Mode index per row, -1 for an unseen mode.
    """

    reason: np.ndarray
    sensor: np.ndarray
    mode: np.ndarray


def unchanged_runs(same: np.ndarray, carry: np.ndarray | None) -> np.ndarray:
    """Length of the run of True ending at each row, per column.

    Parameters
    ----------
    same : ndarray of bool, shape (n, d)
        Whether each row continues the run (reading unchanged, same mode).
    carry : ndarray of int, shape (d,) or None
        Run length at the row before the first one (None: 0).

    Returns
    -------
    ndarray of int64, shape (n, d)
    """
    n = same.shape[0]
    pos = np.arange(n, dtype=np.int64)[:, None]
    last_break = np.where(same, -1, pos)
    np.maximum.accumulate(last_break, axis=0, out=last_break)
    runs = pos - last_break
    if carry is not None:
        unbroken = last_break < 0
        runs = np.where(unbroken, runs + np.asarray(carry, dtype=np.int64)[None, :], runs)
    return runs


def phase_channels(X: np.ndarray, starts: np.ndarray | None = None) -> np.ndarray:
    """Columns of normal rows that read as an integer phase tag.

    A phase channel is a column whose training values are

    * all integers, with between 3 and :data:`MAX_PHASE_VALUES` distinct
      values (two values are a 0/1 state channel's business, or a second
      level of one reading; more than 16 a count or an analog value);
    * each held for long runs: the median length of every value's runs is
      at least :data:`MIN_PHASE_RUN` rows (a quantised analog reading
      dithers across its quantisation steps in short runs);
    * each entered at least :data:`MIN_PHASE_VISITS` times (a phase recurs
      in every batch; a product or recipe code held once each does not);
    * and it jumps at least once over a value: some change, within a
      segment or from one segment to the next, skips one of the values in
      between (the wrap from the last phase back to the first). A
      continuous quantity, however coarsely quantised, passes through the
      values between two of its readings.

    On SKAB and MIDAS no column is picked (no column there has more than
    two distinct integer values); see docs/evaluating-detectors.md.

    Parameters
    ----------
    X : ndarray of shape (n_rows, n_sensors)
        Normal rows, finite, in time order.
    starts : ndarray of int, optional
        Rows where a gap-free segment starts (a run never spans a gap).

    Returns
    -------
    ndarray of bool, shape (n_sensors,)
    """
    X = _finite_2d(X)
    n, d = X.shape
    out = np.zeros(d, dtype=bool)
    if n < 2:
        return out
    integer = np.all(np.rint(X) == X, axis=0)
    cut = np.zeros(n, dtype=bool)
    if starts is not None:
        cut[np.asarray(starts, dtype=np.intp)] = True
    cut[0] = True
    for j in np.flatnonzero(integer):
        x = X[:, j]
        values = np.unique(x)
        if not 3 <= values.size <= MAX_PHASE_VALUES:
            continue
        first = cut.copy()
        first[1:] |= x[1:] != x[:-1]
        bounds = np.flatnonzero(first)
        lengths = np.diff(np.append(bounds, n))
        run_value = np.searchsorted(values, x[bounds])
        medians = [np.median(lengths[run_value == v]) for v in range(values.size)]
        if min(medians) < MIN_PHASE_RUN:
            continue
        # Visits and jumps are changes of value, wherever they happen: a
        # value held across a gap is one visit, and batches trained as
        # separate segments wrap from the last phase back to the first only
        # across the pause between them.
        entered = np.flatnonzero(np.r_[True, x[1:] != x[:-1]])
        visit_value = np.searchsorted(values, x[entered])
        visits = np.bincount(visit_value, minlength=values.size)
        if visits.min() < MIN_PHASE_VISITS:
            continue
        jumps = np.abs(np.diff(visit_value))
        if jumps.size and jumps.max() >= 2:
            out[j] = True
    return out


class SensorChecks(BaseEstimator):
    """Freeze, step, broken-relation and unseen-mode checks, per operating mode.

    Parameters
    ----------
    freeze_factor : float or None, default=2.0
        A reading is stuck when unchanged for more than ``freeze_factor``
        times the longest unchanged run of normal rows in its mode, plus
        ``freeze_slack``. None disables the freeze check.
    freeze_slack : int, default=3
        Rows added to every freeze limit (a sensor that changes on every
        normal row is stuck after this many unchanged rows).
    range_margin : float or None, default=0.1
        Step check: the mode's normal range is widened by this share of the
        sensor's whole training range on both sides. None disables it.
    relation_factor : float, default=1.5
        Relation check: a residual above this times the mode's largest
        normal residual fires. None disables the relation check.
    min_mode_rows : int, default=30
        Modes with fewer training rows use the all-modes limits.
    ridge : float, default=1e-3
        Ridge penalty (on standardized sensors) of the relation regressions.
    validation_fraction : float or None, default=0.3
        Most recent share of the training rows on which each check is tried
        before it is trusted (see :meth:`fit`); None trusts every check.
    validation_max_rate : float, default=0.005
        A check firing on more than this share of a sensor's validation
        rows is switched off for that sensor. Equal to ``trim``: a dirty
        minority the limits tolerate must not switch the check off either.
        (0.001 and 0.005 give identical results on SKAB and MIDAS.)
    trim : float, default=0.005
        Share of a mode's training rows, per sensor, whose longest unchanged
        runs are ignored when the freeze limit is learned (a trimmed max):
        a stretch of frozen readings that slipped into an unlabelled
        training window -- up to this fraction of the mode's rows -- does
        not set the limit. (A frozen stretch in training is what would
        blind the freeze check in that mode for good.) The step and relation
        limits keep the plain extremes: trimmed at 0.5 % they cost SKAB 0.8
        points of false-alarm rate and MIDAS 11 points of attribution.
        0 takes the plain extremes everywhere.
    bounded_regressors : bool, default=True
        Predict each sensor, in the relation regressions, only from sensors
        whose level the fit rows pin down: with one stretch of history, a
        sensor with fewer than :data:`MIN_EFFECTIVE_ROWS` effective rows
        (whose step check is switched off for that reason) is no regressor.
        Such a sensor's level wanders beyond its training range in healthy
        operation (a casing temperature after a warm-up), and a regression
        that leans on it then extrapolates: the *other* sensors' residuals
        grow and their relation checks fire on normal rows.
    drift_window : int or None, default=20
        Drift check: each sensor's relation residual averaged over its last
        ``drift_window`` rows fires above ``relation_factor`` times the
        largest such average of its mode's normal rows (reason
        ``relation``: it is the same relation, held for longer). A reading
        that leaves its relation to the others by a few noise standard
        deviations *and stays there* -- a fault a control loop compensates,
        which leaves a lasting offset in one variable, or a drifting
        transmitter -- stays under the row-wise relation limit (set by the
        largest single-row residual of normal operation) on most of its
        rows, while the average cuts the residual's row-to-row noise by
        about ``sqrt(drift_window)``. Trusted like the relation check
        (``disabled_[3]``). Needs that many rows of the line's recent past:
        the scorer passes its trailing context. None disables it.
    noise_window : int or None, default=None
        Noise check: the variance of each sensor's relation residual over
        its last ``noise_window`` rows (around their own mean, so a lasting
        offset does not count) fires above ``relation_factor`` times the
        largest such variance of its mode's normal rows and above a tail
        floor (:meth:`_noise_tail`). A transmitter losing precision (a loose
        contact, a failing element, a noisy wire) reads around the right
        value, so neither the range nor the row-wise relation notices it
        until the noise is several times its normal size. Reported as
        ``relation``, only where every other check is quiet; trusted like
        the drift check (``disabled_[4]``). None, the default, disables it:
        on ``bench/scoring_cost.py``'s fleet it costs about 15 % of the
        scoring stage, more than issue 16's cost goal leaves; 20 is the
        measured setting (``bench/compensated_fault.py --fault noise``).
    validate_modes : bool, default=True
        Try the modes like the checks before trusting them: 0/1 and phase
        channels whose combinations the held-back normal rows do not bear
        out are set aside and judged as sensors
        (:meth:`_set_aside_unreliable_channels`). Needs
        ``validation_fraction``.
    channels_aside : sequence of int or None, default=None
        Columns to set aside as the line's earlier fit decided, instead of
        deciding on these rows: a refit on more rows keeps the modes of the
        model its threshold was calibrated on (which channels define the
        modes changes what every score means).

    Attributes
    ----------
    n_features_in_ : int
    state_channels_ : ndarray of bool, shape (n_sensors,)
        0/1 state channels that define the modes.
    phase_channels_ : ndarray of bool, shape (n_sensors,)
        Integer phase tags (:func:`phase_channels`) that define the modes
        with the state channels (all False on checks saved before them).
    phase_values_ : ndarray of float, shape (n_phase_channels, MAX_PHASE_VALUES + 1)
        Each phase channel's values seen in training, sorted, padded with inf.
    checked_ : ndarray of bool, shape (n_sensors,)
        Sensors the checks judge (not state or phase channels, not constant).
    flat_ : ndarray of bool, shape (n_sensors,)
        Sensors with one value over all training rows (not state or phase
        channels): judged by the step check alone, against that value.
    modes_ : ndarray of int64, shape (n_modes,)
        Seen mode keys, sorted. A key packs the state channels' bits (bit i:
        the i-th state channel) and, above them, 4 bits per phase channel
        holding the index of its value in ``phase_values_``.
    mode_rows_ : ndarray of int64, shape (n_modes,)
    freeze_limit_, low_, high_, relation_limit_ : ndarray, shape (n_modes, n_sensors)
        Per-mode limits (``inf``/``-inf`` where a check does not apply).
    coef_ : ndarray of shape (n_sensors, n_sensors)
        Relation regressions on standardized sensors (row j predicts sensor
        j; its diagonal is zero). ``mean_``, ``scale_`` standardize.
    drift_limit_, noise_limit_ : ndarray, shape (n_modes, n_sensors)
        Per-mode limits of the drift and noise checks (absent on checks
        saved before them).
    disabled_ : ndarray of bool, shape (5, n_sensors)
        Freeze, step, relation, drift and noise checks switched off per
        sensor because they fired on held-back normal rows (:meth:`fit`).
    regressors_ : ndarray of bool, shape (n_sensors,)
        Sensors the relation regressions may use as inputs
        (``bounded_regressors``).
    channels_set_aside_ : ndarray of bool, shape (n_sensors,)
        0/1 or phase channels that do not define modes because held-back
        normal rows fell outside the modes they made (``validate_modes``);
        they are judged as sensors. Absent on checks saved before it.
    """

    def __init__(
        self,
        freeze_factor: float | None = 2.0,
        freeze_slack: int = 3,
        range_margin: float | None = 0.1,
        relation_factor: float | None = 1.5,
        min_mode_rows: int = 30,
        ridge: float = 1e-3,
        validation_fraction: float | None = 0.3,
        validation_max_rate: float = 0.005,
        trim: float = 0.005,
        bounded_regressors: bool = True,
        validate_modes: bool = True,
        drift_window: int | None = 20,
        noise_window: int | None = None,
        channels_aside: Sequence[int] | None = None,
    ) -> None:
        self.freeze_factor = freeze_factor
        self.freeze_slack = freeze_slack
        self.range_margin = range_margin
        self.relation_factor = relation_factor
        self.min_mode_rows = min_mode_rows
        self.ridge = ridge
        self.validation_fraction = validation_fraction
        self.validation_max_rate = validation_max_rate
        self.trim = trim
        self.bounded_regressors = bounded_regressors
        self.validate_modes = validate_modes
        self.drift_window = drift_window
        self.noise_window = noise_window
        self.channels_aside = channels_aside

    # -- fitting -------------------------------------------------------------
    def fit(
        self, X: np.ndarray, y: object = None, starts: np.ndarray | None = None
    ) -> SensorChecks:
        """Learn modes and per-mode limits from normal rows; keep the checks that hold.

        The limits are first learned on the older ``1 - validation_fraction``
        of the rows and run over the most recent rows, as live scoring would.
        A check that fires there on more than ``validation_max_rate`` of a
        sensor's rows does not describe that sensor's normal behaviour well
        enough (its history is too short to cover the range a slow sensor
        visits, or the relation moves with conditions), so it is switched off
        for that sensor (``disabled_``). Then the limits are learned on all
        rows. The choice uses normal rows only.

        Parameters
        ----------
        X : ndarray of shape (n_rows, n_sensors)
            Normal rows in sensor units, finite (imputed), in time order.
        y : ignored
        starts : ndarray of int, optional
            Rows where a gap-free segment starts (runs never span a gap).
        """
        X = _finite_2d(X)
        n, d = X.shape
        if n < 2:
            raise ValueError(f"SensorChecks.fit needs at least 2 rows, got {n}.")
        starts = np.zeros(1, dtype=np.intp) if starts is None else np.asarray(starts, np.intp)
        disabled = np.zeros((5, d), dtype=bool)
        self.regressors_ = np.ones(d, dtype=bool)
        # Which columns are phase tags is decided once, on all rows: a batch
        # left out by the validation must not turn the tag into a sensor.
        self.phase_channels_ = phase_channels(X, starts)
        self.channels_set_aside_ = np.zeros(d, dtype=bool)
        prescribed = getattr(self, "channels_aside", None)
        if prescribed is not None:
            self.channels_set_aside_[np.asarray(prescribed, dtype=np.intp)] = True
            self.phase_channels_ &= ~self.channels_set_aside_
        if self.validation_fraction:
            if prescribed is None and getattr(self, "validate_modes", False):
                self._set_aside_unreliable_channels(X, starts)
            disabled = self._untrusted(X, starts)
        self._fit_limits(X, starts)
        self.freeze_limit_[:, disabled[0]] = _NO_LIMIT
        self.low_[:, disabled[1]] = -np.inf
        self.high_[:, disabled[1]] = np.inf
        self.relation_limit_[:, disabled[2]] = _NO_LIMIT
        self.drift_limit_[:, disabled[3]] = _NO_LIMIT
        self.noise_limit_[:, disabled[4]] = _NO_LIMIT
        self.disabled_ = disabled
        self._step_bounds()
        return self

    def _validation_pieces(self, n: int, starts: np.ndarray) -> list[tuple[np.ndarray, slice]]:
        """How normal rows are held back: (rows that set the limits, rows that test them).

        With three or more gap-free segments, each segment against all the
        others; otherwise one piece, the most recent ``validation_fraction``
        of the rows against the older ones. Empty when too few rows remain
        on either side.
        """
        bounds = [*starts.tolist(), n]
        pieces = list(itertools.pairwise(bounds))
        if len(pieces) >= 3:
            out = []
            for a, b in pieces:
                rest = np.ones(n, dtype=bool)
                rest[a:b] = False
                out.append((rest, slice(a, b)))
            return out
        n_fit = n - math.ceil(n * self.validation_fraction)
        if n_fit < 2 or n_fit >= n:
            return []
        fit = np.zeros(n, dtype=bool)
        fit[:n_fit] = True
        return [(fit, slice(n_fit, n))]

    def _set_aside_unreliable_channels(self, X: np.ndarray, starts: np.ndarray) -> None:
        """Keep as mode channels only those whose combinations recur in normal rows.

        Modes are trusted like every check: held-back normal rows (each
        segment against the others, or the most recent rows against the
        older ones) must fall in modes that the other rows establish (at
        least ``min_mode_rows`` rows, what a mode needs for limits of its
        own) on all but ``validation_max_rate`` of them. A recipe's commands
        (fill valve, heater, mixer) recur batch after batch and pass.
        Switches that parts trip (light barriers, part-present sensors on an
        assembly line) make new combinations all the time: each would alert
        as an unseen mode, and the rest split the rows into modes too small
        to learn from. While the share is over the limit, the channel whose
        removal lowers it most is set aside (``channels_set_aside_``) and
        judged as an ordinary sensor; the channels left define the modes.
        """
        n = X.shape[0]
        pieces = self._validation_pieces(n, starts)
        channels = np.flatnonzero(_switch_columns(X) | self.phase_channels_)
        if not pieces or channels.size == 0:
            return
        # Per row and channel: the channel's value as a small integer.
        keys = np.empty((n, channels.size), dtype=np.int64)
        for k, j in enumerate(channels):
            keys[:, k] = np.unique(X[:, j], return_inverse=True)[1]
        n_val = sum(val.stop - val.start for _, val in pieces)

        def unestablished_share(kept: list[int]) -> float:
            if not kept:
                return 0.0
            codes = np.unique(keys[:, kept], axis=0, return_inverse=True)[1].ravel()
            weak = 0
            for rest, val in pieces:
                rows = np.bincount(codes[rest], minlength=int(codes.max()) + 1)
                weak += int((rows[codes[val]] < self.min_mode_rows).sum())
            return weak / n_val

        # Among channels whose removal helps as much, the one that switches
        # most often goes first: an operating state (a conveyor running, a
        # heater on) holds for many windows, an event channel (a reject gate,
        # a light barrier) flips every few rows.
        switches = np.count_nonzero(np.diff(keys, axis=0), axis=0)
        kept = list(range(channels.size))
        share = unestablished_share(kept)
        while share > self.validation_max_rate:
            trials = [
                (unestablished_share([c for c in kept if c != k]), -switches[k]) for k in kept
            ]
            best = min(range(len(kept)), key=trials.__getitem__)
            share = trials[best][0]
            del kept[best]
        aside = np.setdiff1d(np.arange(channels.size), kept)
        self.channels_set_aside_[channels[aside]] = True
        self.phase_channels_ = self.phase_channels_ & ~self.channels_set_aside_

    def _freeze_columns(self) -> np.ndarray:
        """Sensors with a freeze limit in some mode (only they need run lengths)."""
        return np.flatnonzero(np.isfinite(self.freeze_limit_).any(axis=0))

    def _step_bounds(self) -> None:
        """Hot-path forms of the limits: step as centre and half-width (inf: no
        step check), the columns each check is in force for, and the relation
        residuals as one matrix product."""
        finite = np.isfinite(self.low_) & np.isfinite(self.high_)
        low, high = np.where(finite, self.low_, 0.0), np.where(finite, self.high_, 0.0)
        self.center_ = (low + high) / 2
        half = np.where(finite, (high - low) / 2, np.inf)
        self.half_ = np.maximum(half, 1e-12)
        self.inv_half_ = 1.0 / self.half_
        self.step_columns_ = np.flatnonzero(np.isfinite(self.half_).any(axis=0))
        self.relation_columns_ = np.flatnonzero(np.isfinite(self.relation_limit_).any(axis=0))
        d = self.coef_.shape[0]
        full = (np.eye(d) - self.coef_.T) / self.scale_[:, None]
        self.relation_matrix_ = np.ascontiguousarray(full[:, self.relation_columns_])
        self.relation_bias_ = self.mean_ @ self.relation_matrix_
        # The windowed checks' columns and their limits there (none on
        # checks saved before them).
        for check in ("drift", "noise"):
            limit = getattr(self, f"{check}_limit_", None)
            cols = (
                np.flatnonzero(np.isfinite(limit).any(axis=0))
                if limit is not None
                else np.zeros(0, dtype=np.intp)
            )
            setattr(self, f"{check}_columns_", cols)
            setattr(
                self,
                f"{check}_column_limit_",
                None if limit is None else np.ascontiguousarray(limit[:, cols]),
            )
        # Both windowed checks read one product: residuals on the union of
        # their columns, each check's columns found by position in it.
        self.window_columns_ = np.union1d(self.drift_columns_, self.noise_columns_)
        self.window_matrix_ = np.ascontiguousarray(full[:, self.window_columns_])
        self.window_bias_ = self.mean_ @ self.window_matrix_
        self.drift_at_ = np.searchsorted(self.window_columns_, self.drift_columns_)
        self.noise_at_ = np.searchsorted(self.window_columns_, self.noise_columns_)
        # On the hot path the row-wise relation residuals come from the same
        # product (its rows after the context ones).
        self.product_columns_ = np.union1d(self.relation_columns_, self.window_columns_)
        self.product_matrix_ = np.ascontiguousarray(full[:, self.product_columns_])
        self.product_bias_ = self.mean_ @ self.product_matrix_
        self.relation_at_ = np.searchsorted(self.product_columns_, self.relation_columns_)
        self.window_at_ = np.searchsorted(self.product_columns_, self.window_columns_)
        # Which sensor's own change best explains a drift (see _drift_blame).
        scale = getattr(self, "drift_scale_", None)
        if scale is not None:
            # Row j: a unit change of sensor j (standardized) as the drift
            # columns' residuals see it, each in its own normal scale.
            cols = self.drift_columns_
            signature = (np.eye(d) - self.coef_.T)[:, cols] / scale[None, cols]
            signature[~self.checked_] = 0.0
            norm = np.einsum("ij,ij->i", signature, signature)
            self.drift_signature_ = np.ascontiguousarray(
                (signature / np.sqrt(np.where(norm > 0, norm, 1.0))[:, None]).T
            )
        # The limits on the columns each check is in force for, gathered once
        # here rather than on every micro-batch.
        self.freeze_columns_ = self._freeze_columns()
        self.step_center_ = np.ascontiguousarray(self.center_[:, self.step_columns_])
        self.step_inv_half_ = np.ascontiguousarray(self.inv_half_[:, self.step_columns_])
        self.relation_column_limit_ = np.ascontiguousarray(
            self.relation_limit_[:, self.relation_columns_]
        )

    def _hot_tables(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Freeze columns, step centre and inverse half-width on the step
        columns, relation limits on the relation columns (gathered in
        :meth:`_step_bounds`; gathered here for checks saved before that)."""
        cols = getattr(self, "freeze_columns_", None)
        if cols is None:
            return (
                self._freeze_columns(),
                self.center_[:, self.step_columns_],
                self.inv_half_[:, self.step_columns_],
                self.relation_limit_[:, self.relation_columns_],
            )
        return cols, self.step_center_, self.step_inv_half_, self.relation_column_limit_

    def _untrusted(self, X: np.ndarray, starts: np.ndarray) -> np.ndarray:
        """(check, sensor) pairs that normal rows unseen by the limits contradict.

        With three or more gap-free segments (batches, runs) each segment is
        checked against limits learned from the others: a batch line shows
        whether its levels recur. Otherwise the most recent
        ``validation_fraction`` of the rows is checked against limits from the
        older rows; and because a short stretch of a slowly wandering sensor
        shows neither its range nor its relations (a casing temperature over
        a few minutes), its step and relation checks also need an effective
        sample size of at least :data:`MIN_EFFECTIVE_ROWS` in the fit rows.
        """
        n, d = X.shape
        pieces = self._validation_pieces(n, starts)
        fired = np.zeros((5, d))
        disabled = np.zeros((5, d), dtype=bool)
        if not pieces:
            return disabled
        if len(pieces) > 1:
            for keep, val in pieces:
                a, b = val.start, val.stop
                rest_starts = np.array(
                    [0, *[s - (b - a if s >= b else 0) for s in starts if s not in (0, a)]],
                    dtype=np.intp,
                )
                self._fit_limits(X[keep], np.unique(rest_starts))
                sev, mode, _ = self._severities(X[a:b], None, None)
                fired += np.array([(v[mode >= 0] > 1.0).sum(axis=0) for v in sev])
            n_val = n
        else:
            n_fit = pieces[0][1].start
            n_val = n - n_fit
            few = effective_rows(self._within_modes(X[:n_fit])) < MIN_EFFECTIVE_ROWS
            if getattr(self, "bounded_regressors", False):
                # Set before the validation fit, kept for the final one.
                self.regressors_ = ~few
            self._fit_limits(X[:n_fit], starts[starts < n_fit])
            for a, b in itertools.pairwise([n_fit, *starts[starts > n_fit].tolist(), n]):
                sev, mode, _ = self._severities(X[a:b], None, None)
                fired += np.array([(v[mode >= 0] > 1.0).sum(axis=0) for v in sev])
            few_resid = effective_rows(self._residuals(X[:n_fit])) < MIN_EFFECTIVE_ROWS
            disabled[1] |= few
            disabled[2] |= few_resid
            # The drift check learns the extreme of a w-row mean: the fit rows
            # must hold as many independent *means* as the others need rows,
            # and the residual must forget faster than w rows -- else its mean
            # follows a slow wander (a process state the regressions do not
            # capture) that a fit window shows only part of.
            resid_rows = effective_rows(self._residuals(X[:n_fit]))
            for row, w in ((3, self._drift_rows()), (4, self._window_rows("noise_window"))):
                w = max(w, 1)
                # The drift check's residual must forget within 10 rows
                # however long its window: judged by its 20-row window, the
                # slow line's residuals that carry a wander passed (0.7 points
                # more FAR there).
                memory = min(w, RESIDUAL_MEMORY_ROWS) if row == 3 else w
                disabled[row] |= (n_fit / w < MIN_EFFECTIVE_ROWS) | (resid_rows < n_fit / memory)
        return disabled | (fired / n_val > self.validation_max_rate)

    def _within_modes(self, X: np.ndarray) -> np.ndarray:
        """Each sensor's readings less their mean in the row's operating mode.

        The evidence a range or a regressor needs is how much a sensor moves
        *within* a mode: a motor current that follows a conveyor's on/off
        state is a slow signal as a whole (its lag-10 autocorrelation is near
        1, a few effective rows per block), yet within each state it is white
        noise around its level, and its range per mode (what the step check
        learns) is well established. A slowly wandering sensor wanders within
        its mode too, so it still counts as few rows. Modes here are the
        combinations of the 0/1 and phase channels kept for modes.
        """
        channels = _switch_columns(X) | getattr(self, "phase_channels_", np.zeros(X.shape[1], bool))
        aside = getattr(self, "channels_set_aside_", None)
        if aside is not None:
            channels &= ~aside
        if not channels.any():
            return X
        _, mode = np.unique(X[:, channels], axis=0, return_inverse=True)
        mode = mode.ravel()
        count = np.bincount(mode).astype(np.float64)
        means = np.stack([np.bincount(mode, weights=X[:, j]) for j in range(X.shape[1])], axis=1)
        return X - (means / count[:, None])[mode]

    def _fit_limits(self, X: np.ndarray, starts: np.ndarray) -> None:
        n, d = X.shape
        self.n_features_in_ = d
        phase = getattr(self, "phase_channels_", None)
        phase = np.zeros(d, dtype=bool) if phase is None else phase.copy()
        state = _switch_columns(X) & ~phase
        aside = getattr(self, "channels_set_aside_", None)
        if aside is not None:
            state &= ~aside
        if state.sum() > _MAX_STATE_CHANNELS:
            # More switches than a mode code can hold: keep the first ones.
            state[np.flatnonzero(state)[_MAX_STATE_CHANNELS:]] = False
        n_state = int(state.sum())
        room = (_MAX_STATE_CHANNELS - n_state) // _PHASE_BITS
        if phase.sum() > room:
            phase[np.flatnonzero(phase)[room:]] = False
        self.state_channels_ = state
        self.bits_ = np.left_shift(np.int64(1), np.arange(n_state, dtype=np.int64))
        self._phase_tables(X, phase, n_state)
        codes = self._codes(X)
        self.modes_, mode_idx, self.mode_rows_ = np.unique(
            codes, return_inverse=True, return_counts=True
        )
        lo_all, hi_all = X.min(axis=0), X.max(axis=0)
        self.checked_ = ~state & ~phase & (hi_all > lo_all)
        self.flat_ = ~state & ~phase & (hi_all == lo_all)
        n_modes = self.modes_.size
        big = self.mode_rows_ >= self.min_mode_rows

        # Freeze: longest unchanged run within a mode.
        runs = self._runs(X, mode_idx, starts)
        groups = _groups(mode_idx, n_modes)
        max_run = self._extreme(runs, groups, upper=True)
        limit = (self.freeze_factor or 0.0) * max_run + self.freeze_slack
        limit[~big] = _NO_LIMIT
        if self.freeze_factor is None:
            limit[:] = _NO_LIMIT
        limit[:, ~self.checked_] = _NO_LIMIT
        self.freeze_limit_ = limit

        # Step: the mode's range, widened.
        margin = (self.range_margin or 0.0) * (hi_all - lo_all)
        low = self._extreme(X, groups, upper=False, trim=0.0)
        high = self._extreme(X, groups, upper=True, trim=0.0)
        low[~big], high[~big] = lo_all, hi_all
        self.low_ = np.where(self.checked_, low - margin, -np.inf)
        self.high_ = np.where(self.checked_, high + margin, np.inf)
        if self.flat_.any():
            # One value in every mode: any reading away from it, beyond rounding.
            tol = READING_RESOLUTION * np.maximum(np.abs(lo_all), 1.0)
            self.low_[:, self.flat_] = (lo_all - tol)[self.flat_]
            self.high_[:, self.flat_] = (hi_all + tol)[self.flat_]
        if self.range_margin is None:
            self.low_[:], self.high_[:] = -np.inf, np.inf

        # Relation: each sensor from all the others (ridge on standardized data).
        self.mean_ = X.mean(axis=0)
        scale = X.std(axis=0)
        self.scale_ = np.where(scale > 1e-12, scale, 1.0)
        self.coef_ = np.zeros((d, d))
        self.relation_limit_ = np.full((n_modes, d), _NO_LIMIT)
        self.drift_limit_ = np.full((n_modes, d), _NO_LIMIT)
        self.noise_limit_ = np.full((n_modes, d), _NO_LIMIT)
        if self.relation_factor is not None and self.checked_.sum() >= 2:
            Z = (X - self.mean_) / self.scale_
            gram = Z.T @ Z / n
            inputs = getattr(self, "regressors_", np.ones(d, dtype=bool))
            for j in np.flatnonzero(self.checked_):
                others = inputs.copy()
                others[j] = False
                if not others.any():
                    continue
                A = gram[np.ix_(others, others)] + self.ridge * np.eye(int(others.sum()))
                self.coef_[j, others] = np.linalg.solve(A, gram[others, j])
            resid = np.abs(self._residuals(X))
            worst = self._extreme(resid, groups, upper=True, trim=0.0)
            overall = resid.max(axis=0)
            worst[~big] = overall
            limit = self.relation_factor * worst
            # A sensor the others predict exactly (a zero residual) is judged
            # against the resolution of its own readings, not against 0.
            floor = READING_RESOLUTION * np.maximum(np.abs(self.mean_), 1.0) / self.scale_
            limit = np.maximum(limit, floor)
            limit[:, ~self.checked_] = _NO_LIMIT
            self.relation_limit_ = limit
            w = self._drift_rows()
            if w:
                resid_signed = self._residuals(X)
                drift = _by_segment(resid_signed, starts, w, _window_mean)
                valid = ~np.isnan(drift[:, 0])
                if valid.any():
                    held = np.abs(drift[valid])
                    worst = self._extreme(
                        held, _groups(mode_idx[valid], n_modes), upper=True, trim=0.0
                    )
                    # A mode too small (or too short) for its own limit uses all rows'.
                    rows_in = np.bincount(mode_idx[valid], minlength=n_modes)
                    worst[~big | (rows_in == 0)] = held.max(axis=0)
                    limit = np.maximum(self.relation_factor * worst, floor)
                    limit = np.maximum(limit, self._drift_tail(drift[valid], resid_signed))
                    limit[:, ~self.checked_] = _NO_LIMIT
                    self.drift_limit_ = limit
                    self.drift_scale_ = np.maximum(held.max(axis=0), floor)
            w = self._window_rows("noise_window")
            if w > 1:
                # A window across a change of mode mixes two modes' residual
                # levels: the noise check judges only windows inside one mode.
                changes = np.flatnonzero(np.diff(mode_idx)) + 1
                spread = _by_segment(
                    self._residuals(X), np.union1d(starts, changes), w, _window_variance
                )
                valid = ~np.isnan(spread[:, 0])
                if valid.any():
                    held = spread[valid]
                    worst = self._extreme(
                        held, _groups(mode_idx[valid], n_modes), upper=True, trim=0.0
                    )
                    rows_in = np.bincount(mode_idx[valid], minlength=n_modes)
                    worst[~big | (rows_in == 0)] = held.max(axis=0)
                    limit = np.maximum(self.relation_factor * worst, floor**2)
                    limit = np.maximum(limit, self._noise_tail(held))
                    limit[:, ~self.checked_] = _NO_LIMIT
                    # A 0/1 channel judged as a sensor has no precision to lose.
                    limit[:, _switch_columns(X)] = _NO_LIMIT
                    self.noise_limit_ = limit
        self._step_bounds()

    def _extreme(
        self, values: np.ndarray, groups: list[np.ndarray], upper: bool, trim: float | None = None
    ) -> np.ndarray:
        """Per-group trimmed extreme: the ``1 - trim`` (or ``trim``) quantile.

        With ``trim = 0`` this is the plain max (min). Trimming lets a
        minority of anomalous training rows -- up to ``trim`` of a mode's rows
        for each sensor -- set no limit: a frozen stretch, a spike or a broken
        relation that slipped into an unlabelled training window.
        """
        trim = self.trim if trim is None else trim
        out = np.zeros((len(groups), values.shape[1]))
        q = 1.0 - trim if upper else trim
        for g, rows in enumerate(groups):
            if rows.size == 0:
                continue
            part = values[rows]
            if trim <= 0:
                out[g] = part.max(axis=0) if upper else part.min(axis=0)
            else:
                out[g] = np.quantile(part, q, axis=0, method="higher" if upper else "lower")
        return out

    def _phase_tables(self, X: np.ndarray, phase: np.ndarray, n_state: int) -> None:
        """Seen values of each phase channel and its place in the mode key."""
        self.phase_channels_ = phase
        self.phase_columns_ = np.flatnonzero(phase)
        p = self.phase_columns_.size
        self.phase_values_ = np.full((p, MAX_PHASE_VALUES + 1), np.inf)
        for k, j in enumerate(self.phase_columns_):
            values = np.unique(X[:, j])[:MAX_PHASE_VALUES]
            self.phase_values_[k, : values.size] = values
        self.phase_shift_ = n_state + _PHASE_BITS * np.arange(p, dtype=np.int64)

    @property
    def mode_channels(self) -> np.ndarray:
        """Bool per sensor: a state or phase channel (what names the mode)."""
        check_is_fitted(self, "state_channels_")
        phase = getattr(self, "phase_channels_", None)
        return self.state_channels_ if phase is None else self.state_channels_ | phase

    def _codes(self, X: np.ndarray) -> np.ndarray:
        phase_cols = getattr(self, "phase_columns_", None)
        has_phase = phase_cols is not None and phase_cols.size > 0
        if not self.bits_.size:
            codes = np.zeros(X.shape[0], dtype=np.int64)
        else:
            bits = X[:, self.state_channels_] >= 0.5
            codes = bits.astype(np.int64) @ self.bits_
        if not has_phase:
            return codes
        # A phase value's index among the seen values, in its 4 bits; a value
        # not seen in training (or not an integer) makes the key -1: unseen.
        idx = self._phase_indices(X)
        codes += (np.maximum(idx, 0) << self.phase_shift_[None, :]).sum(axis=1)
        codes[(idx < 0).any(axis=1)] = -1
        return codes

    def _phase_indices(self, X: np.ndarray) -> np.ndarray:
        """Per row and phase channel: the value's index among the values seen
        in training (``phase_values_``), -1 for a value never seen."""
        idx = np.empty((X.shape[0], self.phase_columns_.size), dtype=np.int64)
        for k, j in enumerate(self.phase_columns_):
            table = self.phase_values_[k]
            i = np.searchsorted(table, X[:, j])
            idx[:, k] = np.where(table[np.minimum(i, table.size - 1)] == X[:, j], i, -1)
        return idx

    def modes_of(self, X: np.ndarray) -> np.ndarray:
        """Operating mode of each row: an index into ``modes_``, -1 if unseen."""
        check_is_fitted(self, "modes_")
        return self._mode_index(_finite_2d(X))

    def _mode_index(self, X: np.ndarray) -> np.ndarray:
        codes = self._codes(X)
        idx = np.searchsorted(self.modes_, codes)
        idx = np.minimum(idx, self.modes_.size - 1)
        return np.where(self.modes_[idx] == codes, idx, -1)

    def _runs(
        self,
        X: np.ndarray,
        mode_idx: np.ndarray,
        starts: np.ndarray | None,
        prev: np.ndarray | None = None,
        state: CheckState | None = None,
        columns: np.ndarray | None = None,
    ) -> np.ndarray:
        """Unchanged-in-mode run length per row, for ``columns`` (others 0)."""
        n, d = X.shape
        runs, repeated = self._run_lengths(X, mode_idx, starts, prev, state, columns)
        return runs if repeated else np.zeros((n, d), dtype=np.int64)

    def _run_lengths(
        self,
        X: np.ndarray,
        mode_idx: np.ndarray,
        starts: np.ndarray | None,
        prev: np.ndarray | None = None,
        state: CheckState | None = None,
        columns: np.ndarray | None = None,
    ) -> tuple[np.ndarray | None, bool]:
        """:meth:`_runs` and whether any run is non-zero; (None, False) when none is.

        The run lengths are built only where a reading repeated: a noisy
        sensor never repeats one, the usual case, and then nothing is allocated.
        """
        n, d = X.shape
        cols = np.arange(d) if columns is None else columns
        if cols.size == 0 or n == 0:
            return None, False
        Xc = X if cols.size == d else X[:, cols]
        same = np.empty((n, cols.size), dtype=bool)
        np.equal(Xc[1:], Xc[:-1], out=same[1:])
        if self.modes_.size > 1:
            same[1:] &= (mode_idx[1:] == mode_idx[:-1])[:, None]
        carry = None
        if prev is not None and state is not None:
            np.equal(Xc[0], prev[cols], out=same[0])
            same[0] &= mode_idx[0] == state.mode
            carry = state.runs[cols]
        else:
            same[0] = False
        if starts is not None:
            same[np.asarray(starts, dtype=np.intp)] = False
        if not same.any():
            return None, False
        runs = np.zeros((n, d), dtype=np.int64)
        runs[:, cols] = unchanged_runs(same, carry)
        return runs, True

    def _residuals(self, X: np.ndarray) -> np.ndarray:
        Z = (X - self.mean_) / self.scale_
        # Row-independent product: a row's residual never depends on the batch.
        return Z - ordered_matmul(Z, self.coef_.T)

    def _drift_tail(self, drift: np.ndarray, resid: np.ndarray) -> np.ndarray:
        """Per-sensor floor of the drift limits from the spread of the fit rows' means.

        The largest of the few hundred independent means a fit window holds
        is no bound for the thousands a line produces later, and every
        checked sensor is one more chance of a false alarm. So the limit is
        also at least ``z`` robust standard deviations of the means, ``z``
        putting :data:`DRIFT_ROW_RATE` of the rows over the limit of *some*
        sensor under a normal tail, and the spread inflated for the
        regressions having been fitted on these very rows
        (``sqrt(n / (n - p))`` with ``p`` regressors and ``n`` the residual's
        effective rows: autocorrelated rows teach a regression less).
        """
        checked = max(int(self.checked_.sum()), 1)
        z = float(ndtri(1.0 - DRIFT_ROW_RATE / (2 * checked)))
        spread = 1.4826 * np.median(np.abs(drift - np.median(drift, axis=0)), axis=0)
        p = (self.coef_ != 0).sum(axis=1)
        n = np.maximum(effective_rows(resid), 1.0)
        optimism = np.sqrt(n / np.maximum(n - p, 1.0))
        return z * spread * optimism

    def _drift_rows(self) -> int:
        """Rows the drift check averages over (0: no drift check)."""
        return self._window_rows("drift_window")

    def _window_rows(self, name: str) -> int:
        """Rows of the windowed relation check ``name`` (0: switched off)."""
        w = getattr(self, name, None)
        if w is None or self.relation_factor is None:
            return 0
        return max(int(w), 1)

    def _noise_tail(self, spread: np.ndarray) -> np.ndarray:
        """Per-sensor floor of the noise limits, as :meth:`_drift_tail` for the means.

        A window's variance is skewed (a scaled chi-square), so the normal
        tail is put on its logarithm: ``exp(median + z * robust sd)`` of the
        log variances of the fit rows, ``z`` spending
        :data:`DRIFT_ROW_RATE` over the checked sensors (one-sided).
        """
        checked = max(int(self.checked_.sum()), 1)
        z = float(ndtri(1.0 - DRIFT_ROW_RATE / checked))
        logs = np.log(np.maximum(spread, 1e-300))
        centre = np.median(logs, axis=0)
        robust_sd = 1.4826 * np.median(np.abs(logs - centre), axis=0)
        return np.exp(centre + z * robust_sd)

    def _noise(
        self,
        X: np.ndarray,
        context: np.ndarray | None,
        recent: tuple[np.ndarray, int] | None = None,
    ) -> np.ndarray | None:
        """Residual variances on the noise columns, (n, n_noise), over each row's
        last ``noise_window`` rows, ``context`` included; 0 where fewer are known.
        ``recent``: :meth:`_window_residuals` of the same rows, if made already."""
        w = self._window_rows("noise_window")
        cols = getattr(self, "noise_columns_", None)
        if w < 2 or cols is None or not cols.size:
            return None
        R, known = self._columns_of(recent or self._window_residuals(X, context), w, "noise")
        n = X.shape[0]
        out = np.zeros((n, R.shape[1]))
        if R.shape[0] >= w:
            first = max(w - 1 - known, 0)
            out[first:] = _window_variance(R, w)[first + known - (w - 1) :]
            if self.modes_.size > 1:
                # Only windows inside one mode count (as in fit): the rows
                # since the last change of mode, context rows included.
                rows = X if not known else np.vstack([context[context.shape[0] - known :], X])
                mode = self._mode_index(rows)
                i = np.arange(mode.size)
                changed = np.r_[True, mode[1:] != mode[:-1]]
                since = i - np.maximum.accumulate(np.where(changed, i, 0)) + 1
                out[since[known:] < w] = 0.0
        return out

    def _window_residuals(
        self, X: np.ndarray, context: np.ndarray | None
    ) -> tuple[np.ndarray, int]:
        """Residuals on the windowed checks' columns of the finite context rows
        the longer window needs and of ``X``, and how many are context rows."""
        rows, known = self._with_context(X, context)
        R = ordered_matmul(rows, self.window_matrix_)
        R -= self.window_bias_
        return R, known

    def _with_context(self, X: np.ndarray, context: np.ndarray | None) -> tuple[np.ndarray, int]:
        """``X`` after the finite context rows the longer window needs, and their count."""
        w = max(self._drift_rows(), self._window_rows("noise_window"))
        ctx = None
        if context is not None and context.shape[0] and w > 1:
            ctx = context[-(w - 1) :]
            bad = np.flatnonzero(~np.isfinite(ctx).all(axis=1))
            ctx = ctx[bad[-1] + 1 :] if bad.size else ctx
        rows = X if ctx is None or not ctx.shape[0] else np.vstack([ctx, X])
        return rows, rows.shape[0] - X.shape[0]

    def _columns_of(
        self, recent: tuple[np.ndarray, int], w: int, check: str
    ) -> tuple[np.ndarray, int]:
        """One check's columns of :meth:`_window_residuals`, with at most
        ``w - 1`` context rows."""
        R, known = recent
        keep = min(known, w - 1)
        at = self.drift_at_ if check == "drift" else self.noise_at_
        return R[known - keep :, at], keep

    def _drift(
        self,
        X: np.ndarray,
        context: np.ndarray | None,
        recent: tuple[np.ndarray, int] | None = None,
    ) -> np.ndarray | None:
        """Signed drift residuals on the drift columns, (n, n_drift): the mean
        relation residual of each row's last ``drift_window`` rows, ``context``
        (the rows before ``X``) included; 0 where fewer rows are known.
        ``recent``: :meth:`_window_residuals` of the same rows, if made already."""
        w = self._drift_rows()
        cols = getattr(self, "drift_columns_", None)
        if not w or cols is None or not cols.size:
            return None
        n = X.shape[0]
        R, known = self._columns_of(recent or self._window_residuals(X, context), w, "drift")
        out = np.zeros((n, R.shape[1]))
        if R.shape[0] >= w:
            first = max(w - 1 - known, 0)  # first row of X with a full window
            out[first:] = _window_sum(R, w)[first + known - (w - 1) :] / w
        return out

    def _drift_blame(self, drift: np.ndarray) -> np.ndarray:
        """The sensor whose own lasting change best explains each row's drift.

        A lasting offset on one sensor moves the residual of every sensor it
        helps predict, and the drift limits are tight, so the largest
        exceedance often sits on a neighbour. The reconstruction-based
        contribution (Alcala and Qin, 2009) asks instead which single
        sensor's change, seen through the regressions, reproduces the
        residual pattern: the largest projection of the scaled residuals on
        a sensor's signature (``drift_signature_``). A sensor the
        regressions do not use and whose own drift is not checked has no
        signature and is never blamed.

        Parameters
        ----------
        drift : ndarray of shape (n, n_drift)
            Signed drift residuals (:meth:`_drift`) of the rows to explain.
        """
        scaled = drift / self.drift_scale_[self.drift_columns_]
        return np.abs(ordered_matmul(scaled, self.drift_signature_)).argmax(axis=1)

    # -- scoring -------------------------------------------------------------
    def check(
        self,
        X: np.ndarray,
        prev: np.ndarray | None,
        state: CheckState | None,
        context: np.ndarray | None = None,
    ) -> tuple[CheckResult, CheckState]:
        """Run the checks on a batch; pure (the state is passed in and out).

        Parameters
        ----------
        X : ndarray of shape (n, n_sensors)
            Rows in sensor units, imputed, in time order.
        prev : ndarray of shape (n_sensors,) or None
            The row before ``X`` (imputed); None at stream start.
        state : CheckState or None
            As returned for the previous batch; None at stream start.
        context : ndarray of shape (n_context, n_sensors) or None
            The rows before ``X`` (the scorer's trailing context, imputed),
            for the drift check's average; rows holding NaN are not used.
        """
        check_is_fitted(self, "freeze_limit_")
        return self._check_rows(_finite_2d(X), prev, state, context)

    def _check_rows(
        self,
        X: np.ndarray,
        prev: np.ndarray | None,
        state: CheckState | None,
        context: np.ndarray | None = None,
    ) -> tuple[CheckResult, CheckState]:
        """:meth:`check` on rows already known finite float64 (the scorer's
        imputed rows), without the validation: the hot path."""
        n, d = X.shape
        # No state or phase channels: every row is in the one mode.
        mode = self._mode_index(X) if self.modes_.size > 1 else np.zeros(n, dtype=np.intp)
        seen = mode >= 0
        all_seen = bool(seen.all())
        one = self.modes_.size == 1
        m = None if one else np.where(seen, mode, 0)

        def limits(table: np.ndarray) -> np.ndarray:
            return table[:1] if one else table[m]

        # Severities as in _severities, but each check only on the columns it
        # is in force for, and full-width only on the rows where one fired
        # (few). A quiet batch (nothing over a limit: one flat test per check)
        # builds no (rows, sensors) severity arrays and no row masks.
        cols, step_center, step_inv_half, rel_limits = self._hot_tables()
        runs, repeated = self._run_lengths(
            X, mode, None, prev, state if prev is not None else None, cols
        )
        new_state = CheckState(
            runs=runs[-1].copy() if repeated else np.zeros(d, dtype=np.int64),
            mode=int(mode[-1]),
        )
        hot_rows = None

        def fired(over: np.ndarray) -> None:
            nonlocal hot_rows
            if not all_seen:
                over &= seen[:, None]  # severities are 0 in an unseen mode
            if over.any():
                rows = over.any(axis=1)
                hot_rows = rows if hot_rows is None else hot_rows | rows

        freeze = None
        if repeated:
            freeze = runs / limits(self.freeze_limit_)
            fired(freeze > 1.0)
        step = None
        step_cols = self.step_columns_
        if step_cols.size:
            step = X[:, step_cols]
            step -= limits(step_center)
            np.abs(step, out=step)
            step *= limits(step_inv_half)
            fired(step > 1.0)
        resid = recent = None
        rel_cols = self.relation_columns_
        if getattr(self, "product_matrix_", None) is not None and self.window_columns_.size:
            # One product for the row-wise and the windowed relation checks.
            rows, known = self._with_context(X, context)
            product = ordered_matmul(rows, self.product_matrix_)
            product -= self.product_bias_
            # Column gathers only where the checks' columns differ (usually not).
            win = self.window_at_
            same = win.size == product.shape[1]
            recent = (product if same else product[:, win], known)
            if rel_cols.size:
                rel = self.relation_at_
                resid = np.abs(
                    product[known:] if rel.size == product.shape[1] else product[known:, rel]
                )
        elif rel_cols.size:
            # Residuals folded into one product: (X - mean) / scale @ (I - C') = X M - b.
            resid = ordered_matmul(X, self.relation_matrix_)
            resid -= self.relation_bias_
            np.abs(resid, out=resid)
        if resid is not None:
            # Severity |r| / limit > 1 implies |r| > limit: the rows where that
            # holds are the only candidates, and the division is made there.
            rel_limit = limits(rel_limits)
            over = resid > rel_limit
            if not all_seen:
                over &= seen[:, None]
            if over.any():
                cand = np.flatnonzero(over.any(axis=1))
                sev = resid[cand] / (rel_limit if one else rel_limit[cand])
                rows = np.zeros(n, dtype=bool)
                rows[cand] = (sev > 1.0).any(axis=1)
                hot_rows = rows if hot_rows is None else hot_rows | rows
        signed = self._drift(X, context, recent)
        drift = drift_limit = None
        if signed is not None:
            drift = np.abs(signed)
            drift_limit = limits(self.drift_column_limit_)
            fired(drift > drift_limit)
        noise = self._noise(X, context, recent)
        noise_limit = None
        if noise is not None:
            noise_limit = limits(self.noise_column_limit_)
            fired(noise > noise_limit)
        if hot_rows is None:
            hot_rows = np.zeros(n, dtype=bool)
        row_reason = np.zeros(n, dtype=np.int8)
        sensor = np.full(n, -1, dtype=np.intp)
        hot = np.flatnonzero(hot_rows)
        if hot.size:
            # Rank the checks only on the rows where one fired: per sensor the
            # strongest check over its limit (the earlier one on a tie), in
            # place, each check on its own columns only.
            severity = np.zeros((hot.size, d))
            reason = np.zeros((hot.size, d), dtype=np.int8)
            rel = None
            if resid is not None:
                rel = resid[hot] / (rel_limit if one else rel_limit[hot])
            for code, sev, sev_cols in (
                (FREEZE, freeze if freeze is None else freeze[hot], None),
                (STEP, step if step is None else step[hot], step_cols),
                (RELATION, rel, rel_cols),
            ):
                if sev is None:
                    continue
                whole = sev_cols is None or sev_cols.size == d
                sev_now = severity if whole else severity[:, sev_cols]
                reason_now = reason if whole else reason[:, sev_cols]
                stronger = sev > sev_now
                stronger &= sev > 1.0
                np.copyto(sev_now, sev, where=stronger)
                reason_now[stronger] = code
                if not whole:
                    severity[:, sev_cols] = sev_now
                    reason[:, sev_cols] = reason_now
            # The windowed checks speak only where the row-wise checks are
            # quiet: a reading that jumped or froze is named by them (with its
            # own sensor); a drift, then a sensor gone noisy, is what is left.
            if drift is not None:
                _where_quiet(
                    severity,
                    reason,
                    drift[hot] / (drift_limit if one else drift_limit[hot]),
                    None if all_seen else ~seen[hot],
                    lambda rows, _over: self._drift_blame(signed[hot[rows]]),
                )
            if noise is not None:
                _where_quiet(
                    severity,
                    reason,
                    noise[hot] / (noise_limit if one else noise_limit[hot]),
                    None if all_seen else ~seen[hot],
                    lambda rows, over: self.noise_columns_[over[rows].argmax(axis=1)],
                )
            blamed = severity.argmax(axis=1)
            row_reason[hot] = reason[np.arange(hot.size), blamed]
            sensor[hot] = blamed
        if not all_seen:
            unseen = np.flatnonzero(~seen)
            row_reason[unseen] = UNSEEN_MODE
            sensor[unseen] = self._new_switch(X[unseen])
        return CheckResult(reason=row_reason, sensor=sensor, mode=mode), new_state

    def _severities(
        self, X: np.ndarray, prev: np.ndarray | None, state: CheckState | None
    ) -> tuple[tuple[np.ndarray, ...], np.ndarray, np.ndarray]:
        """Freeze, step, relation, drift and noise severities (> 1 fires; 0 in unseen modes).

        Only the checks in force for some sensor are computed, and with one
        mode the limits broadcast instead of being gathered per row. Used by
        :meth:`fit`'s validation; the scoring hot path, :meth:`_check_rows`,
        gets the same values without building these full-width arrays.
        """
        mode = self._mode_index(X)
        seen = mode >= 0
        m = np.where(seen, mode, 0)
        one = self.modes_.size == 1

        def limits(table: np.ndarray) -> np.ndarray:
            return table[:1] if one else table[m]

        runs = self._runs(
            X, mode, None, prev, state if prev is not None else None, self._freeze_columns()
        )
        freeze = step = rel = np.zeros(X.shape)
        if runs.any():
            freeze = runs / limits(self.freeze_limit_)
        cols = self.step_columns_
        if cols.size:
            sub = X[:, cols] - limits(self.center_[:, cols])
            np.abs(sub, out=sub)
            sub *= limits(self.inv_half_[:, cols])
            step = np.zeros(X.shape)
            step[:, cols] = sub
        cols = self.relation_columns_
        if cols.size:
            # Residuals folded into one product: (X - mean) / scale @ (I - C') = X M - b.
            sub = ordered_matmul(X, self.relation_matrix_)
            sub -= self.relation_bias_
            np.abs(sub, out=sub)
            sub /= limits(self.relation_limit_[:, cols])
            rel = np.zeros(X.shape)
            rel[:, cols] = sub
        drift = np.zeros(X.shape)
        sub = self._drift(X, None)
        if sub is not None:
            np.abs(sub, out=sub)
            sub /= limits(self.drift_limit_[:, self.drift_columns_])
            drift[:, self.drift_columns_] = sub
        noise = np.zeros(X.shape)
        sub = self._noise(X, None)
        if sub is not None:
            sub /= limits(self.noise_limit_[:, self.noise_columns_])
            noise[:, self.noise_columns_] = sub
        if not seen.all():
            freeze, step, rel, drift, noise = (
                np.where(seen[:, None], v, 0.0) for v in (freeze, step, rel, drift, noise)
            )
        return (freeze, step, rel, drift, noise), mode, runs

    def _new_switch(self, X: np.ndarray) -> np.ndarray:
        """State or phase channel that differs from the nearest seen mode (first such).

        A mode's key is compared channel by channel: a state channel's bit,
        a phase channel's value index (-1 for a value never seen, which
        differs from every seen mode's).
        """
        channels = np.flatnonzero(self.state_channels_)
        bits = (X[:, self.state_channels_] >= 0.5).astype(np.int64)
        seen = ((self.modes_[:, None] & self.bits_[None, :]) > 0).astype(np.int64)
        phase_cols = getattr(self, "phase_columns_", None)
        if phase_cols is not None and phase_cols.size:
            mask = np.int64((1 << _PHASE_BITS) - 1)
            idx = self._phase_indices(X)
            seen_idx = (self.modes_[:, None] >> self.phase_shift_[None, :]) & mask
            channels = np.concatenate([channels, phase_cols])
            bits = np.concatenate([bits, idx], axis=1)
            seen = np.concatenate([seen, seen_idx], axis=1)
        differs_all = bits[:, None, :] != seen[None, :, :]
        distance = differs_all.sum(axis=2)
        nearest = seen[distance.argmin(axis=1)]
        differs = bits != nearest
        return channels[differs.argmax(axis=1)]


def _switch_columns(X: np.ndarray) -> np.ndarray:
    """Columns that hold only 0 and 1 and both: candidate state channels."""
    is01 = np.all((X == 0.0) | (X == 1.0), axis=0)
    return is01 & (X.max(axis=0) == 1.0) & (X.min(axis=0) == 0.0)


def _where_quiet(
    severity: np.ndarray,
    reason: np.ndarray,
    over: np.ndarray,
    unseen: np.ndarray | None,
    blame: Callable[[np.ndarray, np.ndarray], np.ndarray],
) -> None:
    """Enter a windowed check's severities on the rows no other check fired on.

    ``over`` holds the check's severities per row and column (its own
    columns); on each such row over 1 the strongest is written, as reason
    ``relation``, on the sensor ``blame(rows, over)`` names. In place.
    """
    if unseen is not None:
        over[unseen] = 0.0
    strongest = over.max(axis=1)
    quiet = np.flatnonzero((strongest > 1.0) & ~(severity > 1.0).any(axis=1))
    if quiet.size:
        who = blame(quiet, over)
        severity[quiet, who] = strongest[quiet]
        reason[quiet, who] = RELATION


def _window_sum(R: np.ndarray, w: int) -> np.ndarray:
    """Sums of ``w`` consecutive rows, one per full window (``len(R) - w + 1``).

    Built by doubling (sums of 2, 4, 8 ... rows, then the binary digits of
    ``w`` joined), so a window costs about ``2 log2(w)`` array additions
    instead of ``w``. Every row's sum is the same sequence of additions of
    the same rows, so it is the same bits however the rows were split into
    batches -- a running cumsum would differ in the last bits with the
    batch's first row.
    """
    n = R.shape[0] - w + 1
    total = None  # sums of the `span` rows ending at each row (from row `w - 1`)
    span = 0
    block, size = R, 1  # block[i]: sum of `size` rows ending at row i + size - 1
    while True:
        if w & size:
            # Add the `size` rows just before the `span` rows already summed.
            start = w - 1 - span - (size - 1)
            part = block[start : start + n]
            if total is None:
                total = part.copy()
            else:
                total += part
            span += size
        if size * 2 > w:
            break
        block = block[:-size] + block[size:]
        size *= 2
    return total


def _by_segment(
    R: np.ndarray,
    starts: np.ndarray,
    w: int,
    statistic: Callable[[np.ndarray, int], np.ndarray],
) -> np.ndarray:
    """``statistic`` of each row's last ``w`` rows within its gap-free segment
    (segments start at ``starts``); NaN where the segment holds fewer, as the
    scorer's warm-up rows."""
    n = R.shape[0]
    out = np.full(R.shape, np.nan)
    bounds = np.unique(np.concatenate([[0], np.asarray(starts, dtype=np.intp)]))
    for a, b in itertools.pairwise([*bounds.tolist(), n]):
        if b - a >= w:
            out[a + w - 1 : b] = statistic(R[a:b], w)
    return out


def _window_mean(R: np.ndarray, w: int) -> np.ndarray:
    """Mean of ``w`` consecutive rows, one per full window (:func:`_window_sum`)."""
    return _window_sum(R, w) / w


def _window_variance(R: np.ndarray, w: int) -> np.ndarray:
    """Variance of ``w`` consecutive rows around their own mean, one per full window.

    From the window's sums of values and of squares, each added in one fixed
    order (:func:`_window_sum`), so a row's value does not depend on batching.
    """
    k = R.shape[1]
    # Values and squares side by side: one pass of window additions for both.
    sums = _window_sum(np.hstack([R, R * R]), w)
    sums /= w
    var = sums[:, k:]
    mean = sums[:, :k]
    var -= mean * mean
    return np.maximum(var, 0.0, out=var)


def _groups(index: np.ndarray, n_groups: int) -> list[np.ndarray]:
    """Row indices of each group, in row order."""
    order = np.argsort(index, kind="stable")
    bounds = np.searchsorted(index[order], np.arange(n_groups + 1))
    return [order[a:b] for a, b in itertools.pairwise(bounds)]


def effective_rows(X: np.ndarray, lag: int = 10) -> np.ndarray:
    """Effective number of independent rows per column, ``n (1 - r) / (1 + r)``.

    ``r`` is the lag-1 autocorrelation of an AR(1) process with the
    column's lag-``lag`` autocorrelation (floored at 0). A slowly wandering
    sensor's rows are nearly copies of each other: 400 rows of a casing
    temperature (r ~ 0.999) are worth well under one independent
    observation of its level, so no range learned from them is evidence of
    where it will be next.
    """
    X = np.asarray(X, dtype=np.float64)
    n = X.shape[0]
    if n <= lag + 1:
        return np.zeros(X.shape[1])
    c = X - X.mean(axis=0)
    energy = np.einsum("ij,ij->j", c, c)
    cross = np.einsum("ij,ij->j", c[lag:], c[:-lag])
    r_lag = np.divide(cross, energy, out=np.zeros_like(energy), where=energy > 0)
    # Implied lag-1 correlation of an AR(1) with this lag-``lag`` one: read
    # at a distance, measurement noise does not hide the slow part.
    r = np.clip(r_lag, 0.0, 1.0) ** (1.0 / lag)
    return n * (1.0 - r) / (1.0 + r)


def _finite_2d(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"SensorChecks expects a 2-D array (rows, sensors), got shape {X.shape}.")
    if not np.isfinite(X).all():
        raise ValueError("SensorChecks expects finite readings (impute missing values first).")
    return X
