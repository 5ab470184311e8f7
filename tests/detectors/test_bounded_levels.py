"""Slow sensors keep their level where the normal history bounds it (issue 16, item 4).

The two sides of the choice, each on data built so that only the level tells:

* a *regulated* slow variable (mean-reverting, long history): a compensated
  fault leaves only a sustained shift of its level, which must alarm for as
  long as it lasts -- detrending it (the old behaviour) sees only the onset;
* a *wandering* slow variable (a temperature that drifts) and a short
  history: the level stays out, so its warm-up does not alarm.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from lineguard.detectors import TemporalFeatures
from lineguard.detectors.calibration import train_pipeline
from lineguard.detectors.features import bounded_levels
from lineguard.detectors.scoring import score_batch

SENSORS = ["level", "flow", "current"]


def _regulated(rng: np.random.Generator, n: int, phi: float = 0.985) -> np.ndarray:
    """Column 0: AR(1) level held by a controller (mean-reverting); 1-2: fast noise."""
    u = np.zeros(n)
    shocks = rng.normal(scale=np.sqrt(1 - phi**2), size=n)
    for i in range(1, n):
        u[i] = phi * u[i - 1] + shocks[i]
    flow = rng.normal(size=n)
    return np.column_stack(
        [u + 0.1 * rng.normal(size=n), flow, 0.8 * flow + 0.6 * rng.normal(size=n)]
    )


def test_regulated_level_is_kept_and_wandering_level_is_not() -> None:
    rng = np.random.default_rng(0)
    regulated = _regulated(rng, 8000)[:, :1]
    walk = np.cumsum(rng.normal(scale=0.2, size=(8000, 1)), axis=0)
    assert bounded_levels(np.hstack([regulated, walk]), 20).tolist() == [True, False]
    # The same regulated sensor over 400 rows: too few effective rows to show a range.
    assert bounded_levels(regulated[:400], 20).tolist() == [False]


def test_levels_that_recur_across_segments_are_kept() -> None:
    """A batch line: each batch revisits the same levels; one batch elsewhere breaks it."""
    rng = np.random.default_rng(1)
    profile = np.concatenate([np.linspace(0, 1, 100), np.ones(100), np.linspace(1, 0, 100)])
    batches = [profile + 0.01 * rng.normal(size=300) for _ in range(4)]
    starts = np.arange(4) * 300
    X = np.concatenate(batches)[:, None]
    assert bounded_levels(X, 20, starts).tolist() == [True]
    X_moved = X.copy()
    X_moved[900:] += 2.0  # the last batch runs at another level
    assert bounded_levels(X_moved, 20, starts).tolist() == [False]


def test_features_keep_the_level_columns_of_a_kept_sensor() -> None:
    rng = np.random.default_rng(2)
    X = _regulated(rng, 8000)
    kept = TemporalFeatures(window=20, detrend_slow=0.6, keep_bounded_levels=True).fit(X)
    dropped = TemporalFeatures(window=20, detrend_slow=0.6).fit(X)
    assert dropped.slow_.tolist() == [True, False, False]
    assert kept.level_kept_.tolist() == [True, False, False]
    assert not kept.slow_.any()
    plain, _ = TemporalFeatures(window=20).fit(X).transform(X)
    F, _ = kept.transform(X)
    np.testing.assert_array_equal(F, plain)
    # Batch invariance holds as for every feature.
    out, ctx = [], None
    for lo, hi in itertools.pairwise([0, 7, 500, 501, 8000]):
        part, ctx = kept.transform(X[lo:hi], ctx)
        out.append(part)
    np.testing.assert_array_equal(np.concatenate(out), F)


@pytest.mark.parametrize("keep", [True, False])
def test_a_sustained_level_shift_alarms_for_as_long_as_it_lasts(keep: bool) -> None:
    """A compensated fault: the level steps and stays; its dynamics are normal again
    after one window. Kept, the level alarms on the whole fault; detrended, only
    around the onset."""
    rng = np.random.default_rng(3)
    X = _regulated(rng, 10000)
    train, test = X[:8000], X[8000:].copy()
    test[500:1500, 0] += 8.0  # 8 sd of the level, held for 1000 rows
    pipeline, threshold, info = train_pipeline(
        train, SENSORS, "pca", keep_bounded_levels=keep, sensor_checks=False
    )
    assert info["level_sensors"] == (["level"] if keep else [])
    result, _ = score_batch(pipeline, test, None, threshold, 2, 5)
    during = result.anomaly[540:1500].mean()  # after the onset transient
    before = result.anomaly[:500].mean()
    assert before < 0.05
    if keep:
        assert during > 0.95
        assert result.top_sensors[540:1500][result.anomaly[540:1500], 0].tolist().count(0) > 0.9 * (
            result.anomaly[540:1500].sum()
        )
    else:
        assert during < 0.1
