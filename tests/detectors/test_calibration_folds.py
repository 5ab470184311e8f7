"""Folded calibration: with several runs, every run's scores set the threshold."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from lineguard.detectors.calibration import (
    CALIBRATION_FOLDS,
    TRAINING_DEFAULTS,
    _in_history,
    _out_of_fold_scores,
    _same_mode_keys,
    calibration_folds,
    dirty_folds,
    stretch_pieces,
    train_pipeline,
)
from lineguard.detectors.scoring import score_batch, segment_starts
from tests.support.reactor_line import SENSORS, STEP_US, reactor_line, reactor_runs

HOUR_US = 3_600 * 10**6


def _times(*lengths: int) -> np.ndarray:
    """Frame times of consecutive runs of ``lengths`` rows (1 s apart), a day between runs."""
    parts, start = [], 0
    for n in lengths:
        parts.append(start + np.arange(n, dtype=np.int64) * 10**6)
        start = int(parts[-1][-1]) + 24 * HOUR_US
    return np.concatenate(parts)


def test_folds_are_whole_runs_of_about_equal_rows_covering_the_history() -> None:
    t = _times(100, 100, 100, 100, 100, 100, 100, 100, 100, 100)
    folds = calibration_folds(t, 60 * 10**6, 20)
    assert len(folds) == CALIBRATION_FOLDS == 5
    assert folds == [(0, 200), (200, 400), (400, 600), (600, 800), (800, 1000)]


def test_three_runs_are_three_folds_and_two_are_none() -> None:
    assert calibration_folds(_times(300, 200, 400), 60 * 10**6, 20) == [
        (0, 300),
        (300, 500),
        (500, 900),
    ]
    assert calibration_folds(_times(500, 500), 60 * 10**6, 20) is None
    # One stretch, or no gap bound: nothing to rotate.
    assert calibration_folds(_times(900), 60 * 10**6, 20) is None
    assert calibration_folds(_times(300, 300, 300), None, 20) is None


def test_a_run_shorter_than_the_window_joins_a_fold_and_is_not_one() -> None:
    # Runs of 5 rows hold no full window: they cannot be a fold of their own.
    folds = calibration_folds(_times(300, 5, 300, 5, 300), 60 * 10**6, 20)
    assert folds is not None and len(folds) == 3
    assert folds[0][0] == 0 and folds[-1][1] == 910
    assert all(a < b for a, b in folds)
    assert all(b == a2 for (_, b), (a2, _) in itertools.pairwise(folds))
    assert calibration_folds(_times(300, 5, 300, 5), 60 * 10**6, 20) is None


def test_train_pipeline_says_which_calibration_it_used() -> None:
    X, t = reactor_runs(3, 600, 0)
    _, _, folded = train_pipeline(X, SENSORS, "pca", time_us=t)
    assert folded["calibration"] == "out_of_fold" and folded["calibration_folds"] == 3
    _, _, holdout = train_pipeline(X, SENSORS, "pca", time_us=t, calibration="holdout")
    assert holdout["calibration"] == "holdout" and holdout["calibration_folds"] is None
    _, _, one = train_pipeline(X[:600], SENSORS, "pca", time_us=t[:600])
    assert one["calibration"] == "holdout"
    _, _, kept = train_pipeline(X, SENSORS, "pca", time_us=t, refit=False)
    assert kept["calibration"] == "holdout"  # the calibrated model is the one served
    with pytest.raises(ValueError, match="calibration must be 'folded' or 'holdout'"):
        train_pipeline(X, SENSORS, "pca", time_us=t, calibration="cv")


def _unseen_normal_far(pipe, threshold: float, seed: int, runs: int = 10) -> float:
    k, n = TRAINING_DEFAULTS.debounce
    ts = np.arange(1500, dtype=np.int64) * STEP_US + 10**15
    rates = []
    for r in range(runs):
        result, _ = score_batch(
            pipe, reactor_line(1500, 1000 * seed + 600 + r), None, threshold, k, n, time_us=ts
        )
        rates.append(np.mean(result.anomaly))
    return float(np.mean(rates))


def test_folded_thresholds_hold_the_target_on_runs_the_line_never_showed() -> None:
    # Five normal runs of a slowly wandering continuous process: its most
    # recent 30 % (a run and a half) happen to be calm on this seed, and a
    # threshold set there alarms on 3.9 % of the rows of ten unseen normal
    # runs. Scored out of fold, all five runs set it: 0.97 %.
    far = {}
    for calibration in ("holdout", "folded"):
        X, t = reactor_runs(5, 1000, 2000)
        pipe, threshold, _ = train_pipeline(X, SENSORS, "pca", time_us=t, calibration=calibration)
        far[calibration] = _unseen_normal_far(pipe, threshold, 2)
    assert far["holdout"] > 0.03
    assert far["folded"] < 0.015


def test_a_fold_holding_a_fault_is_set_aside_and_clean_folds_are_not() -> None:
    rng = np.random.default_rng(5)
    clean = [rng.exponential(size=800) for _ in range(5)]
    assert dirty_folds(clean, 0.01) == set()
    faulty = [s.copy() for s in clean]
    faulty[1][300:700] += 20.0  # half the run far above every normal score
    assert dirty_folds(faulty, 0.01) == {1}
    # Never down to fewer than three folds, never a majority of them.
    three = [s.copy() for s in faulty[:3]]
    assert dirty_folds(three, 0.01) == set()
    # The worst first: a second, larger fault is set aside, then the first.
    worse = [s.copy() for s in faulty]
    worse[3][100:600] += 100.0
    assert dirty_folds(worse, 0.01) == {1, 3}
    worst = [s.copy() for s in worse]
    worst[4][:500] += 500.0
    assert len(dirty_folds(worst, 0.01)) == 2
    # The same fault in two runs of five: the worst-looking other fold is no
    # judge, so neither faulty run hides the other.
    twice = [s.copy() for s in clean]
    twice[1][300:700] += 20.0
    twice[3][300:700] += 20.0
    assert dirty_folds(twice, 0.01) == {1, 3}


def test_a_training_run_with_a_fault_does_not_set_the_threshold() -> None:
    # Half of the second of five runs carries a slowly decaying catalyst.
    # Pooled with the others, its out-of-fold scores raised PCA's threshold
    # from 4.7 to 17.7; set aside, the other four set it.
    X, t = reactor_runs(5, 1000, 0)
    X[1000:2000] = reactor_line(1000, 1, "catalyst_decay", 500)
    _, threshold, info = train_pipeline(X, SENSORS, "pca", time_us=t)
    assert info["calibration_folds_set_aside"] == [[1000, 2000]]
    assert threshold < 6.0
    X, t = reactor_runs(5, 1000, 0)
    _, _, clean = train_pipeline(X, SENSORS, "pca", time_us=t)
    assert clean["calibration_folds_set_aside"] == []


def test_runs_set_aside_in_turn_are_named_by_their_rows_in_the_history() -> None:
    # Rows 1000-2000 left out first; the training on the rest then left out
    # its rows 2000-3000, which are the history's 3000-4000.
    assert _in_history([(1000, 2000)], [[2000, 3000]]) == [[1000, 2000], [3000, 4000]]
    assert _in_history([(1000, 2000)], [[0, 500]]) == [[0, 500], [1000, 2000]]
    assert _in_history([(0, 100), (300, 400)], [[200, 250]]) == [[0, 100], [300, 400], [400, 450]]


def test_a_training_run_set_aside_leaves_the_model_as_if_it_was_never_given() -> None:
    # The faulty run's rows would widen the detector's normal cloud and the
    # checks' ranges: set aside, it is out of the served model too, which is
    # then the model of the four clean runs -- same threshold, same scores.
    X, t = reactor_runs(5, 1000, 0)
    X[1000:2000] = reactor_line(1000, 1, "catalyst_decay", 500)
    pipe, threshold, info = train_pipeline(X, SENSORS, "pca", time_us=t)
    assert info["calibration_folds_set_aside"] == [[1000, 2000]]
    assert info["model_rows"] == 4000
    clean = np.r_[0:1000, 2000:5000]
    pipe4, threshold4, info4 = train_pipeline(X[clean], SENSORS, "pca", time_us=t[clean])
    assert info4["calibration_folds_set_aside"] == [] and info4["model_rows"] == 4000
    assert threshold == threshold4
    k, n = TRAINING_DEFAULTS.debounce
    ts = np.arange(1500, dtype=np.int64) * STEP_US + 10**15
    faulty = reactor_line(1500, 500, "catalyst_decay", 300)
    served, _ = score_batch(pipe, faulty, None, threshold, k, n, time_us=ts)
    four, _ = score_batch(pipe4, faulty, None, threshold4, k, n, time_us=ts)
    np.testing.assert_array_equal(served.score, four.score)
    np.testing.assert_array_equal(served.anomaly, four.anomaly)
    # A decaying catalyst is caught on 96 % of its rows; by the model that
    # had learned the faulty run as normal (threshold from the clean runs
    # only), on 45 %.
    assert np.mean(served.anomaly[300:]) > 0.8


def test_a_fault_that_recurs_in_two_runs_is_set_aside_from_both() -> None:
    # A coolant valve that sticks in the second and the fourth of five runs:
    # judged against all the other runs, each met a threshold the other had
    # raised, neither was set aside and the threshold came out at 124.
    X, t = reactor_runs(5, 1000, 0)
    for r in (1, 3):
        X[1000 * r : 1000 * (r + 1)] = reactor_line(1000, r, "coolant_valve_stuck", 500)
    _, threshold, info = train_pipeline(X, SENSORS, "pca", time_us=t)
    assert info["calibration_folds_set_aside"] == [[1000, 2000], [3000, 4000]]
    assert info["model_rows"] == 3000
    assert threshold < 6.0


def test_auto_chooses_again_without_the_faulty_run() -> None:
    # The detector's choice is made on the clean runs too: with a stuck
    # coolant valve in the second run, auto's training is that of the other
    # four (a codebook chosen on the faulty history would learn the stuck
    # valve as one more normal state).
    X, t = reactor_runs(5, 1000, 2000)
    X[1000:2000] = reactor_line(1000, 2001, "coolant_valve_stuck", 500)
    _, threshold, info = train_pipeline(X, SENSORS, "auto", time_us=t)
    assert info["calibration_folds_set_aside"] == [[1000, 2000]]
    clean = np.r_[0:1000, 2000:5000]
    _, threshold4, info4 = train_pipeline(X[clean], SENSORS, "auto", time_us=t[clean])
    assert info["detector"] == info4["detector"]
    assert info["selection"] == info4["selection"]
    assert threshold == threshold4


def _valve_runs(n_runs: int, heater_runs: int = 0, seed: int = 8) -> np.ndarray:
    """Runs of 600 rows of a valve line (y follows x shut, -x open); the
    first ``heater_runs`` runs also switch a heater on for a while."""
    rng = np.random.default_rng(seed)
    runs = []
    for r in range(n_runs):
        valve = ((np.arange(600) // 150 + r) % 2).astype(float)
        heater = np.zeros(600)
        if r < heater_runs:
            heater[200:400] = 1.0
        x = rng.normal(size=600)
        y = np.where(valve == 0, 1.0, -1.0) * x + 0.1 * rng.normal(size=600) + heater
        runs.append(np.column_stack([valve, heater, x, y]))
    return np.vstack(runs)


def _kept_rows(t: np.ndarray, lo: int, hi: int, bound: int, window: int) -> np.ndarray:
    """Rows of [lo, hi) that out-of-fold scoring keeps: full windows per run."""
    starts = np.r_[segment_starts(t[lo:hi], bound, hi - lo), hi - lo]
    return np.concatenate([np.arange(a + window - 1, b) for a, b in itertools.pairwise(starts)])


def test_per_mode_lines_are_calibrated_out_of_fold_with_each_score_in_its_mode() -> None:
    sensors = ["valve", "heater", "x", "y"]
    X, t = _valve_runs(6, heater_runs=6), _times(*[600] * 6)
    _, _, info = train_pipeline(X, sensors, "pca", time_us=t)
    assert info["calibration"] == "out_of_fold" and info["modes"] is not None
    reference = train_pipeline(X, sensors, "pca", time_us=t, refit=False)[0]
    folds = calibration_folds(t, reference.max_gap_us_, reference.window)
    scored = _out_of_fold_scores(
        reference.__sklearn_clone__, X, t, folds, reference.window, reference
    )
    for (lo, hi), (scores, modes) in zip(folds, scored, strict=True):
        assert modes is not None and modes.shape == scores.shape
        judged = modes >= 0
        assert judged.mean() > 0.8  # the rest are transitions
        rows = lo + _kept_rows(t, lo, hi, reference.max_gap_us_, reference.window)
        assert np.array_equal(modes[judged], reference.checks_.modes_of(X[rows])[judged])


def test_mode_codes_are_compared_only_between_models_that_name_modes_alike() -> None:
    # With the heater switching, modes are named by two state channels;
    # without, by one: the same code then means another mode, and a fold
    # model's scores count for the line's threshold only.
    sensors = ["valve", "heater", "x", "y"]
    t = _times(*[600] * 4)
    two = train_pipeline(_valve_runs(4, heater_runs=4), sensors, "pca", time_us=t)[0]
    one = train_pipeline(_valve_runs(4), sensors, "pca", time_us=t)[0]
    again = train_pipeline(_valve_runs(4, heater_runs=4, seed=9), sensors, "pca", time_us=t)[0]
    assert two.checks_.state_channels_.tolist() == [True, True, False, False]
    assert one.checks_.state_channels_.tolist() == [True, False, False, False]
    assert not _same_mode_keys(two, one)
    assert _same_mode_keys(two, again)


def test_a_fault_at_the_end_of_one_long_stretch_leaves_the_training() -> None:
    # One gap-free stretch of 4,000 rows (a historian range), its coolant
    # valve stuck for the last 1,000. As the held-back rows, the stuck valve
    # set the threshold at 119-168 and the served model missed it on every
    # row (bench: 0.0 %). Its piece is judged as a faulty run is, and leaves.
    X = reactor_line(4000, 7, "coolant_valve_stuck", 3000)
    t = np.arange(4000, dtype=np.int64) * STEP_US + 10**15
    pipe, threshold, info = train_pipeline(X, SENSORS, "pca", time_us=t)
    assert info["calibration_folds_set_aside"] == [[3000, 4000]]
    assert info["model_rows"] == 3000 and info["calibration"] == "holdout"
    assert threshold < 10.0
    k, n = TRAINING_DEFAULTS.debounce
    ts = np.arange(1500, dtype=np.int64) * STEP_US + 10**16
    stuck, _ = score_batch(
        pipe, reactor_line(1500, 507, "coolant_valve_stuck", 300), None, threshold, k, n, time_us=ts
    )
    assert np.mean(stuck.anomaly[300:]) > 0.9


def test_a_clean_long_stretch_keeps_its_holdout_threshold_bit_for_bit() -> None:
    # The pieces only judge: with none set aside, the line is trained as the
    # holdout trains it, the same threshold and the same scores.
    X = reactor_line(4000, 7)
    t = np.arange(4000, dtype=np.int64) * STEP_US + 10**15
    assert stretch_pieces(4000) == [(0, 1000), (1000, 2000), (2000, 3000), (3000, 4000)]
    assert stretch_pieces(3999) is None  # three pieces: none could leave
    # A long historian range: five pieces, one fit each, however long.
    assert [b - a for a, b in stretch_pieces(100_000)] == [20_000] * 5
    pipe, threshold, info = train_pipeline(X, SENSORS, "pca", time_us=t)
    ref, ref_threshold, _ = train_pipeline(X, SENSORS, "pca", time_us=t, calibration="holdout")
    assert info["calibration_folds_set_aside"] == [] and info["calibration"] == "holdout"
    assert threshold == ref_threshold
    later = reactor_line(500, 8)
    np.testing.assert_array_equal(pipe.decision_function(later), ref.decision_function(later))


def test_pieces_of_one_stretch_are_judged_from_the_most_recent_only() -> None:
    # Five pieces; the oldest far above the others (a stretch that drifted
    # away from where it began) or the latest (a fault running at the end).
    rng = np.random.default_rng(3)
    pieces = [rng.normal(size=1000) for _ in range(5)]
    oldest = [pieces[0] + 4.0, *pieces[1:]]
    latest = [*pieces[:4], pieces[4] + 4.0]
    assert dirty_folds(oldest, 0.01) == {0}
    assert dirty_folds(oldest, 0.01, latest_only=True) == set()
    assert dirty_folds(latest, 0.01, latest_only=True) == {4}
    # A fault over the last two pieces: the latest first, then the one before.
    both = [*pieces[:3], pieces[3] + 4.0, pieces[4] + 4.0]
    assert dirty_folds(both, 0.01, latest_only=True) == {3, 4}
