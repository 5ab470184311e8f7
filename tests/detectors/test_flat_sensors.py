"""A sensor with one value in every training row (a parked valve, a fixed
setpoint, an idle channel): the multivariate score leaves it out, and the step
check reports a reading that leaves that value by more than rounding."""

from __future__ import annotations

import numpy as np
import pytest

from lineguard.detectors.calibration import TRAINING_DEFAULTS, train_pipeline
from lineguard.detectors.scoring import score_batch
from lineguard.detectors.sensor_checks import READING_RESOLUTION, REASONS, SensorChecks

SENSORS = ["flow", "pressure", "vibration", "agitator_rpm"]
FLAT = SENSORS.index("agitator_rpm")
SETPOINT = 50.0
STEP = REASONS.index("step")


def line(n: int, seed: int) -> np.ndarray:
    """Two correlated process sensors, one independent, and a fixed setpoint."""
    rng = np.random.default_rng(seed)
    factor = np.cumsum(rng.normal(0.0, 0.3, n)) * 0.05
    return np.c_[
        factor + rng.normal(0.0, 0.1, n),
        2.0 * factor + rng.normal(0.0, 0.1, n),
        rng.normal(0.0, 1.0, n),
        np.full(n, SETPOINT),
    ]


@pytest.fixture(scope="module")
def trained():
    X = line(3000, seed=0)
    t = np.arange(X.shape[0], dtype=np.int64) * 1_000_000
    pipe, thr, _ = train_pipeline(X[:1500], SENSORS, "pca", time_us=t[:1500])
    return pipe, thr, X[1500:], t[1500:]


def score(trained, values: np.ndarray):
    pipe, thr, _, t = trained
    k, n = TRAINING_DEFAULTS.debounce
    result, _ = score_batch(pipe, values, None, thr, k, n, time_us=t)
    return result


def test_the_flat_sensor_is_found_and_left_out_of_the_features(trained) -> None:
    pipe, _, _, _ = trained
    assert pipe.checks_.flat_.tolist() == [False, False, False, True]
    assert np.isinf(pipe.scale_[FLAT]) and np.isfinite(np.delete(pipe.scale_, FLAT)).all()
    assert not pipe.checks_.checked_[FLAT]  # no freeze or relation check on it


@pytest.mark.parametrize("relative", [1e-9, 1e-7, 0.5 * READING_RESOLUTION])
def test_rounding_of_the_flat_reading_changes_nothing(trained, relative) -> None:
    _, _, test, _ = trained
    quiet = score(trained, test)
    rng = np.random.default_rng(1)
    jittered = test.copy()
    jittered[:, FLAT] *= 1.0 + relative * rng.uniform(-1.0, 1.0, test.shape[0])
    result = score(trained, jittered)
    # The score ignores the flat sensor entirely; no check fires on it.
    np.testing.assert_array_equal(result.score, quiet.score)
    np.testing.assert_array_equal(result.anomaly, quiet.anomaly)
    np.testing.assert_array_equal(result.reason, quiet.reason)
    assert quiet.anomaly.mean() < 0.05


def test_a_reading_that_leaves_the_setpoint_is_a_step_on_that_sensor(trained) -> None:
    _, _, test, _ = trained
    moved = test.copy()
    moved[500:, FLAT] = SETPOINT * (1.0 + 5 * READING_RESOLUTION)  # 50 -> 50.00025
    result = score(trained, moved)
    after = slice(502, None)
    assert result.anomaly[after].all()
    assert (result.reason[after] == STEP).all()
    assert (result.top_sensors[after, 0] == FLAT).all()
    # Before the change the line is as quiet as without it.
    np.testing.assert_array_equal(result.anomaly[:500], score(trained, test).anomaly[:500])


def test_flat_channel_is_no_mode_and_moving_recent_rows_make_no_flat_sensor() -> None:
    rng = np.random.default_rng(2)
    X = np.c_[rng.normal(0.0, 1.0, 2000), np.zeros(2000)]  # a heater that never switched on
    checks = SensorChecks().fit(X)
    assert checks.flat_.tolist() == [False, True]
    assert checks.modes_.size == 1
    Y = X.copy()
    Y[1500:, 1] = rng.normal(0.0, 1.0, 500)  # constant only in the older rows
    later = SensorChecks().fit(Y)
    assert later.flat_.tolist() == [False, False]
    # The older rows' one value is no range for the held-back rows that move:
    # the step check does not hold there and is switched off for the sensor.
    assert later.disabled_[1].tolist() == [False, True]
