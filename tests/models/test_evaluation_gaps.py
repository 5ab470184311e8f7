"""Offline evaluation and the pure scorer apply the same gap rule (issue 18).

``evaluate_run`` streams a run through the stream worker's processor; the
processor passes frame times to ``score_batch``, so a 40-minute pause
resets the line's state there exactly as it does in the pure path.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lineguard.detectors.scoring import score_batch
from lineguard.ingest.csv_runs import RecordedRun
from lineguard.models.evaluation import GatewayPlan, evaluate_run
from lineguard.models.registry import Registry
from lineguard.models.training import TrainingConfig

SECOND = 1_000_000
TRAIN = 1200
PAUSE = 1350  # first row after the pause


def _run() -> RecordedRun:
    rng = np.random.default_rng(5)
    phase = np.concatenate([np.arange(1350), np.arange(1650, 1950)])
    a = np.sin(2 * np.pi * phase / 600)
    X = np.column_stack([a, 2 * a + 1, np.cos(2 * np.pi * phase / 600)])
    X = X + rng.normal(scale=0.05, size=X.shape)
    t = 1_700_000_000 * SECOND + np.arange(len(phase)) * SECOND
    t[PAUSE:] += 40 * 60 * SECOND
    labels = np.zeros(len(phase), dtype=np.int8)
    return RecordedRun(Path("paused.csv"), ("level", "flow", "temp"), t, X, labels, labels.copy())


def test_processor_path_resets_at_the_pause_like_the_pure_scorer(tmp_path: Path) -> None:
    run = _run()
    config = TrainingConfig()
    results = []
    for i, plan in enumerate((GatewayPlan(speed=60.0), GatewayPlan(speed=1e6, max_frames=37))):
        registry = Registry(tmp_path / f"r{i}")
        results.append(evaluate_run(run, "paused.csv", "line-gap", registry, TRAIN, config, plan))
    np.testing.assert_array_equal(results[1].anomaly, results[0].anomaly)
    bundle = Registry(tmp_path / "r0").load("line-gap")
    k, n = bundle.debounce
    window = bundle.pipeline.window
    whole, _ = score_batch(
        bundle.pipeline, run.values, None, bundle.threshold, k, n, time_us=run.time_us
    )
    np.testing.assert_array_equal(whole.anomaly[TRAIN:], results[0].anomaly)
    np.testing.assert_array_equal(whole.score[TRAIN:], results[0].score)
    after = PAUSE - TRAIN
    assert not results[0].anomaly[after : after + window].any()
    # The same model without the gap rule alerts right after the pause.
    carried, _ = score_batch(bundle.pipeline, run.values, None, bundle.threshold, k, n)
    assert carried.anomaly[PAUSE : PAUSE + window].any()


def test_candidate_evaluation_resets_at_the_pause_like_the_live_worker(tmp_path: Path) -> None:
    """``train``/``models evaluate`` score with frame times (the transcript's 4.csv pause)."""
    from lineguard.models.candidate import Scorer, evaluate_candidate

    run = _run()
    registry = Registry(tmp_path / "r")
    evaluate_run(run, "paused.csv", "line-gap", registry, TRAIN, TrainingConfig(), GatewayPlan())
    bundle = registry.load("line-gap")
    scorer = Scorer.from_bundle(bundle)
    k, n = bundle.debounce
    live, _ = score_batch(
        bundle.pipeline, run.values, None, bundle.threshold, k, n, time_us=run.time_us
    )
    _, flags = scorer.alerts(list(run.sensors), run.values, run.time_us)
    np.testing.assert_array_equal(flags, live.anomaly)
    report = evaluate_candidate(scorer, None, list(run.sensors), run.time_us, run.values)
    assert report["candidate"]["alert_rate_pct"] == round(100.0 * live.anomaly.mean(), 3)
    # Without the times the window reaches across the pause and alerts there.
    carried, _ = score_batch(bundle.pipeline, run.values, None, bundle.threshold, k, n)
    assert carried.anomaly[PAUSE : PAUSE + bundle.pipeline.window].any()
    assert not flags[PAUSE : PAUSE + bundle.pipeline.window].any()
