"""``auto``: a line's detector picked on normal runs it was not trained on.

Which detector suits a line is not known in advance, and a new line has no
fault labels to tell. What its normal history can tell is how each candidate
behaves on *normal operation it has not seen*, the situation of every frame
it will score. This module asks that question the way a plant would check a
model before trusting it: a backtest over whole runs.

1. **Only whole segments are held out.** The normal history is cut at its
   gaps (the runs or batches it was assembled from,
   :func:`lineguard.detectors.scoring.segment_starts`). With fewer than
   :data:`MIN_SEGMENTS` segments, a long stretch is cut into consecutive
   pieces of at least :data:`MIN_PIECE_ROWS` rows, which are held out as
   runs would be: a machine's stretch of 4,000 rows is 100 cycles, and a
   piece of a quarter of them is unseen normal operation as much as another
   run is. Where that leaves fewer than :data:`MIN_SEGMENTS` pieces the
   default detector is kept: on short stretches (SKAB's 400 rows) every
   label-free rule measured so far chose worse than PCA alone (planted
   steps, planted reversals, mass-volume curves;
   ``docs/evaluating-detectors.md``, "Item 6").
2. **Each candidate is trained as the line would be** (the whole pipeline,
   sensor checks and calibration included) on the other folds, and every
   held-out segment is scored from its first frame: the share of its rows
   that raise an alert is that candidate's false-alarm rate on unseen
   normal runs.
3. **Detection is checked on the same held-out runs**: one sensor at a time
   is played backwards within the segment, which keeps its values and its
   own dynamics but breaks its relation to the others and to the phase of
   the run (what a multivariate detector is for). The share of rows alerted
   beyond the unplanted run's is the candidate's detection.
4. **A challenger replaces the default only on clear evidence**: at most
   :data:`RATE_MARGIN` of the default's false-alarm rate, and no less than
   the default's detection minus :data:`DETECTION_SLACK`. Among such
   challengers the one with the fewest false alarms wins. A lower
   false-alarm rate alone would favour a blunt detector; the detection
   condition is what keeps it from winning. Where no challenger passes,
   one with no more false alarms than the default and at least
   :data:`DETECTION_GAIN` more detection replaces it (the one that catches
   most): a detector that sees what the default cannot, such as the
   codebook on a machine cycle, is not held back by a false-alarm rate
   that is merely equal.

The choice and the figures behind it are returned as a :class:`Selection`,
which ``train_pipeline`` records in the model's training info.

Cost: one training per candidate and fold, and each held-out segment scored
once plus once per planted sensor. That is training time, not scoring time.
On MIDAS's 8 normal runs it took 94 s, against 11 s for PCA alone (the
codebook, a candidate since the eleventh session, adds 13-18 %:
``bench/auto_backtest.py`` 56.4 / 52.7 s without it, 63.5 / 62.2 s with it);
a line that must train faster can name its detector.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .catalogue import DEFAULT_DETECTOR
from .scoring import DEFAULT_DEBOUNCE, LinePipeline, gap_bound_us, score_batch, segment_starts

__all__ = [
    "CANDIDATES",
    "DETECTION_GAIN",
    "DETECTION_SLACK",
    "MIN_PIECE_ROWS",
    "MIN_SEGMENTS",
    "RATE_MARGIN",
    "Selection",
    "choose",
    "cut_into_pieces",
    "select_detector",
]

#: Candidates, the default first. ECOD, the isolation forest and the codebook
#: model the normal rows in ways PCA does not (per-feature tails, isolated
#: regions, the nearest normal state: a machine cycle's closed path);
#: robust Mahalanobis is left out: elliptical like PCA, and its MCD fit on
#: a batch line's near-constant phase columns fails or takes minutes.
CANDIDATES: tuple[str, ...] = (DEFAULT_DETECTOR, "iforest", "ecod", "codebook")
#: Fewest gap-free segments (runs, batches) a selection needs.
MIN_SEGMENTS = 3
#: Fewest rows of a piece a stretch is cut into where it has fewer segments:
#: a piece must hold enough of the line's normal variety to be judged by a
#: model of the others (25 cycles of the pick-and-place station).
MIN_PIECE_ROWS = 1000
#: Most folds of the backtest; segments are dealt to them in time order.
MAX_FOLDS = 4
#: Most sensors played backwards per held-out segment (spread over the line).
MAX_PLANTED_SENSORS = 8
#: A challenger must bring the false-alarm rate to at most this share of the default's.
RATE_MARGIN = 0.75
#: ... and keep its detection within this much (a share of rows) of the default's.
DETECTION_SLACK = 0.02
#: Failing that, a challenger with no more false alarms than the default must
#: catch at least this much more (a share of the planted rows): a tenth of
#: them, far above the spread of the backtest (the candidates' detection on
#: MIDAS differs by 0.003; a machine cycle's codebook gains 0.25-0.29).
DETECTION_GAIN = 0.1

#: ``train(X, time_us, detector_name) -> (pipeline, threshold)``.
Trainer = Callable[[np.ndarray, np.ndarray, str], tuple[LinePipeline, float]]


@dataclass(frozen=True)
class Selection:
    """A line's selected detector and the backtest behind the choice.

    Attributes
    ----------
    detector : str
        The catalogue name chosen.
    reason : str
        Why, in words (the default kept, or the challenger's figures).
    segments : int
        Gap-free segments in the normal history.
    pieces : int
        Pieces of the history held out in the backtest where its segments
        were too few and it was cut into pieces of :data:`MIN_PIECE_ROWS`
        rows or more (0: the segments themselves were held out).
    false_alarms : dict of str to float
        Per candidate: share of held-out normal rows alerted.
    detection : dict of str to float
        Per candidate: share of planted rows alerted beyond the unplanted run.
    """

    detector: str
    reason: str
    segments: int
    false_alarms: dict[str, float] = field(default_factory=dict)
    detection: dict[str, float] = field(default_factory=dict)
    pieces: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form for the training info."""
        return asdict(self)


def choose(
    false_alarms: dict[str, float],
    detection: dict[str, float],
    default: str = DEFAULT_DETECTOR,
) -> tuple[str, str]:
    """The decision rule of step 4 (module docs): the chosen name and why.

    Parameters
    ----------
    false_alarms, detection : dict of str to float
        Backtest figures per candidate, the default among them.
    default : str
        The detector kept unless a challenger is clearly better.

    Returns
    -------
    name : str
    reason : str
    """
    if default not in false_alarms:
        raise ValueError(f"expected the default {default!r} among {sorted(false_alarms)}")
    base_far, base_det = false_alarms[default], detection[default]
    eligible = [
        name
        for name in false_alarms
        if name != default
        and false_alarms[name] <= RATE_MARGIN * base_far
        and detection[name] >= base_det - DETECTION_SLACK
    ]
    if not eligible:
        # Second rule: as few false alarms as the default, clearly more caught.
        stronger = [
            name
            for name in false_alarms
            if name != default
            and false_alarms[name] <= base_far
            and detection[name] >= base_det + DETECTION_GAIN
        ]
        if stronger:
            best = max(stronger, key=lambda name: (detection[name], -false_alarms[name]))
            return best, (
                f"{best}: detection {detection[best]:.3f} against {default}'s {base_det:.3f} "
                f"at false alarms {false_alarms[best]:.4f} against {base_far:.4f} on held-out runs"
            )
        return default, (
            f"no candidate had at most {RATE_MARGIN:g} x {default}'s false alarms on "
            f"held-out runs ({base_far:.4f}) with its detection ({base_det:.3f}) kept, "
            f"nor at most its false alarms with {DETECTION_GAIN:g} more detection"
        )
    best = min(eligible, key=lambda name: (false_alarms[name], -detection[name]))
    return best, (
        f"{best}: false alarms {false_alarms[best]:.4f} against {default}'s {base_far:.4f} "
        f"on held-out runs, detection {detection[best]:.3f} against {base_det:.3f}"
    )


def select_detector(
    X: np.ndarray,
    time_us: np.ndarray | None,
    train: Trainer,
    window: int,
    candidates: Sequence[str] = CANDIDATES,
    debounce: tuple[int, int] = DEFAULT_DEBOUNCE,
) -> Selection:
    """Pick a line's detector by a backtest over its normal runs (module docs).

    Parameters
    ----------
    X : ndarray of shape (n_rows, n_sensors)
        The normal history, oldest first (NaN = missing).
    time_us : ndarray of int64 or None
        Frame times; the segments are cut where the pause between two rows
        exceeds the gap bound. None means one segment.
    train : callable
        ``train(X, time_us, name) -> (pipeline, threshold)`` with the line's
        training options (``train_pipeline`` passes itself).
    window : int
        The feature window, for the gap bound.
    candidates : sequence of str
        Catalogue names, the default first.
    debounce : (k, n)
        The alert debounce the line runs with.

    Returns
    -------
    Selection
    """
    default = candidates[0]
    X = np.asarray(X, dtype=np.float64)
    segments = _segments(X, time_us, window)
    held = segments if len(segments) >= MIN_SEGMENTS else cut_into_pieces(segments)
    if time_us is None or len(held) < MIN_SEGMENTS:
        return Selection(
            detector=default,
            reason=(
                f"{len(segments)} gap-free segment(s) of at least {2 * window} rows in the "
                f"normal history, {MIN_SEGMENTS} needed to hold runs out (or "
                f"{MIN_SEGMENTS} pieces of {MIN_PIECE_ROWS} rows): the default is kept"
            ),
            segments=len(segments),
        )
    cut = held is not segments
    t = np.asarray(time_us, dtype=np.int64)
    folds = min(MAX_FOLDS, len(held))
    false_alarms: dict[str, float] = {}
    detection: dict[str, float] = {}
    failed: list[str] = []
    for name in candidates:
        try:
            false_alarms[name], detection[name] = _backtest(
                X, t, held, folds, train, name, debounce
            )
        except ValueError as exc:
            if name == default:
                raise
            # A challenger that cannot be trained on this line's folds is
            # no choice for it; the default's own failure is the line's.
            failed.append(f"{name} ({exc})")
    chosen, reason = choose(false_alarms, detection, default)
    if cut:
        reason = (
            f"{len(segments)} gap-free segment(s), held out as {len(held)} pieces of "
            f"{MIN_PIECE_ROWS} rows or more: {reason}"
        )
    if failed:
        reason += "; not trainable on the folds: " + ", ".join(failed)
    return Selection(
        detector=chosen,
        reason=reason,
        segments=len(segments),
        false_alarms=false_alarms,
        detection=detection,
        pieces=len(held) if cut else 0,
    )


def _backtest(
    X: np.ndarray,
    t: np.ndarray,
    segments: list[tuple[int, int]],
    folds: int,
    train: Trainer,
    name: str,
    debounce: tuple[int, int],
) -> tuple[float, float]:
    """One candidate's false alarms and detection over the folds (module docs)."""
    alerted = normal_rows = 0
    gains: list[float] = []
    for fold in range(folds):
        held = segments[fold::folds]
        rest = [s for i, s in enumerate(segments) if i % folds != fold]
        rows = np.concatenate([np.arange(a, b) for a, b in rest])
        pipeline, threshold = train(X[rows], t[rows], name)
        for a, b in held:
            base = _alerts(pipeline, threshold, X[a:b], t[a:b], debounce)
            alerted += int(base.sum())
            normal_rows += b - a
            for j in _planted_sensors(X[a:b]):
                planted = X[a:b].copy()
                planted[:, j] = planted[::-1, j]
                hit = _alerts(pipeline, threshold, planted, t[a:b], debounce)
                gains.append(max(float(hit.mean() - base.mean()), 0.0))
    far = round(alerted / max(normal_rows, 1), 6)
    return far, round(float(np.mean(gains)) if gains else 0.0, 6)


def _segments(X: np.ndarray, time_us: np.ndarray | None, window: int) -> list[tuple[int, int]]:
    """Gap-free ``(start, stop)`` row ranges long enough to judge (2 windows)."""
    n = X.shape[0]
    if time_us is None or n < 2:
        bounds = np.array([0])
    else:
        t = np.asarray(time_us, dtype=np.int64)
        bounds = segment_starts(t, gap_bound_us(t, window), n)
    edges = [*np.unique(np.r_[0, bounds]).tolist(), n]
    return [(a, b) for a, b in itertools.pairwise(edges) if b - a >= 2 * window]


def cut_into_pieces(segments: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Each segment cut into as many consecutive pieces of equal rows as hold
    :data:`MIN_PIECE_ROWS` each (a shorter segment stays whole).

    Parameters
    ----------
    segments : list of (start, stop)
        Gap-free row ranges, in time order.

    Returns
    -------
    list of (start, stop)
        The pieces, in time order, covering the segments.
    """
    pieces = []
    for a, b in segments:
        k = max((b - a) // MIN_PIECE_ROWS, 1)
        edges = np.linspace(a, b, k + 1).round().astype(int).tolist()
        pieces.extend(itertools.pairwise(edges))
    return pieces


def _planted_sensors(X: np.ndarray) -> list[int]:
    """Sensors to play backwards: those that vary in the segment, spread evenly."""
    finite = np.where(np.isfinite(X), X, np.nan)
    with np.errstate(all="ignore"):
        varies = np.flatnonzero(np.nanmax(finite, axis=0) > np.nanmin(finite, axis=0))
    if varies.size <= MAX_PLANTED_SENSORS:
        return varies.tolist()
    pick = np.linspace(0, varies.size - 1, MAX_PLANTED_SENSORS).round().astype(int)
    return varies[np.unique(pick)].tolist()


def _alerts(
    pipeline: LinePipeline,
    threshold: float,
    X: np.ndarray,
    t: np.ndarray,
    debounce: tuple[int, int],
) -> np.ndarray:
    """Alerted rows of one segment scored from its first frame, as live."""
    k, n = debounce
    result, _ = score_batch(pipeline, X, None, threshold, k, n, time_us=t)
    return np.asarray(result.anomaly, dtype=bool)
