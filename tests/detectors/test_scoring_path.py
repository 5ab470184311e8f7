"""score_batch / debounce: the streaming hot path."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from lineguard.detectors import (
    DETECTORS,
    LinePipeline,
    ScoringState,
    debounce,
    make_detector,
    score_batch,
)

SENSORS = ["current", "pressure", "flow", "temp"]


def _series(rng: np.random.Generator, n: int) -> np.ndarray:
    t = np.arange(n)
    base = np.column_stack(
        [np.sin(t / 20), np.sin(t / 20) * 2 + 3, np.cos(t / 15), np.full(n, 60.0)]
    )
    return base + rng.normal(scale=0.1, size=(n, 4))


# -- debounce -----------------------------------------------------------------


def test_debounce_k_of_n_known_sequence() -> None:
    raw = np.array([1, 0, 1, 0, 0, 1, 1, 0, 0, 0], dtype=bool)
    anomaly, hist = debounce(raw, None, k=2, n=3)
    assert anomaly.tolist() == [False, False, True, False, False, False, True, True, False, False]
    assert hist.tolist() == [False, False]


def test_debounce_uses_history_and_disables_at_1_of_1() -> None:
    anomaly, hist = debounce(np.array([True]), np.array([True, False]), k=2, n=3)
    assert anomaly.tolist() == [True]
    assert hist.tolist() == [False, True]
    raw = np.array([0, 1, 1, 0], dtype=bool)
    same, hist1 = debounce(raw, None, k=1, n=1)
    np.testing.assert_array_equal(same, raw)
    assert hist1.size == 0


def test_debounce_batch_invariance() -> None:
    rng = np.random.default_rng(0)
    raw = rng.random(500) < 0.3
    whole, _ = debounce(raw, None, 3, 5)
    parts, hist = [], None
    for lo, hi in itertools.pairwise([0, 0, 1, 7, 8, 250, 499, 500]):
        a, hist = debounce(raw[lo:hi], hist, 3, 5)
        parts.append(a)
    np.testing.assert_array_equal(np.concatenate(parts), whole)


def test_debounce_rejects_bad_parameters() -> None:
    with pytest.raises(ValueError, match="1 <= k <= n, got k=4, n=3"):
        debounce(np.zeros(3, bool), None, 4, 3)
    with pytest.raises(ValueError, match="at most n - 1 = 2 flags, got 3"):
        debounce(np.zeros(3, bool), np.zeros(3, bool), 2, 3)


# -- score_batch ----------------------------------------------------------------


@pytest.fixture(scope="module", params=sorted(DETECTORS))
def pipeline(request: pytest.FixtureRequest) -> LinePipeline:
    rng = np.random.default_rng(1)
    X = _series(rng, 800)
    X[rng.random(X.shape) < 0.01] = np.nan  # telemetry has gaps
    return LinePipeline(SENSORS, make_detector(request.param), window=8).fit(X)


def _test_stream(seed: int = 2) -> np.ndarray:
    rng = np.random.default_rng(seed)
    X = _series(rng, 400)
    # Temperature fault: +10 noise sd on a sensor uncorrelated with the others,
    # so the culprit is unambiguous.
    X[200:260, 3] += 1.0
    X[rng.random(X.shape) < 0.02] = np.nan
    return X


def _run(pipe: LinePipeline, X: np.ndarray, bounds: list[int], thr: float):
    state, results = None, []
    for lo, hi in itertools.pairwise(bounds):
        r, state = score_batch(pipe, X[lo:hi], state, thr, k=3, n=5)
        results.append(r)
    cat = {
        f: np.concatenate([getattr(r, f) for r in results]) for f in results[0].__dataclass_fields__
    }
    return cat, state


def test_score_batch_is_batch_size_invariant(pipeline: LinePipeline) -> None:
    X = _test_stream()
    thr = float(np.quantile(pipeline.decision_function(X[:150]), 0.95))
    whole, s_whole = _run(pipeline, X, [0, len(X)], thr)
    rng = np.random.default_rng(3)
    bounds = [0, 0, 1, *np.sort(rng.choice(np.arange(2, 399), 15, replace=False)).tolist(), 400]
    split, s_split = _run(pipeline, X, bounds, thr)
    for field in ("score", "raw_exceed", "anomaly", "top_sensors"):
        np.testing.assert_array_equal(split[field], whole[field], err_msg=field)
    assert s_split.to_dict() == s_whole.to_dict()
    # The injected fault is alerted and temperature named first.
    assert whole["anomaly"][210:260].mean() > 0.8
    assert np.mean(whole["top_sensors"][210:260, 0] == 3) > 0.8


def test_state_json_roundtrip_continues_identically(pipeline: LinePipeline) -> None:
    X = _test_stream()
    X[95:100, 2] = np.nan  # NaN inside the carried context
    thr = 1e9
    _, state = score_batch(pipeline, X[:100], None, thr, 2, 4)
    restored = ScoringState.from_dict(json.loads(json.dumps(state.to_dict())))
    a, _ = score_batch(pipeline, X[100:160], state, thr, 2, 4)
    b, _ = score_batch(pipeline, X[100:160], restored, thr, 2, 4)
    np.testing.assert_array_equal(a.score, b.score)
    assert np.isfinite(a.score).all()


def test_score_batch_validates_input(pipeline: LinePipeline) -> None:
    with pytest.raises(ValueError, match=r"4 sensors .* got shape \(3, 3\)"):
        score_batch(pipeline, np.zeros((3, 3)), None, 1.0)
    with pytest.raises(ValueError, match="threshold must be a finite float"):
        score_batch(pipeline, np.zeros((3, 4)), None, float("nan"))
    empty, _ = score_batch(pipeline, np.zeros((0, 4)), None, 1.0)
    assert empty.score.shape == (0,) and empty.top_sensors.shape == (0, 3)


def test_inf_is_rejected_and_nan_imputed_whether_or_not_the_batch_is_complete() -> None:
    # The scorer tells complete batches from gappy ones in one pass; an inf
    # must still be refused (alone, or next to a NaN), never imputed or scored.
    rng = np.random.default_rng(4)
    pipe = LinePipeline(SENSORS, make_detector("pca"), window=4).fit(_series(rng, 300))
    X = _series(rng, 20)
    for bad in ([(3, 1, np.inf)], [(3, 1, -np.inf), (5, 2, np.nan)]):
        Y = X.copy()
        for i, j, v in bad:
            Y[i, j] = v
        with pytest.raises(ValueError, match="must not contain inf"):
            score_batch(pipe, Y, None, 1.0)
    gappy = X.copy()
    gappy[5, 2] = np.nan
    filled = X.copy()
    filled[5, 2] = X[4, 2]  # carried forward
    got, _ = score_batch(pipe, gappy, None, 1.0)
    want, _ = score_batch(pipe, filled, None, 1.0)
    assert got.score.tobytes() == want.score.tobytes()
    assert not np.array_equal(got.score, score_batch(pipe, X, None, 1.0)[0].score)
