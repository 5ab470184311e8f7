"""Alert thresholds from a target false-alarm rate, and the line training procedure.

Why calibrate on held-back rows
-------------------------------
A detector's scores on its own training rows are optimistic (it has seen
them), so a threshold taken from them fires too often in production. The
threshold is therefore set on normal rows the detector did *not* see: the
last ``holdout_fraction`` of the normal history. Time order is preserved --
the holdout is the most recent stretch -- because the near future of a line
looks most like its recent past (slow drift, seasonal temperature, tool
wear), and a random split would leak near-duplicate neighbouring rows from
fit into holdout and again make the threshold optimistic.

Why a conformal quantile
------------------------
For ``n`` held-back scores and a target false-alarm rate ``a``, the threshold
is the ``ceil((1 - a)(n + 1))``-th smallest score. If new normal scores are
exchangeable with the held-back ones, P(new score > threshold) <= a exactly,
for any ``n`` and any detector (split-conformal guarantee); the plain
empirical ``1 - a`` quantile is biased towards too many alarms for small
``n``. Telemetry is autocorrelated: trailing-window scores are nearly copies
of their neighbours, and ``n`` held-back rows are worth far fewer independent
ones. Ranked as if independent, the threshold is too low: on stationary
synthetic lines (``bench/calibration_spread.py``) the realized raw rate for a
1 % target averaged 1.9 % with a 1,000-row history (one line in ten above
5.6 %). So the rank is taken on the effective number of scores
(:func:`effective_scores`, :func:`fit_threshold`): 0.95 % there (p90 2.9 %),
0.65 % with 3,000 rows. Below 99 effective scores (a 400-row history: 120
held-back rows worth about 6-30) no rank certifies 1 % and the largest
score is used; such lines still average 1.8 %, one in ten above 4 %, which is
one more reason to train a line on its history. When ``n`` is too small for the rank to
exist (``n < 1/a - 1``, e.g. fewer than 99 rows for a 1 % target), no
empirical order statistic can certify the rate; we then extrapolate with an
exponential tail (peaks-over-threshold with a zero-shape generalized Pareto,
the maximum-entropy choice that needs no shape estimate from few points)
fitted to the top 20 % of held-back scores, and say so in the result.

Why every run, where there are several
--------------------------------------
The most recent 30 % of a history of several runs is a run or two. Of a
slowly wandering continuous process (feed, weather and upstream units
moving over hours), one or two runs show a small part of its normal range,
and the threshold is only as good as the stretch it was taken on: on
``bench/reactor_line.py``'s reactor, five normal runs whose last one and a
half happened to be calm gave PCA a threshold that alarmed on 3.9 % of the
rows of ten unseen normal runs, for a 1 % target (0.6-0.8 % on the other
seeds). Where the history holds three or more gap-free segments, each
segment is therefore scored by a model fitted on the other segments (up
to five folds of whole segments, :func:`calibration_folds`) and the
threshold is the same conformal quantile of all of those scores: 0.45-0.97 %
on the same three seeds, at about the same detection. Out-of-fold scores
come from models fitted on fewer rows than the refitted one, so the
threshold errs, as the holdout's does, on the side of fewer false alarms.
A line with per-mode models gets fold models with a model of their own for
the same modes as the calibrated one, and each out-of-fold score keeps its
mode (by code), so the per-mode thresholds are taken on all runs too. A
fold whose rows exceed the other folds' threshold far more often than the
target holds a fault and is left out (:func:`dirty_folds`): out of the
threshold and out of the served model -- the line is trained again on the
other runs, the detector's choice included, so the result is what the clean
runs alone give (with the faulty run in it, a decaying catalyst's run taught
the reactor's model to miss the fault on more than half its rows). ``refit=False``
(the served model must be the calibrated one) and a single stretch keep
the holdout; so do the backtest trials of ``auto`` (one fit per fold and
candidate is cost enough).

Why refit after calibrating (default)
-------------------------------------
Strictly, the conformal guarantee holds for the model that produced the
held-back scores (``refit=False``). Refitting that same procedure on all
normal rows is still sound in the direction that matters: out-of-sample
scores are inflated by estimation error, and that inflation shrinks as the
training set grows, so a threshold calibrated on the smaller model is, under
stationarity, slightly *conservative* for the refitted one (fewer false
alarms than targeted, never systematically more). Under drift the refitted
model has also seen the most recent regime. With short histories (SKAB gives
400 normal rows per run) the extra 25 % of data matters: on SKAB refitting
cut the false-alarm rate of the default detector from 22 % to 9 % at equal
miss rate. The info dict records which was done, and the holdout exceedance
rate it reports is that of the calibrated (pre-refit) model.
Caveat: if the holdout contains a regime the fit rows never showed, its
scores (and so the threshold) are inflated for the pre-refit model, and the
refitted model -- which has now learned that regime -- scores far lower, so
the line becomes insensitive. ``info["holdout_score_quantiles"]`` exposes
this (a 0.9 quantile far above the 0.5 one); such a line needs a longer,
stationary normal history rather than a different threshold rule.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.base import clone

from .catalogue import AUTO, make_detector
from .modes import ModeModels
from .robust import DEFAULT_MAX_TRIM
from .scoring import DEFAULT_DEBOUNCE, LinePipeline, segment_starts
from .selection import MIN_PIECE_ROWS, Selection, select_detector
from .sensor_checks import SensorChecks, effective_rows

__all__ = [
    "CALIBRATION_FOLDED",
    "CALIBRATION_FOLDS",
    "CALIBRATION_HOLDOUT",
    "DEFAULT_DETREND_SLOW",
    "DEFAULT_HOLDOUT_FRACTION",
    "DEFAULT_KEEP_BOUNDED_LEVELS",
    "DEFAULT_MODE_MODELS",
    "DEFAULT_TARGET_FAR",
    "DEFAULT_WINDOW",
    "DIRTY_FOLD_FACTOR",
    "TRAINING_DEFAULTS",
    "TrainingDefaults",
    "calibration_folds",
    "dirty_folds",
    "effective_scores",
    "fit_threshold",
    "mode_thresholds",
    "stretch_pieces",
    "threshold_method",
    "train_pipeline",
]


@dataclass(frozen=True)
class TrainingDefaults:
    """The defaults of every way to train a line model, in one place.

    ``lineguard train``, ``lineguard evaluate``, the model lifecycle, the
    offline evaluation and the benchmarks all start from this object
    (:data:`TRAINING_DEFAULTS`), so a model trained one way is the model
    evaluated another. ``lineguard.models.training.TrainingConfig`` takes its
    field defaults from it.

    Attributes
    ----------
    detector : str
        Catalogue name of the detector, or ``"auto"`` (the default): a
        detector picked per line by a backtest on its own normal runs
        (:mod:`lineguard.detectors.selection`). A history of fewer than three
        runs, and shorter than three pieces of 1,000 rows, keeps
        :data:`lineguard.detectors.catalogue.DEFAULT_DETECTOR` (PCA, see there
        why). On SKAB (one 400-row stretch per run) that is
        PCA's figures unchanged; on MIDAS's normal batches the backtest
        picks the isolation forest, which halves the false alarms on
        held-out runs (0.31 -> 0.13 %) with the same 35/35 faults and
        top-1 attribution (``docs/evaluating-detectors.md``, "Item 6").
    target_far : float
        Target per-row false-alarm rate on normal data, before debouncing.
        1 % per row at 1 Hz is about 36 raw exceedances an hour on a healthy
        line, which the 2-of-5 debounce mostly absorbs (isolated exceedances
        never alert).
    holdout_fraction : float
        Share of the most recent normal rows held back to calibrate the
        threshold (see the module notes for why the most recent). The
        conformal 1 % quantile needs at least ``1 / 0.01 - 1 = 99`` held-back
        scores (``threshold_method``); below that the threshold comes from
        the exponential-tail fallback. 30 % keeps the conformal rule in
        force down to 330 normal rows (a quarter: 396, so a 400-row history
        would sit right at the edge), and leaves 70 % for the fit.
    window : int
        Trailing feature window, in rows. 20 rows let PCA see small level
        shifts of noisy fast sensors that a 10-row mean hides (on SKAB with
        slow sensors detrended: F1 0.86 at 20 rows, 0.81 at 10).
    detrend_slow : float or None
        Lag-10 autocorrelation above which a sensor is judged by its
        dynamics (see :mod:`lineguard.detectors.features`). On SKAB's training
        rows the thermal sensors sit at 0.7-0.97 and every other sensor
        below 0.6.
    debounce : (k, n)
        Alert when k of the last n frames exceed the threshold
        (:data:`lineguard.detectors.scoring.DEFAULT_DEBOUNCE`).
    min_rows : int
        Fewest normal rows a model is trained on, and fewest rows after the
        training rows that make an evaluation part of their own: one full
        feature window.
    seed : int
        Seed for stochastic detectors, so retraining is reproducible.
    noise_window : int or None
        The sensor checks' noise check window (``SensorChecks(noise_window=...)``),
        or None: off (the default). The check catches a transmitter losing
        precision and a sticking control valve's limit cycle (on
        ``bench/reactor_line.py``'s reactor: 98-100 % of a sticking coolant
        valve's rows with the check at 20 rows, 30-59 % without, at the same
        false alarms), and costs about a tenth of the scoring stage, which
        issue 16's cost goal leaves no room for on every line. A line that
        needs it turns it on (``lineguard train --noise-window 20``).
    """

    detector: str = AUTO
    target_far: float = 0.01
    holdout_fraction: float = 0.3
    window: int = 20
    detrend_slow: float | None = 0.6
    debounce: tuple[int, int] = DEFAULT_DEBOUNCE
    min_rows: int = 20
    seed: int = 0
    noise_window: int | None = None


#: The one instance every caller takes its defaults from.
TRAINING_DEFAULTS = TrainingDefaults()
# Names of single defaults, kept for the signatures below: the values are
# TRAINING_DEFAULTS', not numbers of their own.
DEFAULT_WINDOW = TRAINING_DEFAULTS.window
DEFAULT_DETREND_SLOW = TRAINING_DEFAULTS.detrend_slow
DEFAULT_TARGET_FAR = TRAINING_DEFAULTS.target_far
DEFAULT_HOLDOUT_FRACTION = TRAINING_DEFAULTS.holdout_fraction
#: Slow sensors whose level the normal rows bound keep it (see
#: :mod:`lineguard.detectors.features`, "Levels the normal history pins down").
DEFAULT_KEEP_BOUNDED_LEVELS = True

#: Per-mode models (:mod:`lineguard.detectors.modes`) on lines with more than
#: one operating mode. On MIDAS the false-alarm rate on normal rows is the
#: pooled model's (0.14 %), and the score catches 10 of 35 faults by itself
#: (the pooled model: 0; the sensor checks catch all 35 either way); a line
#: without state channels (SKAB) has one mode and is unchanged.
DEFAULT_MODE_MODELS = True

#: ``train_pipeline(calibration=...)``: out-of-fold scores where the history
#: allows them (the default), or the most recent rows only.
CALIBRATION_FOLDED = "folded"
CALIBRATION_HOLDOUT = "holdout"
#: Most folds a history of several runs is calibrated on (each fold is fitted
#: once more, so training costs up to this many extra fits).
CALIBRATION_FOLDS = 5
#: A fold whose rows exceed the other folds' threshold more than this many
#: times the target rate is left out of the training (:func:`dirty_folds`).
#: Clean runs of the reactor reached 5.8 times (five runs of 400 rows of a
#: slowly wandering process), runs holding a fault 25-55 times.
DIRTY_FOLD_FACTOR = 10.0

# Share of held-back scores treated as "tail" by the exponential fallback.
_TAIL_FRACTION = 0.2
_MIN_TAIL_POINTS = 5


def threshold_method(n_scores: int, target_far: float) -> str:
    """Which rule :func:`fit_threshold` uses: ``"conformal"`` or ``"exponential_tail"``."""
    rank = math.ceil((1.0 - target_far) * (n_scores + 1))
    return "conformal" if rank <= n_scores else "exponential_tail"


def effective_scores(scores: np.ndarray) -> float:
    """How many independent scores a time-ordered run of held-back scores is worth.

    ``n (1 - r) / (1 + r)``, with ``r`` the lag-1 autocorrelation of the
    scores in time order: the sensor checks' effective sample size
    (:func:`~lineguard.detectors.sensor_checks.effective_rows`) read at lag
    1, at least one score. Trailing-window features make neighbouring scores
    nearly copies of each other (``r`` about 0.9 for a 20-row window), so a
    few hundred held-back rows are worth a few dozen independent ones. ``r``
    counts only when it is above the 95 % band of white noise,
    ``2 / sqrt(n)``: independent scores keep ``n``, so the conformal rank of
    exchangeable scores is unchanged.
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    n = s.size
    if n < 3:
        return float(n)
    n_eff = float(effective_rows(s[:, None], lag=1)[0])
    r = (n - n_eff) / (n + n_eff)  # the lag-1 autocorrelation behind it
    if r <= 2.0 / math.sqrt(n):
        return float(n)
    return max(n_eff, 1.0)


def fit_threshold(scores_on_holdout: np.ndarray, target_far: float) -> float:
    """Score threshold whose exceedance rate on normal data is about ``target_far``.

    For independent scores this is split conformal: the
    ``ceil((1 - a)(n + 1))``-th smallest of ``n``. Autocorrelated scores are
    worth fewer (:func:`effective_scores`), and the conformal margin is that
    of the independent scores there are: the threshold is the empirical
    quantile of the ``n`` scores at level ``(1 - a)(n_eff + 1) / n_eff``, and
    where that level reaches 1 (``n_eff <= 1/a - 1``: 99 for 1 %), no order
    statistic certifies the rate and the largest held-back score, the most
    cautious one, is the threshold. On stationary synthetic lines with 1,000
    training rows this brings the realized rate for a 1 % target from 1.9 %
    (one line in ten above 5.6 %) to 0.95 % (p90 2.9 %;
    ``bench/calibration_spread.py``).

    Parameters
    ----------
    scores_on_holdout : array of shape (n,)
        Detector scores of normal rows not used to fit the detector, in time
        order (their autocorrelation is read from that order).
    target_far : float
        Target per-row false-alarm rate in (0, 1), before debouncing.

    Returns
    -------
    float
        Threshold; rows with ``score > threshold`` count as exceedances.

    Raises
    ------
    ValueError
        If ``target_far`` is outside (0, 1), scores are not finite, or fewer
        than ``5 / 0.2 = 25`` scores are given when the exponential fallback
        would be needed.
    """
    if not 0.0 < target_far < 1.0:
        raise ValueError(f"target_far must be in (0, 1), got {target_far!r}.")
    ordered = np.asarray(scores_on_holdout, dtype=np.float64).ravel()
    scores = np.sort(ordered)
    n = scores.size
    if n == 0 or not np.isfinite(scores).all():
        raise ValueError(
            f"Expected a non-empty array of finite scores, got {n} values "
            f"({int((~np.isfinite(scores)).sum())} non-finite)."
        )
    if threshold_method(n, target_far) == "conformal":
        n_eff = effective_scores(ordered)
        if n_eff >= n:
            return float(scores[math.ceil((1.0 - target_far) * (n + 1)) - 1])
        # The conformal level (1 - a)(n + 1) / n, with n_eff for n: the
        # small-sample margin is that of the independent scores there are.
        level = (1.0 - target_far) * (n_eff + 1.0) / n_eff
        if level >= 1.0:
            return float(scores[-1])
        return float(scores[min(math.ceil(level * n), n) - 1])
    n_tail = math.floor(_TAIL_FRACTION * n)
    if n_tail < _MIN_TAIL_POINTS:
        raise ValueError(
            f"{n} held-back scores are too few for target_far={target_far}: need at least "
            f"{math.ceil(1 / target_far - 1)} for the conformal quantile or "
            f"{math.ceil(_MIN_TAIL_POINTS / _TAIL_FRACTION)} for the tail fit."
        )
    # Exceedances over u = (n - n_tail)-th score, P(score > u) ~ n_tail / n.
    u = scores[n - n_tail - 1]
    excess = scores[n - n_tail :] - u
    beta = max(float(excess.mean()), np.finfo(float).tiny)
    # Exponential tail: P(score > u + t) = (n_tail / n) * exp(-t / beta).
    return float(u + beta * math.log((n_tail / n) / target_far))


def mode_thresholds(
    scores: np.ndarray, modes: np.ndarray, n_modes: int, target_far: float
) -> np.ndarray:
    """Each operating mode's threshold from its own held-back normal scores.

    The same rule as the line's threshold (:func:`fit_threshold`), on the
    scores of one mode at a time, where the mode has enough held-back rows
    for the conformal quantile (``1 / target_far - 1``: 99 at 1 %). A mode
    with fewer keeps the line's threshold (NaN here): an extrapolated tail
    from a few dozen rows of one phase is not a limit to alarm on. Unseen
    modes (``-1``) are ignored.

    Returns
    -------
    ndarray of float, shape (n_modes,)
        Threshold per mode, NaN where the mode keeps the line's.
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    g = np.asarray(modes, dtype=np.intp).ravel()
    if g.shape != s.shape:
        raise ValueError(f"modes must hold one mode per score ({s.size}), got {g.size}.")
    out = np.full(n_modes, np.nan)
    for m in range(n_modes):
        sm = s[g == m]
        if sm.size and threshold_method(sm.size, target_far) == "conformal":
            out[m] = fit_threshold(sm, target_far)
    return out


def train_pipeline(
    X_normal: np.ndarray,
    sensors: list[str],
    detector_name: str = TRAINING_DEFAULTS.detector,
    target_far: float = DEFAULT_TARGET_FAR,
    holdout_fraction: float = DEFAULT_HOLDOUT_FRACTION,
    seed: int | None = 0,
    window: int = DEFAULT_WINDOW,
    refit: bool = True,
    detrend_slow: float | None = DEFAULT_DETREND_SLOW,
    time_us: np.ndarray | None = None,
    sensor_checks: bool | SensorChecks = True,
    keep_bounded_levels: bool = DEFAULT_KEEP_BOUNDED_LEVELS,
    max_trim: float = DEFAULT_MAX_TRIM,
    mode_models: bool | ModeModels = DEFAULT_MODE_MODELS,
    calibration: str = CALIBRATION_FOLDED,
) -> tuple[LinePipeline, float, dict[str, Any]]:
    """Fit a line's pipeline on normal history and calibrate its alert threshold.

    Parameters
    ----------
    X_normal : ndarray of shape (n_rows, n_sensors)
        Consecutive rows of normal operation, oldest first (NaN = missing).
    sensors : list of str
        Column names of ``X_normal``.
    detector_name : str
        Registry name (see :func:`lineguard.detectors.catalogue.make_detector`),
        or ``"auto"``: the detector is picked by a backtest on the line's
        own normal runs, or pieces of one long stretch
        (:mod:`lineguard.detectors.selection`; the default where the history
        holds neither three runs nor three pieces), and ``info`` records
        the choice and its figures under ``"selection"``.
    target_far : float
        Target per-row exceedance rate on normal data.
    holdout_fraction : float
        Share of the most recent rows held back for calibration, in (0, 1).
    seed : int or None
        Seed for stochastic detectors.
    window : int
        Temporal feature window.
    refit : bool, default=True
        Refit on all rows after calibrating (see module docs for why).
    detrend_slow : float or None
        Autocorrelation above which a sensor is judged by its dynamics, not
        its level (see :mod:`lineguard.detectors.features`); None disables.
    time_us : ndarray of int64, shape (n_rows,), optional
        Frame times. The pipeline then learns its gap bound and never lets a
        trailing window span a gap, in fitting, in calibration and in live
        scoring (:func:`lineguard.detectors.scoring.gap_bound_us`); several
        normal runs can be passed concatenated, oldest first.
    sensor_checks : bool or SensorChecks, default=True
        Run the per-sensor, per-mode checks (freeze, step, relation, unseen
        mode; :mod:`lineguard.detectors.sensor_checks`) beside the detector:
        True for the defaults, or an unfitted :class:`SensorChecks`.
    keep_bounded_levels : bool
        Slow sensors whose level the normal rows bound keep it
        (:func:`lineguard.detectors.features.bounded_levels`).
    max_trim : float
        Robustness to a dirty training window (:mod:`lineguard.detectors.robust`):
        the detector is fitted by concentration steps that leave out this
        share of each mode's highest-scoring rows; the threshold is then
        calibrated on held-back (or out-of-fold) rows. 0 disables.
    mode_models : bool or ModeModels
        Judge the score per operating mode (:mod:`lineguard.detectors.modes`):
        a model per mode with enough rows, a threshold per mode with enough
        held-back rows (:func:`mode_thresholds`), the pooled model and the
        line's threshold elsewhere. True for the defaults, or an unfitted
        :class:`ModeModels`. Needs the sensor checks (their modes) and has no
        effect on a line with one mode.
    calibration : {"folded", "holdout"}
        Where the threshold's normal scores come from. ``"holdout"``: the
        most recent ``holdout_fraction`` of the rows, scored by the model
        fitted on the rest. ``"folded"`` (the default) does the same where
        it must, and where the history holds three or more gap-free
        segments (runs, batches) and the model is refitted, every segment
        is scored by a model fitted on the other segments (:func:`calibration_folds`,
        up to :data:`CALIBRATION_FOLDS` folds) and the threshold is taken on
        all of those scores (module docs, "Why every run, where there are
        several").

    Returns
    -------
    pipeline : LinePipeline
        Fitted pipeline.
    threshold : float
        Calibrated threshold for :func:`lineguard.detectors.scoring.score_batch`.
    info : dict
        JSON-friendly record of the procedure: row counts, method, holdout
        exceedance rate, score quantiles.
    """
    if calibration not in (CALIBRATION_FOLDED, CALIBRATION_HOLDOUT):
        raise ValueError(
            f"calibration must be {CALIBRATION_FOLDED!r} or {CALIBRATION_HOLDOUT!r}, "
            f"got {calibration!r}."
        )
    if not 0.0 < holdout_fraction < 1.0:
        raise ValueError(f"holdout_fraction must be in (0, 1), got {holdout_fraction!r}.")
    X = np.asarray(X_normal, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != len(sensors):
        raise ValueError(
            f"Expected X_normal of shape (n_rows, {len(sensors)}) for sensors {list(sensors)}, "
            f"got {X.shape}."
        )
    t = None if time_us is None else np.asarray(time_us, dtype=np.int64).ravel()
    if t is not None and t.size != X.shape[0]:
        raise ValueError(f"time_us must hold one time per row ({X.shape[0]}), got {t.size}.")
    selection: Selection | None = None
    requested = detector_name

    def again(
        X_part: np.ndarray, t_part: np.ndarray | None, name: str, how: str
    ) -> tuple[LinePipeline, float, dict[str, Any]]:
        # The line's own options on other rows (and detector, calibration).
        return train_pipeline(
            X_part,
            sensors,
            name,
            target_far=target_far,
            holdout_fraction=holdout_fraction,
            seed=seed,
            window=window,
            refit=refit,
            detrend_slow=detrend_slow,
            time_us=t_part,
            sensor_checks=sensor_checks,
            keep_bounded_levels=keep_bounded_levels,
            max_trim=max_trim,
            mode_models=mode_models,
            calibration=how,
        )

    if detector_name == AUTO:

        def trial(X_part: np.ndarray, t_part: np.ndarray, name: str) -> tuple[LinePipeline, float]:
            # One fit per fold and candidate already: no folds within.
            pipe, thr, _ = again(X_part, t_part, name, CALIBRATION_HOLDOUT)
            return pipe, thr

        selection = select_detector(X, t, trial, window, debounce=TRAINING_DEFAULTS.debounce)
        detector_name = selection.detector
    n_hold = math.ceil(X.shape[0] * holdout_fraction)
    n_fit = X.shape[0] - n_hold
    modal = _mode_models(mode_models, max_trim)

    def new_pipeline() -> LinePipeline:
        return LinePipeline(
            sensors=list(sensors),
            detector=make_detector(detector_name, seed),
            window=window,
            detrend_slow=detrend_slow,
            sensor_checks=_checks(sensor_checks),
            keep_bounded_levels=keep_bounded_levels,
            max_trim=max_trim,
            mode_models=modal,
        )

    pipeline = new_pipeline().fit(X[:n_fit], time_us=None if t is None else t[:n_fit])
    if t is None:
        # The holdout continues the fit rows in time, so its first rows get
        # their full feature window from the end of the fit part, as live.
        context = X[max(n_fit - (window - 1), 0) : n_fit] if window > 1 else None
        F, _, X_imp = pipeline.transform_rows(X[n_fit:], context)
        hold_scores, hold_modes = pipeline.score_features(F, X_imp, context)
    else:
        hold_scores, hold_modes = _holdout_scores(pipeline, X, t, n_fit, window)
    threshold = fit_threshold(hold_scores, target_far)
    by_mode = pipeline.mode_models_
    folds = judged = None
    if calibration == CALIBRATION_FOLDED and refit and t is not None:
        folds = judged = calibration_folds(t, pipeline.max_gap_us_, window)
        if folds is None:
            # One long stretch: its pieces are judged for a fault as runs
            # are, but its threshold stays the holdout's.
            judged = stretch_pieces(X.shape[0])
    if judged is not None:
        aside_now = getattr(pipeline.checks_, "channels_set_aside_", None)

        def fold_pipeline() -> LinePipeline:
            # The calibrated model's kind: its channels set aside, and a model
            # of their own for the same modes (none where it has none).
            fold = new_pipeline()
            fold.mode_models = (
                None
                if by_mode is None
                else clone(modal).set_params(allowed_modes=by_mode.own_model_codes)
            )
            if aside_now is not None:
                fold.sensor_checks = clone(fold.sensor_checks).set_params(
                    channels_aside=np.flatnonzero(aside_now).tolist()
                )
            return fold

        by_fold = _out_of_fold_scores(
            fold_pipeline, X, t, judged, window, None if by_mode is None else pipeline
        )
        set_aside = dirty_folds([s for s, _ in by_fold], target_far, latest_only=folds is None)
        if set_aside:
            # A run that holds a fault leaves the training altogether: its
            # rows would widen the detector's normal cloud and the checks'
            # ranges and relation limits, and could sway the choice of
            # detector (a codebook learns a stuck valve as one more state).
            # So the line is trained again on the other runs, as if the
            # faulty one had never been given.
            X_clean, t_clean = _without_folds(X, t, judged, set_aside)
            pipeline, threshold, info = again(X_clean, t_clean, requested, calibration)
            info["calibration_folds_set_aside"] = _in_history(
                [judged[f] for f in sorted(set_aside)], info["calibration_folds_set_aside"]
            )
            return pipeline, threshold, info
    if folds is not None:
        kept = by_fold
        hold_scores = np.concatenate([s for s, _ in kept])
        if by_mode is not None:
            hold_modes = np.concatenate([m for _, m in kept])
        threshold = fit_threshold(hold_scores, target_far)
    per_mode = None
    if by_mode is not None and by_mode.per_mode_thresholds:
        per_mode = by_mode.thresholds_by_code(
            mode_thresholds(hold_scores, hold_modes, by_mode.n_modes_, target_far)
        )
        by_mode.set_thresholds(threshold, per_mode)
        hold_scores = hold_scores * np.where(
            hold_modes >= 0, by_mode.factor_[np.maximum(hold_modes, 0)], 1.0
        )
    if refit:
        calibrated = pipeline
        pipeline = new_pipeline()
        aside = getattr(calibrated.checks_, "channels_set_aside_", None)
        if aside is not None:
            # The calibrated model's mode channels: with another channel set
            # aside, the refit's modes and scores are no longer those the
            # threshold was taken on.
            pipeline.sensor_checks = clone(pipeline.sensor_checks).set_params(
                channels_aside=np.flatnonzero(aside).tolist()
            )
        if by_mode is None:
            pipeline.fit(X, time_us=t)
        else:
            # Same modes with a model of their own as the calibrated model,
            # so each mode's threshold belongs to the same kind of model.
            pipeline.mode_models = clone(modal).set_params(allowed_modes=by_mode.own_model_codes)
            pipeline.fit(X, time_us=t)
            if per_mode is not None and pipeline.mode_models_ is not None:
                pipeline.mode_models_.set_thresholds(threshold, per_mode)
    final_modes = pipeline.mode_models_
    info = {
        "detector": detector_name,
        "selection": None if selection is None else selection.to_dict(),
        "window": int(window),
        "detrend_slow": detrend_slow,
        "slow_sensors": [
            name for name, slow in zip(sensors, pipeline.features_.slow_, strict=True) if slow
        ],
        "level_sensors": [
            name
            for name, kept in zip(
                sensors, getattr(pipeline.features_, "level_kept_", ()), strict=False
            )
            if kept
        ],
        # One value in every training row: out of the score, step-checked only.
        "flat_sensors": [
            name for name, scale in zip(sensors, pipeline.scale_, strict=True) if np.isinf(scale)
        ],
        # 0/1 or phase channels the checks judge as sensors, not as modes.
        "channels_set_aside": [
            name
            for name, aside in zip(
                sensors,
                getattr(pipeline.checks_, "channels_set_aside_", ()),
                strict=False,
            )
            if aside
        ],
        "target_far": float(target_far),
        "threshold_method": threshold_method(hold_scores.size, target_far),
        # "out_of_fold": every segment scored by a model fitted on the others.
        "calibration": "holdout" if folds is None else "out_of_fold",
        "calibration_folds": None if folds is None else len(folds),
        # Row ranges (of X_normal) of runs whose rows the others' threshold
        # flags far too often (a fault in a training run), left out of the
        # training; set by the call that left them out.
        "calibration_folds_set_aside": [],
        # Rows the served model was fitted on.
        "model_rows": int(X.shape[0] if refit else n_fit),
        "n_fit": int(n_fit),
        "n_holdout": int(n_hold),
        "holdout_exceed_rate": float(np.mean(hold_scores > threshold)),
        "holdout_effective_scores": round(effective_scores(hold_scores), 1),
        "holdout_score_quantiles": {
            str(q): float(np.quantile(hold_scores, q)) for q in (0.5, 0.9, 0.99)
        },
        "refit": bool(refit),
        "max_trim": float(max_trim),
        "trimmed_fit_rows": int(getattr(pipeline, "trimmed_rows_", 0)),
        "seed": seed,
        # The noise check is off unless a line's training turned it on.
        "noise_window": getattr(pipeline.sensor_checks, "noise_window", None),
        "max_gap_us": getattr(pipeline, "max_gap_us_", None),
        "modes": None
        if final_modes is None
        else {
            "n_modes": int(final_modes.n_modes_),
            "training_rows": final_modes.mode_rows_.tolist(),
            "codes": final_modes.codes_.tolist(),
            "own_model": final_modes.has_own_model.tolist(),
            "threshold_factor": [round(float(f), 6) for f in final_modes.factor_],
        },
    }
    return pipeline, threshold, info


def _checks(sensor_checks: bool | SensorChecks) -> SensorChecks | None:
    if isinstance(sensor_checks, SensorChecks):
        return sensor_checks
    return SensorChecks() if sensor_checks else None


def _mode_models(mode_models: bool | ModeModels, max_trim: float) -> ModeModels | None:
    if isinstance(mode_models, ModeModels):
        return mode_models
    # Trimmed like the pooled fit: on MIDAS's normal rows the trim costs
    # 0.01 points of false-alarm rate (docs/evaluating-detectors.md,
    # "Operating modes"), and a dirty stretch inside one mode is what a
    # mode's own model would otherwise learn as normal.
    return ModeModels(max_trim=max_trim) if mode_models else None


def calibration_folds(
    time_us: np.ndarray, bound_us: int | None, window: int, n_folds: int | None = None
) -> list[tuple[int, int]] | None:
    """Row ranges of the folds a history is calibrated on, or None where it cannot be.

    A fold is a contiguous group of whole gap-free segments (runs, batches),
    the groups about equal in rows: up to ``n_folds`` (default
    :data:`CALIBRATION_FOLDS`) of them, at least three. Only segments that
    hold a full trailing window count; with fewer than three such segments
    there is nothing to rotate, and the caller keeps the holdout.

    Parameters
    ----------
    time_us : ndarray of int64, shape (n_rows,)
        Frame times of the history, oldest first.
    bound_us : int or None
        The pipeline's gap bound (``max_gap_us_``).
    window : int
        Trailing feature window, in rows.

    Returns
    -------
    list of (start, stop) or None
        ``[start, stop)`` row ranges in time order, covering every segment.
    """
    n_folds = CALIBRATION_FOLDS if n_folds is None else n_folds
    n = int(np.asarray(time_us).size)
    starts = segment_starts(time_us, bound_us, n)
    bounds = np.r_[starts, n]
    sizes = np.diff(bounds)
    usable = int(np.count_nonzero(sizes >= window))
    if usable < 3:
        return None
    k = min(n_folds, usable)
    # Each segment goes to the fold its middle row falls in.
    middle = (np.cumsum(sizes) - sizes / 2.0) / n
    fold = np.minimum((middle * k).astype(np.intp), k - 1)
    # A fold starts at its first segment; one without a full window is no
    # fold, and its segments join the fold before (the first, at the start).
    starts_of = [
        int(bounds[np.flatnonzero(fold == f)[0]])
        for f in range(k)
        if (sizes[fold == f] >= window).any()
    ]
    if len(starts_of) < 3:
        return None
    starts_of[0] = 0
    return list(itertools.pairwise([*starts_of, n]))


def stretch_pieces(n_rows: int) -> list[tuple[int, int]] | None:
    """Pieces of a history too few in segments for :func:`calibration_folds`, to
    judge for a fault; None where it makes fewer than four (with three,
    :func:`dirty_folds` could set none aside and keep three).

    A plant trains a line on a range of its historian: weeks without a gap are
    one stretch, and a fault inside it would be learned as normal however
    long the stretch. The history is cut into up to :data:`CALIBRATION_FOLDS`
    consecutive pieces of equal rows, each of at least
    :data:`~lineguard.detectors.selection.MIN_PIECE_ROWS` (the size of the
    pieces ``auto`` holds out), and :func:`train_pipeline` judges them by
    :func:`dirty_folds` as it judges runs, the most recent pieces only
    (``latest_only``: a fault still running when the history ended, the
    one whose rows would set the threshold). A longer history makes longer
    pieces, as more runs make larger folds: the judge costs one fit per
    piece. Only the judgement: a clean stretch keeps its holdout threshold
    (its most recent rows say most about the next,
    ``docs/evaluating-detectors.md``, "Folds within one stretch"), so where
    no piece is set aside the line is trained exactly as before.

    Returns
    -------
    list of (start, stop) or None
        ``[start, stop)`` row ranges of the pieces, covering the history.
    """
    k = min(CALIBRATION_FOLDS, n_rows // MIN_PIECE_ROWS)
    if k < 4:
        return None
    edges = np.linspace(0, n_rows, k + 1).round().astype(int).tolist()
    return list(itertools.pairwise(edges))


def dirty_folds(
    scores_by_fold: list[np.ndarray], target_far: float, latest_only: bool = False
) -> set[int]:
    """Folds to leave out of a folded calibration: those a fault in the training runs holds.

    Each fold's out-of-fold scores are judged against the threshold of the
    other folds' scores, less the one fold whose own threshold is highest.
    A clean run exceeds it about ``target_far`` of the time, a run that
    wanders further than the others a few times that; a run holding a fault
    exceeds it on the fault's rows. A fold above :data:`DIRTY_FOLD_FACTOR`
    times the target is set aside, the worst first and one at a time (the
    others' threshold is then taken again), while at least three folds
    remain and the set-aside folds stay a minority.

    The judge leaves out the worst-looking other fold because a fault
    recurs: with the same stuck coolant valve in two of the reactor's five
    runs, each faulty run, judged against all the others, met a threshold
    the other had raised -- 4.6 % and 2.5 % of its rows above it, neither
    set aside, and a threshold of 63-124 against 4-5. Without that fold
    the two runs exceed the judge on 25-44 % of their rows and both are set
    aside; a clean run's judge loses one clean run. Pooled as they were,
    half a run of a slowly decaying catalyst among five runs raised the
    reactor's threshold from 4.7 to 17.7 (``docs/evaluating-detectors.md``,
    "A continuous process under control loops"). :func:`train_pipeline`
    then trains the line again without the set-aside folds.

    With ``latest_only`` (the pieces of one stretch, :func:`stretch_pieces`)
    only the most recent fold not yet set aside is judged, so only a fault
    that ran until the history ended leaves, the latest piece first: a
    stretch drifts, and its oldest piece then exceeds the later ones' threshold
    as a fault does (SKAB's anomaly-free run, rows 2,000-6,000: its first
    piece on 35.9 % of its rows, while the flow climbs through the run), where
    setting it aside loses normal operation the line may return to (the FAR
    on the next 3,405 rows went from 16.3 to 21.2 %). A fault at the end is the
    one that blinds a line: its rows are the held-back rows, and set the
    threshold.

    Returns
    -------
    set of int
        Indices into ``scores_by_fold``.
    """
    out: set[int] = set()
    n = len(scores_by_fold)
    own = [fit_threshold(s, target_far) for s in scores_by_fold]
    while n - len(out) - 1 >= 3 and len(out) + 1 < n / 2:
        rates = {}
        judged = [f for f in range(n) if f not in out]
        for f, s in enumerate(scores_by_fold):
            if f in out or (latest_only and f != judged[-1]):
                continue
            judges = [g for g in range(n) if g != f and g not in out]
            judges.remove(max(judges, key=own.__getitem__))
            rest = np.concatenate([scores_by_fold[g] for g in judges])
            rates[f] = float(np.mean(s > fit_threshold(rest, target_far)))
        worst = max(rates, key=rates.__getitem__)
        if rates[worst] <= DIRTY_FOLD_FACTOR * target_far:
            break
        out.add(worst)
    return out


def _without_folds(
    X: np.ndarray, t: np.ndarray, folds: list[tuple[int, int]], drop: set[int]
) -> tuple[np.ndarray, np.ndarray]:
    """The history without the folds ``drop`` indexes. Each fold is whole
    segments, so where one was taken out its neighbours meet across a gap."""
    keep = np.ones(X.shape[0], dtype=bool)
    for f in drop:
        keep[folds[f][0] : folds[f][1]] = False
    return X[keep], t[keep]


def _in_history(dropped: list[tuple[int, int]], later: list[list[int]]) -> list[list[int]]:
    """Row ranges of the history: ``dropped`` (already in its rows) and
    ``later``, ranges set aside by the training on the rows left, mapped back."""
    out = [list(r) for r in dropped]
    for lo, hi in later:
        # Past every range taken out before it, in history order.
        for a, b in sorted(dropped):
            if a <= lo:
                lo, hi = lo + (b - a), hi + (b - a)
        out.append([lo, hi])
    return sorted(out)


def _out_of_fold_scores(
    new_pipeline: Callable[[], LinePipeline],
    X: np.ndarray,
    t: np.ndarray,
    folds: list[tuple[int, int]],
    window: int,
    reference: LinePipeline | None = None,
) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """Every fold's rows scored by a pipeline fitted on the other folds, per fold,
    full trailing windows only (as :func:`_holdout_scores`).

    With ``reference`` (the calibrated pipeline, when it has per-mode models),
    each score comes with the index of its mode among the reference's modes:
    a fold's model numbers only the modes its rows showed, so its indices are
    mapped through their codes. A code means the same mode only where the
    fold's model names modes by the same channels (state channels, phase
    channels and their values); where it does not, or where the pooled model
    judged the row (a transition, a mode without a model of its own), the
    index is -1 and the score counts for the line's threshold only.
    """
    n = X.shape[0]
    out = []
    for lo, hi in folds:
        rest = np.r_[0:lo, hi:n]
        pipeline = new_pipeline().fit(X[rest], time_us=t[rest])
        s, m = _holdout_scores(pipeline, X[lo:hi], t[lo:hi], 0, window)
        if reference is None:
            out.append((s, None))
            continue
        codes = reference.mode_models_.codes_
        mapped = np.full(s.size, -1, dtype=np.intp)
        own = pipeline.mode_models_
        if m is not None and own is not None and _same_mode_keys(pipeline, reference):
            seen = m >= 0
            fold_codes = own.codes_[m[seen]]
            at = np.minimum(np.searchsorted(codes, fold_codes), codes.size - 1)
            mapped[np.flatnonzero(seen)] = np.where(codes[at] == fold_codes, at, -1)
        out.append((s, mapped))
    return out


def _same_mode_keys(a: LinePipeline, b: LinePipeline) -> bool:
    """Whether two fitted pipelines' sensor checks build mode codes alike."""
    ca, cb = a.checks_, b.checks_
    for name in ("state_channels_", "phase_channels_", "phase_values_"):
        va, vb = getattr(ca, name, None), getattr(cb, name, None)
        if (va is None) != (vb is None) or (va is not None and not np.array_equal(va, vb)):
            return False
    return True


def _holdout_scores(
    pipeline: LinePipeline, X: np.ndarray, t: np.ndarray, n_fit: int, window: int
) -> tuple[np.ndarray, np.ndarray | None]:
    """Scores of the held-back rows as live scoring would give them.

    The holdout continues the fit rows; rows whose trailing window is not
    full (right after a gap, where live scoring never alerts) are left out,
    so the threshold is set on the same kind of rows it will judge.
    Returns the scores and, with per-mode models, each score's mode.
    """
    bound = pipeline.max_gap_us_
    lo = max(n_fit - (window - 1), 0)
    starts = segment_starts(t[lo:], bound, X.shape[0] - lo) + lo
    scores, modes = [], []
    for a, b in itertools.pairwise([*starts.tolist(), X.shape[0]]):
        F, _, X_imp = pipeline.transform_rows(X[a:b])
        s, m = pipeline.score_features(F, X_imp)
        # Rows of [a, b) that are in the holdout and have a full window.
        first = max(n_fit, a + window - 1)
        keep = np.arange(a, b) >= first
        scores.append(s[keep])
        if m is not None:
            modes.append(m[keep])
    out = np.concatenate(scores)
    if out.size == 0:
        raise ValueError("No held-back row has a full trailing window; give more normal rows.")
    return out, (np.concatenate(modes) if modes else None)
