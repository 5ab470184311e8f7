"""Thresholds from a target false-alarm rate."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lineguard.detectors import fit_threshold, train_pipeline
from lineguard.detectors.calibration import effective_scores, threshold_method


def test_conformal_rank() -> None:
    scores = np.random.default_rng(0).permutation(np.arange(999.0))
    # ceil(0.9 * 1000) = 900th smallest -> value 899.
    assert fit_threshold(scores, 0.1) == 899.0
    assert threshold_method(999, 0.1) == "conformal"


def test_empirical_far_near_target_on_fresh_scores() -> None:
    rng = np.random.default_rng(1)
    thr = fit_threshold(rng.gamma(2.0, size=2000), 0.05)
    far = np.mean(rng.gamma(2.0, size=200_000) > thr)
    assert 0.035 < far < 0.065


def test_small_sample_uses_tail_fit() -> None:
    assert threshold_method(50, 0.01) == "exponential_tail"
    rng = np.random.default_rng(2)
    fars = [
        np.mean(rng.exponential(size=20_000) > fit_threshold(rng.exponential(size=50), 0.01))
        for _ in range(40)
    ]
    # True 1 % quantile of Exp(1) is ln(100); the tail fit should land near it on average.
    assert 0.003 < np.mean(fars) < 0.03


def _ar1(rng: np.random.Generator, n: int, phi: float) -> np.ndarray:
    noise = rng.normal(size=n)
    x = np.empty(n)
    x[0] = noise[0]
    for i in range(1, n):
        x[i] = phi * x[i - 1] + math.sqrt(1.0 - phi * phi) * noise[i]
    return x


def test_autocorrelated_scores_count_for_fewer_and_keep_the_target() -> None:
    """Trailing-window scores are nearly copies of their neighbours: ranked as
    if independent, the threshold is too low and the target is missed."""
    rng = np.random.default_rng(0)
    ours, independent = [], []
    for _ in range(40):
        held, fresh = _ar1(rng, 3000, 0.9), _ar1(rng, 20_000, 0.9)
        plain = np.sort(held)[math.ceil(0.99 * 3001) - 1]  # the independent-score rank
        ours.append(np.mean(fresh > fit_threshold(held, 0.01)))
        independent.append(np.mean(fresh > plain))
    assert np.mean(independent) > 0.011 and np.percentile(independent, 90) > 0.015
    assert 0.003 < np.mean(ours) < 0.01 and np.percentile(ours, 90) < 0.012
    # About n (1 - r) / (1 + r) = 3000 * 0.1 / 1.9 = 158 independent scores.
    assert 120 < effective_scores(held) < 200
    # Independent scores keep their number (and the plain rank, as above).
    assert effective_scores(rng.normal(size=3000)) == 3000.0
    # Fewer than 1 / a - 1 effective scores: no rank certifies 1 %, the largest is used.
    short = _ar1(rng, 300, 0.9)
    assert effective_scores(short) < 99 and fit_threshold(short, 0.01) == short.max()


def test_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match=r"target_far must be in \(0, 1\)"):
        fit_threshold(np.ones(10), 1.5)
    with pytest.raises(ValueError, match="too few"):
        fit_threshold(np.ones(10), 0.001)
    with pytest.raises(ValueError, match="finite"):
        fit_threshold(np.array([1.0, np.nan]), 0.1)


def _normal_line(rng: np.random.Generator, n: int) -> np.ndarray:
    mix = np.array([[1.0, 0.0, 0.0], [0.8, 0.6, 0.0], [0.3, -0.4, 0.9]])
    return rng.normal(size=(n, 3)) @ mix.T + [10.0, 5.0, -2.0]


@pytest.mark.parametrize("refit", [False, True])
@pytest.mark.parametrize("name", ["pca", "ecod", "mcd"])
def test_train_pipeline_far_on_fresh_normal_data(name: str, refit: bool) -> None:
    rng = np.random.default_rng(3)
    X = _normal_line(rng, 4000)
    pipe, thr, info = train_pipeline(
        X, ["a", "b", "c"], name, target_far=0.02, holdout_fraction=0.5, window=5, refit=refit
    )
    assert info["n_fit"] == 2000 and info["n_holdout"] == 2000
    assert info["threshold_method"] == "conformal"
    fresh = _normal_line(rng, 20_000)
    far = np.mean(pipe.decision_function(fresh) > thr)
    assert 0.01 < far < 0.04, f"{name}: FAR {far:.4f} for target 0.02"


def test_holdout_is_the_most_recent_rows() -> None:
    rng = np.random.default_rng(4)
    X = _normal_line(rng, 400)
    pipe, thr, info = train_pipeline(X, ["a", "b", "c"], "pca", 0.05, 0.25, window=4, refit=False)
    n_fit = info["n_fit"]
    assert n_fit == 400 - math.ceil(0.25 * 400)
    hold = pipe.decision_function(X[n_fit:], X[n_fit - 3 : n_fit])
    assert thr == fit_threshold(hold, 0.05)
