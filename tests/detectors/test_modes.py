"""The multivariate score per operating mode (issue 16, item 2): lineguard.detectors.modes.

The synthetic line has one 0/1 state channel (a valve) and two modes with
opposite physics: with the valve shut, ``y`` follows ``x``; with it open,
``y`` follows ``-x``. Pooled over both modes, ``(x, y)`` is a round cloud, so a
single linear model cannot tell a shut-valve row with ``y = -x`` (the open
mode's physics: a fault here) from a normal one. A model per mode can.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from lineguard.detectors.calibration import mode_thresholds, train_pipeline
from lineguard.detectors.modes import ModeModels, steady_modes
from lineguard.detectors.pca import PCADetector
from lineguard.detectors.scoring import score_batch
from lineguard.detectors.sensor_checks import REASONS

SENSORS = ["valve", "x", "y"]
BLOCK = 300
SECOND_US = 1_000_000


def _line(rng: np.random.Generator, n_blocks: int, first_valve: int = 0) -> np.ndarray:
    """Blocks of BLOCK rows, the valve alternating between blocks."""
    n = n_blocks * BLOCK
    valve = ((np.arange(n) // BLOCK + first_valve) % 2).astype(float)
    x = rng.normal(size=n)
    sign = np.where(valve == 0, 1.0, -1.0)
    y = sign * x + 0.1 * rng.normal(size=n)
    return np.column_stack([valve, x, y])


def _times(n: int) -> np.ndarray:
    return np.arange(n, dtype=np.int64) * SECOND_US


def _trained(mode_models: bool | ModeModels, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = _line(rng, 10)
    # Untrimmed: the toy's valve switches are 6 % of the rows, which a 10 %
    # trim would cut from the pooled fit (its valve features then constant).
    return train_pipeline(
        X, SENSORS, "pca", time_us=_times(len(X)), mode_models=mode_models, max_trim=0.0
    )


def _shut_valve_rows_with_open_valve_physics(rng: np.random.Generator, n: int) -> np.ndarray:
    x = rng.normal(size=n)
    return np.column_stack([np.zeros(n), x, -x + 0.1 * rng.normal(size=n)])


@pytest.mark.parametrize("seed", [0, 1])
def test_a_fault_that_is_normal_in_another_mode_is_scored_by_the_mode_model(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    normal = _line(rng, 1)  # 300 shut-valve rows
    fault = _shut_valve_rows_with_open_valve_physics(rng, 300)
    X = np.concatenate([normal, fault])
    t = _times(len(X))
    rates = {}
    for modal in (True, False):
        pipeline, threshold, _ = _trained(modal, seed)
        result, _ = score_batch(pipeline, X, None, threshold, 2, 5, time_us=t)
        # Alerted rows; each stretch's first window (mixed rows) left out.
        rates[modal] = (float(result.anomaly[20:300].mean()), float(result.anomaly[320:].mean()))
    normal_rate, fault_rate = rates[True]
    assert fault_rate > 0.9, rates
    assert normal_rate < 0.05, rates
    # The premise: pooled over both modes, the same rows look normal.
    assert rates[False][1] < 0.2, rates


def test_the_mode_model_is_the_modes_own_fit_and_small_modes_keep_the_pooled_one() -> None:
    rng = np.random.default_rng(3)
    F = rng.normal(size=(700, 3))
    modes = np.repeat([0, 1, 2], [400, 250, 50])
    codes = np.array([0, 1, 2])
    pooled = PCADetector().fit(F)
    mm = ModeModels(min_rows=200).fit(F, modes, codes, PCADetector())
    assert mm.has_own_model.tolist() == [True, True, False]
    # Reference: plain PCADetector fits on each mode's rows.
    own0 = PCADetector().fit(F[:400])
    own1 = PCADetector().fit(F[400:650])
    probe = rng.normal(size=(6, 3))
    probe_modes = np.array([0, 1, 2, -1, 0, 1])
    got = mm.decision_function(probe, probe_modes, pooled)
    expected = np.array(
        [
            own0.decision_function(probe[[0]])[0],
            own1.decision_function(probe[[1]])[0],
            pooled.decision_function(probe[[2]])[0],  # too few rows: pooled
            pooled.decision_function(probe[[3]])[0],  # unseen mode: pooled
            own0.decision_function(probe[[4]])[0],
            own1.decision_function(probe[[5]])[0],
        ]
    )
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    shares = mm.contributions(probe, probe_modes, pooled)
    np.testing.assert_allclose(shares[0], own0.contributions(probe[[0]])[0], rtol=1e-12)
    np.testing.assert_allclose(shares[2], pooled.contributions(probe[[2]])[0], rtol=1e-12)


def test_a_mode_with_its_own_threshold_is_scored_in_units_of_it() -> None:
    rng = np.random.default_rng(4)
    F = rng.normal(size=(600, 2))
    modes = np.repeat([0, 1], 300)
    codes = np.array([5, 9])  # codes name modes across refits, not indices
    pooled = PCADetector().fit(F)
    mm = ModeModels(min_rows=10_000).fit(F, modes, codes, PCADetector())  # pooled everywhere
    mm.set_thresholds(2.0, {9: 8.0})
    probe = rng.normal(size=(2, 2))
    got = mm.decision_function(probe, np.array([0, 1]), pooled)
    raw = pooled.decision_function(probe)
    # Mode code 9 (index 1): threshold 8 on a line threshold of 2 -> a quarter.
    np.testing.assert_allclose(got, [raw[0], raw[1] * 2.0 / 8.0], rtol=1e-12)


def test_mode_thresholds_need_the_conformal_number_of_rows() -> None:
    # Mode 0's scores in a shuffled order: independent, so the plain rank.
    shuffled = np.random.default_rng(5).permutation(np.arange(1.0, 201.0))
    scores = np.concatenate([shuffled, np.arange(1.0, 51.0)])
    modes = np.repeat([0, 1], [200, 50])
    t = mode_thresholds(scores, modes, 3, 0.01)
    # Mode 0: rank ceil(0.99 * 201) = 199 of 1..200 -> 199. Mode 1: 50 < 99 rows.
    assert t[0] == 199.0
    assert np.isnan(t[1]) and np.isnan(t[2])


def test_an_unseen_mode_gets_its_own_reason_and_the_pooled_score() -> None:
    # A second state channel (a heater): training sees the states (valve,
    # heater) = (0, 0), (1, 0), (0, 1), never both on.
    rng = np.random.default_rng(6)
    X = _line(rng, 9)
    heater = ((np.arange(len(X)) // BLOCK) % 3 == 2).astype(float)
    X[heater == 1, 0] = 0.0
    X = np.column_stack([X, heater])
    sensors = [*SENSORS, "heater"]
    pipeline, threshold, info = train_pipeline(
        X, sensors, "pca", time_us=_times(len(X)), max_trim=0.0
    )
    assert info["modes"]["n_modes"] == 3 and all(info["modes"]["own_model"])
    test = X[:BLOCK].copy()
    test[150:, 0] = 1.0
    test[150:, -1] = 1.0  # both on: a state never seen in training
    result, _ = score_batch(pipeline, test, None, threshold, 2, 5, time_us=_times(BLOCK))
    unseen = REASONS.index("unseen_mode")
    assert (result.reason[150:] == unseen).all()
    assert (result.reason[20:150] != unseen).all()
    F, _, X_imp = pipeline.transform_rows(test)
    pooled = pipeline.detector_.decision_function(F[150:])
    np.testing.assert_allclose(result.score[150:], pooled, rtol=1e-12)
    # A batch wholly in the unseen mode too (one mode in the batch).
    alone, modes = pipeline.score_features(F[150:], X_imp[150:], X_imp[:150])
    assert (modes == -1).all()
    np.testing.assert_allclose(alone, pooled, rtol=1e-12)


def test_scores_do_not_depend_on_batching() -> None:
    pipeline, threshold, _ = _trained(True)
    rng = np.random.default_rng(8)
    X = _line(rng, 2, first_valve=1)
    t = _times(len(X))
    whole, _ = score_batch(pipeline, X, None, threshold, 2, 5, time_us=t)
    parts, state = [], None
    # 61-row batches: one starts 5 rows after the valve switch at row 300,
    # so those rows' transition is known only from the carried context.
    for lo in range(0, len(X), 61):
        r, state = score_batch(pipeline, X[lo : lo + 61], state, threshold, 2, 5, t[lo : lo + 61])
        parts.append(r)
    np.testing.assert_array_equal(np.concatenate([p.score for p in parts]), whole.score)
    np.testing.assert_array_equal(np.concatenate([p.top_sensors for p in parts]), whole.top_sensors)


def test_a_model_saved_before_modes_existed_scores_with_the_pooled_model() -> None:
    pipeline, threshold, _ = _trained(True)
    old = pickle.loads(pickle.dumps(pipeline))
    # What an older pickle lacks: neither the parameter nor the fitted part.
    del old.mode_models, old.mode_models_
    rng = np.random.default_rng(9)
    X = _line(rng, 1)
    result, _ = score_batch(old, X, None, threshold, 2, 5, time_us=_times(len(X)))
    F, _, _ = pipeline.transform_rows(X)
    np.testing.assert_allclose(result.score, pipeline.detector_.decision_function(F), rtol=1e-12)


def test_a_row_whose_window_spans_a_switch_is_a_transition() -> None:
    # Window 3: a row is steady once it and the 2 rows before are in one mode.
    modes = np.array([0, 0, 0, 1, 1, 1, 1, -1, 2])
    np.testing.assert_array_equal(steady_modes(modes, 0, 3), [0, 0, 0, -1, -1, 1, 1, -1, -1])
    # The same history cut after 4 rows, the last 2 carried as context.
    np.testing.assert_array_equal(steady_modes(modes[2:], 2, 3), [-1, 1, 1, -1, -1])


def test_saved_models_carry_their_modes_through_the_registry(tmp_path) -> None:
    from lineguard.models.registry import Registry
    from lineguard.models.training import train_from_rows

    rng = np.random.default_rng(10)
    X = _line(rng, 10)
    t = _times(len(X)) + 1_600_000_000 * SECOND_US
    registry = Registry(tmp_path)
    bundle = train_from_rows(registry, "two-mode", sensors=SENSORS, time_us=t, X=X, source="toy")
    manifest = registry.manifest("two-mode", bundle.version)
    assert manifest["calibration"]["modes"]["codes"] == [0, 1]
    assert manifest["calibration"]["modes"]["own_model"] == [True, True]
    loaded = registry.load("two-mode")
    assert loaded.pipeline.mode_models_.has_own_model.tolist() == [True, True]
    probe = _line(np.random.default_rng(11), 1)
    np.testing.assert_array_equal(
        loaded.pipeline.decision_function(probe), bundle.pipeline.decision_function(probe)
    )


def test_per_mode_thresholds_survive_the_refit_on_all_rows() -> None:
    # The toy's modes differ in spread (the open valve's y is noisier), so
    # their thresholds differ.
    rng = np.random.default_rng(12)
    X = _line(rng, 10)
    X[X[:, 0] == 1, 2] += 0.5 * rng.normal(size=int((X[:, 0] == 1).sum()))
    kw = {
        "time_us": _times(len(X)),
        "max_trim": 0.0,
        "mode_models": ModeModels(per_mode_thresholds=True),
    }
    calibrated, thr0, _ = train_pipeline(X, SENSORS, "pca", refit=False, **kw)
    refitted, thr1, info = train_pipeline(X, SENSORS, "pca", **kw)
    factors = calibrated.mode_models_.factor_
    assert thr0 == thr1
    assert not np.allclose(factors, 1.0)
    np.testing.assert_allclose(refitted.mode_models_.factor_, factors, rtol=1e-12)
    np.testing.assert_allclose(info["modes"]["threshold_factor"], factors, rtol=1e-5)
