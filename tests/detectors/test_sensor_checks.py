"""Per-sensor, per-mode checks: freeze, step, relation, unseen mode."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.base import clone

from lineguard.detectors.scoring import ScoringState
from lineguard.detectors.sensor_checks import (
    FREEZE,
    RELATION,
    STEP,
    UNSEEN_MODE,
    SensorChecks,
    effective_rows,
    unchanged_runs,
)

# Columns: valve (0/1 state), level (rises while the valve is open, holds
# exactly while it is closed), flow (noisy, 0.5 while open), and two
# readings that follow it, temp = 2 * flow and outlet temp = 2 * flow: with
# three related readings the one that leaves the others is identifiable
# (with two, either could be the one that moved).
VALVE, LEVEL, FLOW, TEMP, OUTLET = range(5)


def _batches(rng: np.random.Generator, n_batches: int) -> np.ndarray:
    rows = []
    for _ in range(n_batches):
        level = 0.0
        for valve in (1,) * 60 + (0,) * 40:
            flow = 0.5 * valve + rng.normal(scale=0.02)
            level = level + 0.01 * valve + (rng.normal(scale=0.001) if valve else 0.0)
            temp, outlet = 2 * flow + rng.normal(scale=0.01, size=2)
            rows.append([valve, level, flow, temp, outlet])
    return np.array(rows)


@pytest.fixture(scope="module")
def fitted() -> SensorChecks:
    X = _batches(np.random.default_rng(0), 12)
    starts = np.arange(0, len(X), 100)  # each batch its own segment
    return SensorChecks().fit(X, starts=starts)


def test_state_channels_and_modes_are_learned_from_normal_data(fitted: SensorChecks) -> None:
    assert fitted.state_channels_.tolist() == [True, False, False, False, False]
    assert fitted.modes_.tolist() == [0, 1]  # valve closed, valve open
    # The level normally changes on every open-valve row, never while closed.
    open_mode = 1
    assert fitted.freeze_limit_[open_mode, LEVEL] < 10
    assert fitted.freeze_limit_[0, LEVEL] > 40


def test_frozen_level_is_caught_only_where_its_mode_moves_it(fitted: SensorChecks) -> None:
    X = _batches(np.random.default_rng(1), 1)
    stuck = X.copy()
    stuck[20:, LEVEL] = stuck[20, LEVEL]  # stuck while the valve is still open
    result, _ = fitted.check(stuck, None, None)
    fired = np.flatnonzero(result.reason == FREEZE)
    assert fired.size and 20 < fired[0] < 30
    assert set(result.sensor[fired].tolist()) == {LEVEL}
    # The same flat level while the valve is closed is normal.
    quiet, _ = fitted.check(X, None, None)
    assert not (quiet.reason == FREEZE).any()


def test_state_carries_freeze_runs_across_batches(fitted: SensorChecks) -> None:
    X = _batches(np.random.default_rng(1), 1)
    X[20:, LEVEL] = X[20, LEVEL]
    whole, _ = fitted.check(X, None, None)
    a, state = fitted.check(X[:23], None, None)
    b, _ = fitted.check(X[23:], X[22], state)
    np.testing.assert_array_equal(np.concatenate([a.reason, b.reason]), whole.reason)
    np.testing.assert_array_equal(np.concatenate([a.sensor, b.sensor]), whole.sensor)


def test_broken_relation_names_the_drifting_sensor(fitted: SensorChecks) -> None:
    X = _batches(np.random.default_rng(2), 1)
    X[30:50, TEMP] += 0.3  # temp leaves 2 * flow, still inside temp's range
    result, _ = fitted.check(X, None, None)
    assert (result.reason[30:50] == RELATION).mean() > 0.8
    assert (result.sensor[30:50] == TEMP).all()
    assert not result.reason[:30].any()


def test_step_out_of_the_modes_range() -> None:
    train = _batches(np.random.default_rng(0), 12)
    # The relation check alone would also see this step; judge the range alone.
    steps_only = SensorChecks(relation_factor=None).fit(train, starts=np.arange(0, 1200, 100))
    X = _batches(np.random.default_rng(3), 1)
    X[70:, LEVEL] += 1.0  # closed valve: the level never sits this high
    result, _ = steps_only.check(X, None, None)
    assert (result.reason[70:] == STEP).all()
    assert (result.sensor[70:] == LEVEL).all()
    assert not result.reason[:70].any()


def test_a_state_combination_never_seen_is_reported_as_such() -> None:
    rng = np.random.default_rng(4)
    X = _batches(rng, 6)
    heater = (np.arange(len(X)) % 100 >= 60).astype(float)  # heater only while closed
    X = np.column_stack([X, heater])
    checks = SensorChecks().fit(X, starts=np.arange(0, len(X), 100))
    Y = X[:100].copy()
    Y[10:15, -1] = 1.0  # heater on with the valve open: never seen
    result, _ = checks.check(Y, None, None)
    assert (result.reason[10:15] == UNSEEN_MODE).all()
    assert (result.sensor[10:15] == X.shape[1] - 1).all()  # the heater is named
    assert (result.mode[10:15] == -1).all()


def test_checks_a_short_stretch_cannot_support_are_switched_off() -> None:
    """A slow wander in one short stretch: no range/relation limits for it."""
    rng = np.random.default_rng(5)
    n = 400
    slow = np.cumsum(rng.normal(scale=0.05, size=n))  # random walk: never recurs
    fast = rng.normal(size=n)
    X = np.column_stack([slow, fast, fast * 2 + rng.normal(scale=0.1, size=n)])
    checks = SensorChecks().fit(X)
    assert effective_rows(X[:280])[0] < 30 < effective_rows(X[:280])[1]
    assert checks.disabled_[1, 0] and checks.disabled_[2, 0]  # step, relation off for slow
    assert not checks.disabled_[1, 1] and not checks.disabled_[2, 2]


def test_unchanged_runs_with_carry() -> None:
    same = np.array([[1, 0], [1, 1], [0, 1], [1, 1]], dtype=bool)
    runs = unchanged_runs(same, np.array([5, 0]))
    assert runs.tolist() == [[6, 0], [7, 1], [0, 2], [1, 3]]


def test_scikit_learn_contract(fitted: SensorChecks) -> None:
    params = fitted.get_params()
    assert clone(fitted).get_params() == params
    assert not hasattr(clone(fitted), "modes_")
    before = {k: v.copy() for k, v in vars(fitted).items() if isinstance(v, np.ndarray)}
    fitted.check(_batches(np.random.default_rng(6), 1), None, None)
    for k, v in before.items():
        np.testing.assert_array_equal(getattr(fitted, k), v, err_msg=k)


def test_check_state_survives_json() -> None:
    from lineguard.detectors.sensor_checks import CheckState

    state = ScoringState(checks=CheckState(np.array([3, 0, 7]), 1), last_time_us=12)
    back = ScoringState.from_dict(json.loads(json.dumps(state.to_dict())))
    assert back.checks.runs.tolist() == [3, 0, 7] and back.checks.mode == 1
    assert back.last_time_us == 12


def test_a_frozen_stretch_in_the_training_window_does_not_blind_the_freeze_check() -> None:
    """Dirty training window: 10 frozen rows among 2,400 open-valve rows (0.4 %)."""
    X = _batches(np.random.default_rng(7), 40)
    X[1005:1015, LEVEL] = X[1005, LEVEL]  # batch 10, valve open: stuck for 10 rows
    starts = np.arange(0, len(X), 100)
    test = _batches(np.random.default_rng(8), 1)
    test[20:, LEVEL] = test[20, LEVEL]

    def first_freeze(checks: SensorChecks) -> int:
        result, _ = checks.check(test, None, None)
        return int(np.flatnonzero(result.reason == FREEZE)[0])

    tolerant = SensorChecks().fit(X, starts=starts)  # trim = 0.5 % of the mode's rows
    plain = SensorChecks(trim=0.0).fit(X, starts=starts)
    assert first_freeze(tolerant) < 20 + 10
    assert first_freeze(plain) > 20 + 20  # its limit learned from the frozen stretch


def test_checks_saved_before_the_hot_path_tables_score_the_same(fitted: SensorChecks) -> None:
    # Checks fitted (and saved) before fit gathered the limits of each
    # check's columns (freeze_columns_, step_center_, ...) gather them per
    # call; both ways give the same result, and the gathered tables are the
    # limits' own columns.
    X = _batches(np.random.default_rng(5), 2)
    X[130:150, LEVEL] = X[130, LEVEL]  # frozen while the valve is open
    X[160, FLOW] += 0.3  # a step
    X[170:175, TEMP] += 0.2  # leaves its relation to flow and outlet
    new, new_state = fitted.check(X, None, None)
    assert (new.reason > 0).sum() >= 3  # something fires, so the tables matter
    old = clone(fitted)
    old.__dict__.update(
        {k: v for k, v in fitted.__dict__.items() if k.endswith("_") and not k.startswith("_")}
    )
    for name in ("freeze_columns_", "step_center_", "step_inv_half_", "relation_column_limit_"):
        delattr(old, name)
    again, again_state = old.check(X, None, None)
    for field in ("reason", "sensor", "mode"):
        assert getattr(again, field).tobytes() == getattr(new, field).tobytes(), field
    assert again_state.runs.tolist() == new_state.runs.tolist()
    cols, center, inv_half, rel = fitted._hot_tables()
    assert cols.tolist() == np.flatnonzero(np.isfinite(fitted.freeze_limit_).any(axis=0)).tolist()
    assert np.array_equal(center, fitted.center_[:, fitted.step_columns_])
    assert np.array_equal(inv_half, fitted.inv_half_[:, fitted.step_columns_])
    assert np.array_equal(rel, fitted.relation_limit_[:, fitted.relation_columns_])


def _wandering_stretch(rng: np.random.Generator, n: int, slow_at: float | None = None):
    """Three related fast readings, and a casing-like temperature that wanders.

    Columns: slow (a random walk), a (fast), b = 2 a, c = -a. In training
    ``c`` also co-drifts a little with the walk, as two slow-moving parts of
    a short stretch do. With ``slow_at`` the walk continues from there, far
    outside its training range, and ``c`` keeps its relation to ``a`` only
    (healthy rows after a warm-up).
    """
    walk = np.cumsum(rng.normal(scale=0.05, size=n))
    a = rng.normal(size=n)
    b = 2 * a + rng.normal(scale=0.1, size=n)
    c = -a + rng.normal(scale=0.1, size=n)
    if slow_at is None:
        c += 0.1 * (walk - walk.mean()) / walk.std()
    else:
        walk += slow_at
    return np.column_stack([walk, a, b, c])


def test_a_wandering_slow_sensor_is_no_regressor_of_the_relation_checks() -> None:
    """A level the fit rows do not pin down must not carry the other sensors' relations.

    In a short stretch a slowly wandering temperature co-drifts with other
    readings; a regression leaning on it extrapolates as soon as the
    temperature leaves its training range, and the *other* sensors'
    relation checks fire on healthy rows (SKAB valve1/2 before this rule).
    """
    rng = np.random.default_rng(11)
    train = _wandering_stretch(rng, 400)
    span = train[:, 0].max() - train[:, 0].min()
    healthy = _wandering_stretch(rng, 300, slow_at=train[:, 0].max() + 3 * span)
    broken = healthy.copy()
    broken[:, 3] += 1.0  # c leaves its relation to a and b (about 7 residual sd)

    def rates(checks: SensorChecks) -> tuple[float, float]:
        false_alarms = checks.check(healthy, None, None)[0]
        caught = checks.check(broken, None, None)[0]
        on_c = (caught.reason == RELATION) & (caught.sensor == 3)
        return float(np.mean(false_alarms.reason == RELATION)), float(np.mean(on_c))

    checks = SensorChecks(range_margin=None).fit(train)
    assert effective_rows(train[:280])[0] < 30  # the walk: too few effective rows
    assert not checks.regressors_[0] and checks.regressors_[1:].all()
    false_alarm_rate, caught_rate = rates(checks)
    assert false_alarm_rate < 0.01, f"relation fired on {false_alarm_rate:.0%} of healthy rows"
    assert caught_rate > 0.95, f"broken relation of c caught on only {caught_rate:.0%} of rows"
    # The same fit with the walk as a regressor shows what the rule prevents:
    # false alarms on healthy rows, or a relation check switched off for c.
    leaning = SensorChecks(range_margin=None, bounded_regressors=False).fit(train)
    assert leaning.regressors_.all()
    fa, caught = rates(leaning)
    assert fa > 0.5 or caught < 0.5, (fa, caught)
