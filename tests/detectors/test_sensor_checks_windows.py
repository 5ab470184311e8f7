"""The windowed relation checks: a reading that leaves its relation by a little for good
(drift), or that reads around the right value with more noise than it should (noise).

A fault a control loop compensates leaves a lasting offset of a few noise
standard deviations in one variable, inside its normal range and under the
row-wise relation limit on most rows. The line here is the benchmarks' kind
of continuous process: six sensors mixed from two slow AR(1) factors plus
sensor noise, so each sensor's level wanders far more than its offset.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import lfilter
from sklearn.base import clone

from lineguard.detectors.sensor_checks import RELATION, SensorChecks

TRAIN, TEST, SENSORS, SHIFTED = 3000, 1500, 12, 2
NOISE = 0.3


def _line(seed: int, rows: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    latent = lfilter([1.0], [1.0, -0.98], rng.normal(size=(rows, 2)), axis=0) * 0.2
    mix = np.random.default_rng(99).normal(size=(2, SENSORS)) / 2.0
    return 50.0 + latent @ mix + rng.normal(size=(rows, SENSORS)) * NOISE


@pytest.fixture(scope="module")
def rows() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    X = _line(1, TRAIN + TEST)
    healthy = X[TRAIN:]
    shifted = healthy.copy()
    shifted[500:, SHIFTED] += 3 * NOISE  # a lasting offset of 3 noise sd
    return X[:TRAIN], healthy, shifted


@pytest.fixture(scope="module")
def noisy(rows) -> np.ndarray:
    out = rows[1].copy()
    extra = np.random.default_rng(5).normal(size=len(out) - 500)
    out[500:, SHIFTED] += extra * NOISE * np.sqrt(3**2 - 1)  # noise x 3, centred
    return out


@pytest.fixture(scope="module")
def fitted(rows) -> SensorChecks:
    # The noise check is off by default (its cost); on here to be tested.
    return SensorChecks(noise_window=20).fit(rows[0])


def _in_batches(checks: SensorChecks, X: np.ndarray, size: int, context_rows: int = 19):
    """Score ``X`` as the worker does: batches, each with the rows before it as context."""
    reasons, sensors, state, prev = [], [], None, None
    for a in range(0, len(X), size):
        context = X[max(a - context_rows, 0) : a] if a else None
        found, state = checks.check(X[a : a + size], prev, state, context)
        reasons.append(found.reason)
        sensors.append(found.sensor)
        prev = X[a + size - 1] if a + size <= len(X) else None
    return np.concatenate(reasons), np.concatenate(sensors)


def test_a_lasting_small_offset_is_caught_and_blamed_on_its_sensor(rows, fitted) -> None:
    _, _, shifted = rows
    reason, sensor = _in_batches(fitted, shifted, 50)
    after = slice(500 + fitted.drift_window, None)
    on_it = (reason[after] == RELATION) & (sensor[after] == SHIFTED)
    assert on_it.mean() > 0.9, f"offset caught and blamed on only {on_it.mean():.0%} of rows"
    # Without the drift check the same offset passes nearly unseen.
    row_wise = SensorChecks(drift_window=None, noise_window=20).fit(rows[0])
    reason, _ = _in_batches(row_wise, shifted, 50)
    assert (reason[after] > 0).mean() < 0.2


def test_a_sensor_gone_noisy_is_caught_and_blamed_on_its_sensor(rows, noisy, fitted) -> None:
    reason, sensor = _in_batches(fitted, noisy, 50)
    after = slice(500 + fitted.noise_window, None)
    on_it = (reason[after] == RELATION) & (sensor[after] == SHIFTED)
    assert on_it.mean() > 0.8, f"noisy sensor caught and blamed on only {on_it.mean():.0%}"
    without = SensorChecks().fit(rows[0])  # the default: no noise check
    reason, _ = _in_batches(without, noisy, 50)
    assert (reason[after] > 0).mean() < 0.5


def test_healthy_rows_seldom_fire_the_drift_check(rows, fitted) -> None:
    _, healthy, _ = rows
    reason, _ = _in_batches(fitted, healthy, 50)
    assert (reason > 0).mean() < 0.01
    assert np.isfinite(fitted.drift_limit_).any()  # the checks are in force
    assert np.isfinite(fitted.noise_limit_).any()


@pytest.mark.parametrize("size", [1, 7, 64])
@pytest.mark.parametrize("fault", ["offset", "noise"])
def test_the_windowed_checks_do_not_depend_on_the_batching(
    rows, noisy, fitted, size: int, fault: str
) -> None:
    shifted = rows[2] if fault == "offset" else noisy
    whole, whole_sensor = _in_batches(fitted, shifted, len(shifted))
    reason, sensor = _in_batches(fitted, shifted, size)
    assert reason.tobytes() == whole.tobytes()
    assert sensor.tobytes() == whole_sensor.tobytes()
    assert (whole > 0).sum() > 100  # it fires, so the batching is tested


def test_a_short_stretch_cannot_support_the_windowed_checks(rows) -> None:
    # 400 rows hold 280 fit rows: 28 independent 10-row means (14 20-row
    # variances), fewer than the 30 the extreme of a window statistic needs.
    short = SensorChecks(noise_window=20).fit(rows[0][:400])
    assert short.disabled_[3].all() and short.disabled_[4].all()
    assert not np.isfinite(short.drift_limit_).any()
    assert not np.isfinite(short.noise_limit_).any()


def test_checks_saved_before_the_windowed_checks_score_as_without_them(rows, fitted) -> None:
    _, _, shifted = rows
    old = clone(fitted)
    old.__dict__.update(
        {k: v for k, v in fitted.__dict__.items() if k.endswith("_") and not k.startswith("_")}
    )
    del old.drift_window, old.noise_window
    for name in [k for k in vars(old) if k.startswith(("drift_", "noise_"))]:
        delattr(old, name)
    found, _ = old.check(shifted, None, None)
    off = clone(fitted).set_params(drift_window=None, noise_window=None)
    off.__dict__.update(
        {k: v for k, v in fitted.__dict__.items() if k.endswith("_") and not k.startswith("_")}
    )
    expected, _ = off.check(shifted, None, None)
    assert found.reason.tobytes() == expected.reason.tobytes()
