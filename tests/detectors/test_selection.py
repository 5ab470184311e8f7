"""``auto``: the detector picked by a backtest on a line's own normal runs."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from lineguard.detectors import make_detector, train_pipeline
from lineguard.detectors.selection import (
    CANDIDATES,
    DETECTION_GAIN,
    DETECTION_SLACK,
    RATE_MARGIN,
    choose,
    select_detector,
)

SENSORS = ["a", "b", "c", "d"]
RUN_ROWS = 240


def _runs(n_runs: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Normal runs of a line whose four sensors follow two shared factors,
    one hour apart (each run a gap-free segment)."""
    rng = np.random.default_rng(seed)
    rows, times = [], []
    for r in range(n_runs):
        f = np.cumsum(rng.normal(size=(RUN_ROWS, 2)), axis=0) * 0.1
        f += np.sin(np.arange(RUN_ROWS) / 15.0)[:, None]
        X = np.column_stack([f[:, 0], f[:, 0] * 2 + 1, f[:, 1], f[:, 1] - f[:, 0]])
        rows.append(X + rng.normal(scale=0.05, size=X.shape))
        times.append(r * 3_600_000_000 + np.arange(RUN_ROWS, dtype=np.int64) * 1_000_000)
    return np.vstack(rows), np.concatenate(times)


def _trainer(threshold_factor: dict[str, float]):
    """The line's real training, with some candidates' thresholds scaled:
    a way to make a candidate noisy (factor < 1) or blunt (factor > 1; a
    blunt one also loses its sensor checks, which alert on their own)."""

    def train(X, t, name):
        factor = threshold_factor.get(name, 1.0)
        pipe, thr, _ = train_pipeline(X, SENSORS, name, time_us=t, sensor_checks=factor <= 1.0)
        return pipe, thr * factor

    return train


def test_the_default_is_kept_unless_a_challenger_is_clearly_better() -> None:
    far = {"pca": 0.010, "iforest": 0.009, "ecod": 0.004}
    det = {"pca": 0.30, "iforest": 0.30, "ecod": 0.10}
    # iforest's false alarms are not low enough; ecod is blunt.
    assert choose(far, det)[0] == "pca"
    # Within the detection slack and under the rate margin: chosen.
    det["ecod"] = 0.30 - DETECTION_SLACK / 2
    name, reason = choose(far, det)
    assert name == "ecod" and "0.0040" in reason
    # Two eligible: the fewer false alarms wins.
    far["iforest"] = 0.002
    assert choose(far, det)[0] == "iforest"
    # At exactly the margin a challenger is still eligible.
    assert choose({"pca": 0.02, "x": RATE_MARGIN * 0.02}, {"pca": 0.1, "x": 0.1})[0] == "x"
    with pytest.raises(ValueError, match="expected the default 'pca'"):
        choose({"ecod": 0.1}, {"ecod": 0.1})


def test_a_challenger_that_catches_clearly_more_at_no_more_false_alarms_wins() -> None:
    # bench/cycle_line.py, seed 2 of 4 runs: the codebook's false alarms were
    # 0.87 x PCA's (not under the margin) and its detection 0.92 against 0.65.
    far = {"pca": 0.0090, "iforest": 0.0, "codebook": 0.0078}
    det = {"pca": 0.645, "iforest": 0.509, "codebook": 0.916}
    name, reason = choose(far, det)
    assert name == "codebook" and "detection 0.916" in reason
    # More false alarms than the default: never, however much it catches.
    far["codebook"] = 0.0091
    assert choose(far, det)[0] == "pca"
    # Equal false alarms, a gain just under DETECTION_GAIN: the default stays.
    far["codebook"] = 0.0090
    det["codebook"] = 0.645 + DETECTION_GAIN * 0.9
    name, reason = choose(far, det)
    assert name == "pca" and "more detection" in reason
    # Two such challengers: the one that catches most.
    det.update(codebook=0.80, ecod=0.90)
    far["ecod"] = 0.0080  # above the margin (0.00675): the second rule only
    assert choose(far, det)[0] == "ecod"
    # The first rule still goes first: a challenger under the margin with its
    # detection kept wins over one that only catches more.
    far["iforest"], det["iforest"] = 0.001, 0.64
    assert choose(far, det)[0] == "iforest"


def test_one_stretch_of_history_keeps_the_default_and_says_why() -> None:
    X, t = _runs(1)
    calls = []
    sel = select_detector(X, t, lambda *a: calls.append(a), window=20)
    assert sel.detector == "pca" and sel.segments == 1
    assert "3 needed" in sel.reason and not sel.false_alarms
    assert calls == []  # no backtest is run
    # The same through train_pipeline: auto on one run is the default's model.
    pipe, thr, info = train_pipeline(X, SENSORS, "auto", time_us=t)
    ref, ref_thr, _ = train_pipeline(X, SENSORS, "pca", time_us=t)
    assert info["detector"] == "pca" and info["selection"]["segments"] == 1
    assert thr == ref_thr
    np.testing.assert_array_equal(pipe.decision_function(X[:50]), ref.decision_function(X[:50]))


def test_a_noisy_default_loses_to_a_challenger_and_a_blunt_one_never_wins() -> None:
    X, t = _runs(4)
    # PCA's threshold cut to a tenth: it alarms on most held-out rows.
    sel = select_detector(X, t, _trainer({"pca": 0.1}), window=20)
    assert sel.segments == 4
    assert set(sel.false_alarms) == set(CANDIDATES) == set(sel.detection)
    assert all(0.0 <= v <= 1.0 for v in [*sel.false_alarms.values(), *sel.detection.values()])
    assert sel.false_alarms["pca"] > 0.3
    assert sel.detector != "pca"
    assert sel.false_alarms[sel.detector] <= RATE_MARGIN * sel.false_alarms["pca"]
    # Every challenger made blunt (it never alerts): fewer false alarms, but
    # no detection of the sensors played backwards, so PCA stays.
    never = dict.fromkeys(CANDIDATES[1:], 1e9)
    sel = select_detector(X, t, _trainer(never), window=20)
    assert sel.detection["pca"] > DETECTION_SLACK
    assert all(sel.detection[c] == 0.0 for c in CANDIDATES[1:])
    assert sel.detector == "pca"


def test_train_pipeline_auto_records_its_choice_and_trains_it() -> None:
    X, t = _runs(3, seed=1)
    pipe, thr, info = train_pipeline(X, SENSORS, "auto", time_us=t)
    sel = info["selection"]
    assert sel["segments"] == 3 and sel["detector"] in CANDIDATES
    assert info["detector"] == sel["detector"]
    assert type(pipe.detector) is type(make_detector(sel["detector"]))
    assert np.isfinite(thr)


def test_auto_is_a_selection_not_a_detector() -> None:
    with pytest.raises(ValueError, match="selection among detectors"):
        make_detector("auto")


def test_a_challenger_that_cannot_be_trained_is_left_out_and_named() -> None:
    X, t = _runs(3, seed=2)
    real = _trainer({})

    def train(X_part, t_part, name):
        if name == "ecod":
            raise ValueError("expected at least 8 rows; got 3")
        return real(X_part, t_part, name)

    sel = select_detector(X, t, train, window=20)
    assert "ecod" not in sel.false_alarms and "pca" in sel.false_alarms
    assert "not trainable on the folds: ecod (expected at least 8 rows" in sel.reason

    def broken(X_part, t_part, name):
        raise ValueError("no usable sensor")

    # The default's own failure is the line's: it is not swallowed.
    with pytest.raises(ValueError, match="no usable sensor"):
        select_detector(X, t, broken, window=20)


def test_a_long_segment_is_cut_into_equal_pieces_and_a_short_one_stays_whole() -> None:
    from lineguard.detectors.selection import MIN_PIECE_ROWS, cut_into_pieces

    pieces = cut_into_pieces([(0, 4 * MIN_PIECE_ROWS + 10), (5000, 5000 + MIN_PIECE_ROWS - 1)])
    assert {b - a for a, b in pieces[:4]} == {MIN_PIECE_ROWS + 2, MIN_PIECE_ROWS + 3}
    assert pieces[0][0] == 0 and pieces[3][1] == 4 * MIN_PIECE_ROWS + 10
    assert all(a == b for (_, a), (b, _) in itertools.pairwise(pieces[:4]))
    assert pieces[4] == (5000, 5000 + MIN_PIECE_ROWS - 1)
