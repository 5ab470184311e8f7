"""A gap in a line's data resets its streaming state (issue 18).

The scenario of the issue: a line's next run arrives 40 minutes after the
previous one ended, at another operating point. Without a reset the
trailing window mixes readings from both sides of the pause and the first
frames after it score as a step that never happened.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from lineguard.detectors import score_batch, train_pipeline
from lineguard.detectors.scoring import gap_bound_us, segment_starts

SENSORS = ["level", "flow", "temp"]
WINDOW = 20
SECOND = 1_000_000


def _process(rng: np.random.Generator, phase: np.ndarray) -> np.ndarray:
    """Three coupled sensors following a slow cycle (period 600 rows)."""
    a = np.sin(2 * np.pi * phase / 600)
    return np.column_stack([a, 2 * a + 1, np.cos(2 * np.pi * phase / 600)]) + rng.normal(
        scale=0.05, size=(phase.size, 3)
    )


@pytest.fixture(scope="module")
def model():
    rng = np.random.default_rng(0)
    phase = np.arange(1800)
    X = _process(rng, phase)
    t = phase * SECOND
    return train_pipeline(X, SENSORS, "pca", window=WINDOW, time_us=t)


def _paused_stream() -> tuple[np.ndarray, np.ndarray, int]:
    """Run 1 ends at the cycle's top, run 2 starts 40 min later at its bottom."""
    rng = np.random.default_rng(1)
    first = _process(rng, np.arange(0, 150))  # ends near a = +1
    second = _process(rng, np.arange(450, 750))  # starts near a = -1
    t1 = np.arange(150) * SECOND
    t2 = t1[-1] + 40 * 60 * SECOND + np.arange(300) * SECOND
    return np.concatenate([first, second]), np.concatenate([t1, t2]), 150


def test_bound_is_a_window_of_the_training_sampling_interval() -> None:
    t = np.arange(0, 200, 2) * SECOND  # 2 s sampling
    assert gap_bound_us(t, 20) == 40 * SECOND
    starts = segment_starts(np.array([0, 1, 2, 50, 51, 40]) * SECOND, 10 * SECOND, 6)
    assert starts.tolist() == [0, 3, 5]  # a 48 s pause, then time going backwards


def test_the_model_stores_its_gap_bound(model) -> None:
    pipeline, _, info = model
    assert pipeline.max_gap_us_ == WINDOW * SECOND
    assert info["max_gap_us"] == WINDOW * SECOND


def test_live_micro_batches_equal_offline_and_no_alert_in_the_first_window(model) -> None:
    pipeline, threshold, _ = model
    X, t, pause = _paused_stream()
    offline, _ = score_batch(pipeline, X, None, threshold, 2, 5, time_us=t)
    # Live: micro-batches of uneven sizes, one of them ending exactly at the pause.
    rng = np.random.default_rng(2)
    cuts = np.sort(rng.choice(np.arange(1, len(X)), 25, replace=False)).tolist()
    bounds = sorted({0, pause, *cuts, len(X)})
    state, parts = None, []
    for lo, hi in itertools.pairwise(bounds):
        r, state = score_batch(pipeline, X[lo:hi], state, threshold, 2, 5, time_us=t[lo:hi])
        parts.append(r)
    for name in ("score", "raw_exceed", "anomaly", "top_sensors", "reason"):
        live = np.concatenate([getattr(p, name) for p in parts])
        np.testing.assert_array_equal(live, getattr(offline, name), err_msg=name)
    # Frames right after the pause count like a stream's first frames.
    assert not offline.anomaly[pause : pause + WINDOW].any()
    assert not offline.raw_exceed[pause : pause + WINDOW - 1].any()
    # And a healthy line stays quiet after its window has filled again.
    assert offline.anomaly.mean() < 0.02


def test_without_times_the_window_spans_the_pause_and_alerts(model) -> None:
    """The failure the reset prevents (this is what a test of the reset guards)."""
    pipeline, threshold, _ = model
    X, _, pause = _paused_stream()
    carried, _ = score_batch(pipeline, X, None, threshold, 2, 5)
    assert carried.anomaly[pause : pause + WINDOW].any()
