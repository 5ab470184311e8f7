"""Modes tried before they are trusted: lineguard.detectors.sensor_checks.

A 0/1 column is a mode channel only while held-back normal rows fall in the
modes it makes. On ``tests/support/switch_line.py``'s line the 0/1 columns
are switches that parts trip: taken as modes they split the rows into
hundreds of combinations, and the rows after training keep landing in new
ones (each an unseen-mode alert). A recipe's commands (the batch line's
one-hot phase commands, a running command) recur and stay modes.
"""

from __future__ import annotations

import numpy as np
import pytest

from lineguard.detectors.calibration import train_pipeline
from lineguard.detectors.sensor_checks import UNSEEN_MODE, SensorChecks
from tests.support.batch_line import BATCH, batch_line, one_hot
from tests.support.switch_line import switch_line

N_SWITCHES = 8
TRAIN, SCORE = 3000, 5000


def _unseen_share(checks: SensorChecks, X: np.ndarray) -> float:
    result, _ = checks.check(X, None, None)
    return float(np.mean(result.reason == UNSEEN_MODE))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_switches_that_parts_trip_are_set_aside_and_stop_raising_unseen_modes(seed: int) -> None:
    X = switch_line(np.random.default_rng(seed), TRAIN + SCORE)
    trusted = SensorChecks().fit(X[:TRAIN])
    taken = SensorChecks(validate_modes=False).fit(X[:TRAIN])

    assert not taken.channels_set_aside_.any()
    assert taken.modes_.size > 200  # nearly every combination of 8 switches
    # Without the validation, fresh normal rows keep landing in new modes.
    assert _unseen_share(taken, X[TRAIN:]) > 0.005

    aside = trusted.channels_set_aside_
    assert aside[:N_SWITCHES].any()
    assert not aside[N_SWITCHES:].any()  # analog readings are never channels
    assert not (trusted.state_channels_ & aside).any()
    assert trusted.modes_.size <= 2 ** int(N_SWITCHES - aside.sum())
    assert _unseen_share(trusted, X[TRAIN:]) <= 0.005
    # A switch set aside is judged as a sensor: a stuck one is a freeze.
    assert trusted.checked_[np.flatnonzero(aside)].all()


def test_a_running_command_stays_a_mode_while_the_switches_go() -> None:
    X = switch_line(np.random.default_rng(0), TRAIN + SCORE, running=True)
    checks = SensorChecks().fit(X[:TRAIN])
    running = X.shape[1] - 1
    assert checks.state_channels_[running]
    assert not checks.channels_set_aside_[running]
    assert checks.channels_set_aside_[:N_SWITCHES].any()
    modes = checks.modes_of(X[:TRAIN])
    idle = X[:TRAIN, running] == 0
    assert not set(modes[idle]) & set(modes[~idle])


def test_a_recipes_commands_are_all_kept() -> None:
    X = one_hot(batch_line(np.random.default_rng(3), 6))
    starts = np.arange(0, len(X), BATCH)
    trusted = SensorChecks().fit(X, starts=starts)
    taken = SensorChecks(validate_modes=False).fit(X, starts=starts)
    assert not trusted.channels_set_aside_.any()
    assert trusted.state_channels_[:5].all()
    for name in ("modes_", "mode_rows_", "freeze_limit_", "low_", "high_", "relation_limit_"):
        np.testing.assert_array_equal(getattr(trusted, name), getattr(taken, name))


def test_checks_saved_before_the_mode_validation_score_as_before() -> None:
    X = switch_line(np.random.default_rng(4), TRAIN + 500)
    checks = SensorChecks(validate_modes=False).fit(X[:TRAIN])
    expected, _ = checks.check(X[TRAIN:], None, None)
    del checks.channels_set_aside_, checks.validate_modes
    got, _ = checks.check(X[TRAIN:], None, None)
    for name in ("reason", "sensor", "mode"):
        np.testing.assert_array_equal(getattr(got, name), getattr(expected, name))


def test_the_model_envelope_names_the_channels_set_aside() -> None:
    X = switch_line(np.random.default_rng(0), TRAIN)
    sensors = [f"s{j}" for j in range(X.shape[1])]
    pipe, _, info = train_pipeline(X, sensors)
    aside = pipe.checks_.channels_set_aside_
    assert aside.any()
    assert info["channels_set_aside"] == [sensors[j] for j in np.flatnonzero(aside)]
    _, _, plain = train_pipeline(X, sensors, sensor_checks=False)
    assert plain["channels_set_aside"] == []
