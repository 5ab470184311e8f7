"""Rare but normal events on a discrete line: what training must not cut out.

A conveyor runs and stops in blocks of 400 rows; its motor current follows
the belt speed; a reject gate opens for one row at random, on 2.5 % of the
rows. Everything here is normal operation, and each event is rare enough
for a robust fit to take it for an anomaly:

* the conveyor's switches (5 % of the rows have one in their window) are
  the top-scoring rows of their mode, and a trimmed fit cut them all: the
  first switch after training then scored some 3,000 times the limit, and
  among the held-back rows it set the threshold there (a blind line);
* the gate's row was cut too, leaving its reading without spread, and a
  detector that floors a zero spread at 1e-9 scored the next opening at
  1e18 (:func:`lineguard.detectors.base.feature_scale`); an open gate is a
  category of normal rows, trimmed within itself, not as the closed rows' tail;
* the current, a blocky signal as a whole, looked like a few independent
  rows, so its range and relation checks were never trusted, though within
  each conveyor state it is white noise around a level;
* the gate is a 0/1 channel like the conveyor's state. Taken as a mode
  channel it makes combinations too rare to learn; of the two, the one
  that flips every few rows is the one to judge as a sensor, and a refit
  must keep the calibrated model's choice.
"""

from __future__ import annotations

import numpy as np
import pytest

from lineguard.detectors.calibration import TRAINING_DEFAULTS, train_pipeline
from lineguard.detectors.scoring import score_batch
from lineguard.detectors.sensor_checks import REASONS, SensorChecks
from tests.support.conveyor_line import SENSORS, conveyor_line

CURRENT = SENSORS.index("motor_current")
TRAIN, SCORE = 4000, 4000
#: Fault rows of the scored stretch: the current 0.5 A (10 noise sd) high while the belt runs.
FAULT = slice(2000, 3000)


@pytest.fixture(scope="module")
def line() -> tuple[np.ndarray, np.ndarray]:
    X = conveyor_line(TRAIN + SCORE, seed=0)
    return X, np.arange(X.shape[0], dtype=np.int64) * 1_000_000


def _score(pipe, thr, X, t):
    k, n = TRAINING_DEFAULTS.debounce
    result, _ = score_batch(pipe, X, None, thr, k, n, time_us=t)
    return result


@pytest.fixture(scope="module", params=[True, False], ids=["refit", "calibrated"])
def trained(request, line):
    X, t = line
    return train_pipeline(X[:TRAIN], SENSORS, "pca", time_us=t[:TRAIN], refit=request.param)


def test_the_gate_not_the_conveyor_is_judged_as_a_sensor(trained) -> None:
    pipe, _, info = trained
    assert info["channels_set_aside"] == ["reject_gate"]
    assert pipe.checks_.state_channels_.tolist() == [True, False, False, False]


def test_the_refit_keeps_the_calibrated_models_mode_channels(line) -> None:
    X, t = line
    calibrated = train_pipeline(X[:TRAIN], SENSORS, "pca", time_us=t[:TRAIN], refit=False)[0]
    refitted = train_pipeline(X[:TRAIN], SENSORS, "pca", time_us=t[:TRAIN], refit=True)[0]
    np.testing.assert_array_equal(
        refitted.checks_.channels_set_aside_, calibrated.checks_.channels_set_aside_
    )
    np.testing.assert_array_equal(refitted.checks_.modes_, calibrated.checks_.modes_)


def test_switches_and_gate_openings_stay_normal(trained, line) -> None:
    pipe, thr, _ = trained
    X, t = line
    # A threshold of the order of the limits: no normal event was cut out of
    # the model and then scored as thousands of limits (it was 2,600 and 1e18).
    assert thr < 20.0
    result = _score(pipe, thr, X[TRAIN:], t[TRAIN:])
    assert result.anomaly.mean() < 2 * TRAINING_DEFAULTS.target_far


def test_a_current_too_high_while_running_is_caught_on_the_current(trained, line) -> None:
    pipe, thr, _ = trained
    X, t = line
    faulty = X[TRAIN:].copy()
    faulty[FAULT, CURRENT] += 0.5 * faulty[FAULT, 0]
    result = _score(pipe, thr, faulty, t[TRAIN:])
    running = faulty[FAULT, 0] == 1.0
    assert result.anomaly[FAULT][running].mean() > 0.9
    reasons = result.reason[FAULT][running]
    sensors = result.top_sensors[FAULT, 0][running]
    named = np.isin(sensors, [CURRENT, SENSORS.index("belt_speed")])
    assert np.mean(named[reasons > 0]) > 0.9
    assert np.mean(reasons == REASONS.index("relation")) > 0.5


def test_within_a_state_the_current_counts_as_many_rows() -> None:
    X = conveyor_line(TRAIN, seed=1)[:, :3]
    checks = SensorChecks().fit(X)
    # Step and relation checks are trusted on both analog readings.
    assert not checks.disabled_[1:3, 1:].any()
    assert checks.regressors_[1:].all()


def test_a_trimmed_fit_keeps_the_gate_openings_as_normal() -> None:
    # Trimmed within its own group (gate open / closed), the open gate keeps
    # the spread it has in all the rows; trimmed as the tail of the closed
    # rows, it kept a few openings and its spread fell to an eighth.
    X = conveyor_line(TRAIN, seed=1)
    t = np.arange(TRAIN, dtype=np.int64) * 1_000_000
    pipe, _, info = train_pipeline(X, SENSORS, "pca", time_us=t, refit=False)
    gate = list(pipe.feature_names_out_).index("reject_gate")
    fitted_on_all = train_pipeline(X, SENSORS, "pca", time_us=t, refit=False, max_trim=0.0)[0]
    ratio = pipe.detector_.scale_[gate] / fitted_on_all.detector_.scale_[gate]
    assert 0.8 < ratio <= 1.05
    assert info["trimmed_fit_rows"] > 0
