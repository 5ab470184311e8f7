"""Slow-sensor detrending (TemporalFeatures.detrend_slow) and the ``ensemble`` detector."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from lineguard.detectors import TemporalFeatures, make_detector
from lineguard.detectors.calibration import train_pipeline
from lineguard.detectors.ensemble import QuantileEnsemble
from lineguard.detectors.features import lagged_autocorrelation
from lineguard.detectors.pca import PCADetector
from lineguard.detectors.scoring import score_batch
from lineguard.models.registry import Registry


def _slow_and_fast(rng: np.random.Generator, n: int) -> np.ndarray:
    """Column 0 drifts like a temperature (random walk); columns 1-2 are noise."""
    walk = np.cumsum(rng.normal(scale=0.2, size=n))
    return np.column_stack([walk, rng.normal(size=n), rng.normal(size=n)])


def test_lagged_autocorrelation_separates_drift_from_noise() -> None:
    X = _slow_and_fast(np.random.default_rng(0), 400)
    ac = lagged_autocorrelation(X, 10)
    assert ac[0] > 0.8
    assert np.all(np.abs(ac[1:]) < 0.3)
    # Constant column and too-short input give 0, not NaN.
    assert lagged_autocorrelation(np.ones((50, 1)), 10)[0] == 0.0
    assert lagged_autocorrelation(np.ones((5, 2)), 10).tolist() == [0.0, 0.0]


def test_slow_sensor_is_described_by_dynamics() -> None:
    X = _slow_and_fast(np.random.default_rng(1), 300)
    tf = TemporalFeatures(window=5, detrend_slow=0.6).fit(X)
    assert tf.slow_.tolist() == [True, False, False]
    F, _ = tf.transform(X)
    plain, _ = TemporalFeatures(window=5).fit(X).transform(X)
    d = X.shape[1]
    # Slow sensor: value -> deviation from its trailing mean; mean column zeroed.
    np.testing.assert_allclose(F[:, 0], X[:, 0] - plain[:, d])
    assert np.all(F[:, d] == 0.0)
    # Fast sensors and every std column are untouched.
    np.testing.assert_array_equal(F[:, [1, 2, d + 1, d + 2]], plain[:, [1, 2, d + 1, d + 2]])
    np.testing.assert_array_equal(F[:, 2 * d :], plain[:, 2 * d :])
    names = tf.get_feature_names_out(["T", "a", "b"]).tolist()
    assert names[0] == "T__dev5" and names[d] == "T__mean5_off" and names[1] == "a"


def test_detrended_features_are_batch_invariant() -> None:
    X = _slow_and_fast(np.random.default_rng(2), 211)
    tf = TemporalFeatures(window=7, detrend_slow=0.6).fit(X)
    whole, _ = tf.transform(X)
    for bounds in ([0, 1, 2, 50, 51, 211], [0, 100, 211], [0, 7, 13, 14, 200, 211]):
        out, ctx = [], None
        for lo, hi in itertools.pairwise(bounds):
            F, ctx = tf.transform(X[lo:hi], ctx)
            out.append(F)
        np.testing.assert_array_equal(np.concatenate(out), whole)


def test_detrend_slow_validates() -> None:
    X = _slow_and_fast(np.random.default_rng(3), 100)
    with pytest.raises(ValueError, match="detrend_slow"):
        TemporalFeatures(window=5, detrend_slow=1.5).fit(X)
    # window 1 has no trailing mean: nothing is detrended.
    assert not TemporalFeatures(window=1, detrend_slow=0.6).fit(X).slow_.any()


def test_drifting_slow_sensor_does_not_alarm_but_fast_fault_does() -> None:
    """The reason for detrending: a temperature that keeps warming past its
    training range is not a fault; a step on a fast sensor is."""
    rng = np.random.default_rng(4)
    n = 900
    X = _slow_and_fast(rng, n)
    X[400:, 0] = X[399, 0] + np.linspace(0, 30, n - 400)  # slow warm-up, far beyond training
    X[700:800, 1] += 6.0  # a fault on a fast sensor
    pipeline, threshold, info = train_pipeline(X[:400], ["T", "flow", "current"], "pca")
    assert info["slow_sensors"] == ["T"]
    result, _ = score_batch(pipeline, X[400:], None, threshold, 3, 5)
    assert result.anomaly[:300].mean() < 0.05
    assert result.anomaly[300:400].mean() > 0.8
    # The alerted frames name the fast sensor.
    top = result.top_sensors[300:400][result.anomaly[300:400]]
    assert np.mean(top[:, 0] == 1) > 0.9


def test_quantile_ensemble_weights_and_attribution() -> None:
    rng = np.random.default_rng(5)
    X = rng.normal(size=(400, 4)) @ rng.normal(size=(4, 4))
    ens = QuantileEnsemble().fit(X)
    assert len(ens.members_) == 2
    np.testing.assert_allclose(ens.weights_.sum(), 1.0)
    assert np.all(ens.inflation_ >= 1.0) and np.all(ens.spreads_ > 0)
    Y = X[:50].copy()
    Y[:, 2] += 8 * X[:, 2].std()
    shares = ens.contributions(Y)
    np.testing.assert_allclose(shares.sum(axis=1), 1.0)
    assert np.mean(shares.argmax(axis=1) == 2) > 0.9
    assert ens.decision_function(Y).min() > np.quantile(ens.decision_function(X), 0.99)
    # One member: a monotone rescaling of that member's score.
    one = QuantileEnsemble(members=(PCADetector(),)).fit(X)
    a, b = one.decision_function(X[:40]), PCADetector().fit(X).decision_function(X[:40])
    np.testing.assert_array_equal(np.argsort(a, kind="stable"), np.argsort(b, kind="stable"))
    with pytest.raises(ValueError, match="at least one member"):
        QuantileEnsemble(members=()).fit(X)


def test_ensemble_model_round_trips_through_the_registry(tmp_path) -> None:
    """skops must store and reload an ``ensemble`` model (the allowlist covers it)."""
    rng = np.random.default_rng(6)
    X = _slow_and_fast(rng, 400)
    pipeline, threshold, _ = train_pipeline(X, ["T", "a", "b"], "ensemble")
    assert isinstance(make_detector("ensemble"), QuantileEnsemble)
    registry = Registry(tmp_path)
    envelope = {"sensors": ["T", "a", "b"], "threshold": threshold, "debounce": {"k": 3, "n": 5}}
    bundle = registry.save("line-a", pipeline, envelope)
    loaded = registry.load("line-a", bundle.version)
    np.testing.assert_array_equal(
        loaded.pipeline.decision_function(X[:30]), pipeline.decision_function(X[:30])
    )
