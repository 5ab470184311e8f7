"""A dirty training window (issue 16, item 5): the trimmed fit tolerates up to 10 %.

The fault is a broken relation (sensor 1 stops following sensor 0), planted in
a stretch of the *training* rows and again in the test rows. Fitted on every
row, PCA learns it as a normal direction and misses it later; fitted by
concentration steps, it is pushed out of the fit and caught.
"""

from __future__ import annotations

import numpy as np
import pytest

from lineguard.detectors.calibration import train_pipeline
from lineguard.detectors.robust import DEFAULT_MAX_TRIM, MIN_TRIM_GROUP_ROWS, trimmed_rows
from lineguard.detectors.scoring import score_batch

SENSORS = [f"s{i}" for i in range(5)]


def _line(rng: np.random.Generator, n: int) -> np.ndarray:
    z = rng.normal(size=(n, 2))
    noise = rng.normal(size=(n, 3))
    return np.column_stack(
        [z[:, 0], z[:, 0] + 0.3 * noise[:, 0], z[:, 1], z[:, 1] + 0.3 * noise[:, 1], noise[:, 2]]
    )


def _broken(rows: np.ndarray) -> np.ndarray:
    out = rows.copy()
    out[:, 1] = 1.5 - out[:, 0]
    return out


def _detection(dirty_share: float, max_trim: float, seed: int) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    X = _line(rng, 3000)
    train, test = X[:2000].copy(), X[2000:].copy()
    n_dirty = int(dirty_share * 2000)
    train[800 : 800 + n_dirty] = _broken(train[800 : 800 + n_dirty])
    test[500:700] = _broken(test[500:700])
    pipeline, threshold, _ = train_pipeline(
        train, SENSORS, "pca", max_trim=max_trim, sensor_checks=False
    )
    result, _ = score_batch(pipeline, test, None, threshold, 2, 5)
    return float(result.anomaly[520:700].mean()), float(result.anomaly[:500].mean())


@pytest.mark.parametrize("dirty_share", [0.05, 0.1])
def test_a_fault_in_up_to_ten_percent_of_the_training_rows_is_still_caught(
    dirty_share: float,
) -> None:
    for seed in range(3):
        caught, false_alarms = _detection(dirty_share, DEFAULT_MAX_TRIM, seed)
        assert caught > 0.9, (seed, caught)
        assert false_alarms < 0.1, (seed, false_alarms)


def test_without_trimming_the_dirty_window_blinds_the_line() -> None:
    """The premise of the test above: the same data, fitted once, misses the fault."""
    caught = [_detection(0.1, 0.0, seed)[0] for seed in range(3)]
    assert np.mean(caught) < 0.6, caught


def test_a_clean_window_loses_nothing() -> None:
    """Trimming a clean window changes neither detection nor false alarms much:
    the threshold is still calibrated on rows the fit never saw."""
    for seed in range(3):
        caught, false_alarms = _detection(0.0, DEFAULT_MAX_TRIM, seed)
        caught_once, false_alarms_once = _detection(0.0, 0.0, seed)
        assert caught > 0.9 and caught_once > 0.9
        assert abs(false_alarms - false_alarms_once) <= 0.02, (seed, false_alarms_once)


def test_trimmed_rows_cuts_each_mode_by_its_own_share() -> None:
    scores = np.concatenate([np.arange(100.0), 1000 + np.arange(40.0), [5e6] * 10])
    modes = np.array([0] * 100 + [1] * 40 + [2] * 10)
    keep = trimmed_rows(scores, 0.1, modes)
    # Mode 0 loses its 10 highest, mode 1 its 4 highest, mode 2 (too few rows) none:
    # a rare mode is not a tail of the others.
    assert keep[:100].tolist() == [True] * 90 + [False] * 10
    assert keep[100:140].tolist() == [True] * 36 + [False] * 4
    assert keep[140:].all() and MIN_TRIM_GROUP_ROWS > 10
    # One group: the top share of all rows.
    assert (~trimmed_rows(np.arange(200.0), 0.05)).sum() == 10
    assert trimmed_rows(np.arange(200.0), 0.0).all()
    with pytest.raises(ValueError, match="share"):
        trimmed_rows(np.arange(10.0), 0.6)
    with pytest.raises(ValueError, match="one mode per score"):
        trimmed_rows(np.arange(10.0), 0.1, np.zeros(3))
