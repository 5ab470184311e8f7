"""The one offline scorer (models.evaluation.score_frames), used by the candidate evaluation.

Expected values come from the pure scoring path (``score_batch`` on the
columns in the model's order), not from the scorer under test.
"""

from __future__ import annotations

import numpy as np
import pytest

from lineguard.detectors.scoring import score_batch
from lineguard.models.candidate import Scorer
from lineguard.models.evaluation import GatewayPlan, score_frames
from lineguard.models.registry import ModelBundle
from lineguard.models.training import TrainingConfig, fit_from_rows

SECOND = 1_000_000
SENSORS = ["level", "flow", "temp"]


def _frames(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    phase = np.arange(n)
    a = np.sin(2 * np.pi * phase / 300)
    X = np.column_stack([a, 2 * a + 1, np.cos(2 * np.pi * phase / 300)])
    X = X + rng.normal(scale=0.05, size=X.shape)
    X[700:760, 1] += 1.5  # a fault on flow
    t = 1_700_000_000 * SECOND + phase * SECOND
    return t, X


@pytest.fixture(scope="module")
def model() -> tuple[Scorer, ModelBundle]:
    t, X = _frames(1000, seed=3)
    pipeline, threshold, _ = fit_from_rows(SENSORS, X[:500], TrainingConfig(), t[:500])
    scorer = Scorer("v-test", pipeline, SENSORS, float(threshold), (2, 5))
    manifest = {"sensors": SENSORS, "threshold": float(threshold), "debounce": {"k": 2, "n": 5}}
    return scorer, ModelBundle("line-x", "v-test", pipeline, manifest)


def _pure(bundle: ModelBundle, X: np.ndarray, t: np.ndarray):
    result, _ = score_batch(bundle.pipeline, X, None, bundle.threshold, 2, 5, time_us=t)
    return result


def test_columns_are_matched_by_name_an_extra_is_ignored_a_missing_one_imputed(model) -> None:
    scorer, bundle = model
    t, X = _frames(1000, seed=4)
    # The data: temp, level, an extra sensor; flow is absent.
    data_sensors = ["temp", "level", "extra"]
    data = np.column_stack([X[:, 2], X[:, 0], np.full(len(t), 7.0)])
    expected = _pure(bundle, np.column_stack([X[:, 0], np.full(len(t), np.nan), X[:, 2]]), t)
    score, flags = scorer.alerts(data_sensors, data, t)
    np.testing.assert_array_equal(score, expected.score)
    np.testing.assert_array_equal(flags, np.asarray(expected.anomaly, dtype=bool))


def test_the_result_does_not_depend_on_how_the_frames_are_cut_into_records(model) -> None:
    _, bundle = model
    t, X = _frames(1000, seed=5)
    expected = _pure(bundle, X, t)
    assert np.asarray(expected.anomaly).any()  # the fault alerts: a test that can fail
    for plan in (GatewayPlan(), GatewayPlan(speed=1.0), GatewayPlan(speed=1e6, max_frames=37)):
        scored = score_frames(bundle, SENSORS, t, X, plan)
        np.testing.assert_array_equal(scored.time_us, t)
        np.testing.assert_array_equal(scored.score, expected.score)
        np.testing.assert_array_equal(scored.anomaly, np.asarray(expected.anomaly, dtype=bool))


def test_data_without_any_model_sensor_is_refused_with_both_sensor_lists(model) -> None:
    _, bundle = model
    t, X = _frames(50, seed=6)
    with pytest.raises(
        ValueError, match=r"expected some of the sensors .*'level'.*has \['a', 'b', 'c'\]"
    ):
        score_frames(bundle, ["a", "b", "c"], t, X)
    with pytest.raises(ValueError, match="expected frames to score; got none"):
        score_frames(bundle, SENSORS, t[:0], X[:0])
