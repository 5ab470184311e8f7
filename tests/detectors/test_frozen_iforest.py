"""The isolation forest, frozen into node arrays, scores as scikit-learn does."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import IsolationForest

from lineguard.detectors import IsolationForestDetector


def _rows(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    X = rng.normal(size=(n, d))
    X[:, 0] = np.round(X[:, 0])  # a stepped column: ties at split values
    X[:, -1] = rng.exponential(size=n)
    return X


@pytest.mark.parametrize(
    ("n", "d", "params"),
    [
        (60, 3, {}),
        (1500, 40, {}),
        (800, 12, {"max_features": 0.5, "max_samples": 100, "n_estimators": 50}),
    ],
)
def test_frozen_scores_are_scikit_learns_bits(n: int, d: int, params: dict) -> None:
    rng = np.random.default_rng(n + d)
    X = _rows(rng, n, d)
    Y = np.vstack([_rows(rng, 300, d) * 1.5, X[:20]])  # new rows and training rows
    ours = IsolationForestDetector(random_state=3, **params).fit(X)
    settings = {"n_estimators": 200, "max_samples": "auto", "max_features": 1.0, **params}
    ref = IsolationForest(random_state=3, **settings).fit(X)
    np.testing.assert_array_equal(ours.decision_function(Y), -ref.score_samples(Y))


def test_a_row_scores_the_same_alone_as_in_a_batch() -> None:
    rng = np.random.default_rng(5)
    det = IsolationForestDetector(random_state=0).fit(_rows(rng, 500, 6))
    Y = _rows(rng, 64, 6) * 2.0
    alone = np.concatenate([det.decision_function(Y[i : i + 1]) for i in range(len(Y))])
    np.testing.assert_array_equal(alone, det.decision_function(Y))


def test_no_forest_object_is_kept_and_an_older_model_still_scores() -> None:
    rng = np.random.default_rng(7)
    X = _rows(rng, 400, 5)
    det = IsolationForestDetector(random_state=1).fit(X)
    assert not hasattr(det, "forest_")
    assert det.feature_.shape == det.threshold_.shape == det.path_length_.shape
    assert det.children_.shape == (2 * det.feature_.size,)
    # A model saved before the freeze holds the scikit-learn forest instead.
    older = IsolationForestDetector(random_state=1).fit(X)
    for name in ("roots_", "feature_", "threshold_", "children_", "path_length_"):
        delattr(older, name)
    older.forest_ = IsolationForest(n_estimators=200, random_state=1).fit(X)
    np.testing.assert_array_equal(older.decision_function(X[:30]), det.decision_function(X[:30]))
