"""TemporalFeatures: correctness and batch-size invariance in streaming."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from lineguard.detectors import TemporalFeatures


def _random_splits(rng: np.random.Generator, n: int) -> list[int]:
    cuts = np.sort(rng.choice(np.arange(1, n), size=12, replace=False))
    # Include empty and one-row batches, the edge cases of a stream.
    return [0, 1, *cuts.tolist(), n - 1, n, n]


def _stream(tf: TemporalFeatures, X: np.ndarray, bounds: list[int]) -> np.ndarray:
    out, ctx = [], None
    for lo, hi in itertools.pairwise(bounds):
        F, ctx = tf.transform(X[lo:hi], ctx)
        assert ctx.shape[0] <= tf.window - 1
        out.append(F)
    return np.concatenate(out)


@pytest.mark.parametrize("window", [1, 2, 7, 50])
def test_streaming_equals_one_batch_exactly(window: int) -> None:
    rng = np.random.default_rng(window)
    X = rng.normal(size=(237, 3)) * [1.0, 100.0, 1e-3] + [0.0, 5e4, 1.0]
    tf = TemporalFeatures(window=window).fit(X)
    whole, _ = tf.transform(X)
    for seed in range(3):
        streamed = _stream(tf, X, _random_splits(np.random.default_rng(seed), len(X)))
        np.testing.assert_array_equal(streamed, whole)


def test_values_match_naive_trailing_window() -> None:
    rng = np.random.default_rng(5)
    X = rng.normal(size=(40, 2))
    w = 6
    tf = TemporalFeatures(window=w).fit(X)
    F, ctx = tf.transform(X)
    for t in range(len(X)):
        win = X[max(0, t - w + 1) : t + 1]
        np.testing.assert_allclose(F[t, 0:2], X[t])
        np.testing.assert_allclose(F[t, 2:4], win.mean(axis=0), rtol=1e-12)
        np.testing.assert_allclose(F[t, 4:6], win.std(axis=0), rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(ctx, X[-(w - 1) :])


def test_layout_names_and_sources() -> None:
    tf = TemporalFeatures(window=4).fit(np.zeros((5, 2)))
    assert tf.n_features_out_ == 6
    assert list(tf.feature_sources_) == [0, 1, 0, 1, 0, 1]
    names = list(tf.get_feature_names_out(["a", "b"]))
    assert names == ["a", "b", "a__mean4", "b__mean4", "a__std4", "b__std4"]
    assert TemporalFeatures(window=1).fit(np.zeros((5, 2))).n_features_out_ == 2


def test_rejects_bad_context_and_input() -> None:
    tf = TemporalFeatures(window=3).fit(np.zeros((5, 2)))
    with pytest.raises(ValueError, match="at most window - 1 = 2 rows, got 3"):
        tf.transform(np.zeros((4, 2)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="2 sensor columns, got 3"):
        tf.transform(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="window must be an int >= 1"):
        TemporalFeatures(window=0).fit(np.zeros((5, 2)))
