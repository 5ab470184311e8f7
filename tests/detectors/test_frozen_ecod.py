"""FrozenECOD reproduces PyOD's ECOD tail probabilities for single rows."""

from __future__ import annotations

import numpy as np
from pyod.models.ecod import ECOD
from scipy.stats import spearmanr

from lineguard.detectors import FrozenECOD


def _skewed(rng: np.random.Generator, n: int) -> np.ndarray:
    return np.column_stack(
        [
            rng.normal(size=n),
            rng.exponential(size=n),
            -rng.exponential(size=n),
            rng.integers(0, 4, n),
        ]
    ).astype(float)


def test_matches_pyod_one_row_at_a_time() -> None:
    rng = np.random.default_rng(1)
    train = _skewed(rng, 500)
    test = _skewed(rng, 20) * 1.5
    ours = FrozenECOD().fit(train).decision_function(test)
    ref = ECOD().fit(train)
    # PyOD puts the scored rows into the ECDF, so score them one by one.
    theirs = np.array([ref.decision_function(test[i : i + 1])[0] for i in range(len(test))])
    np.testing.assert_allclose(ours, theirs, rtol=1e-9)


def test_quantile_summary_is_bounded_and_faithful() -> None:
    rng = np.random.default_rng(2)
    train = _skewed(rng, 5000)
    test = _skewed(rng, 300)
    full = FrozenECOD(max_quantiles=10_000).fit(train)
    small = FrozenECOD(max_quantiles=256).fit(train)
    assert full.support_.shape == (5000, 4)
    assert small.support_.shape == (256, 4)
    rho = spearmanr(full.decision_function(test), small.decision_function(test)).statistic
    assert rho > 0.98
