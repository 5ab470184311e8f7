"""The isolation forest frozen for serving against scikit-learn's scoring, side by side.

Each line of :func:`synthetic.synthetic_line` (50 sensors, so 150 trailing-window
features) gets an ``iforest`` pipeline trained with ``train_pipeline`` on 2,000
clean rows. The same fitted pipeline is then scored twice per round on the same
500-frame micro-batches with ``score_batch``: once as trained (the trees frozen
into node arrays, :mod:`lineguard.detectors.iforest`) and once with its detector
swapped for the scikit-learn forest grown with the same seed (what a model held
before the freeze). Both detectors are refitted on the same feature rows with
the same seed, so they hold the same trees. Prints each variant's best pass, the ratio (above 1: the
frozen forest is faster), the detector's own share, and whether both gave the
same scores bit for bit.

Usage::

    OPENBLAS_NUM_THREADS=1 python bench/iforest_cost.py [--lines 4] [--repeat 5] [--json]
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.base import clone
from sklearn.ensemble import IsolationForest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from synthetic import synthetic_line  # noqa: E402

from lineguard.detectors.calibration import train_pipeline  # noqa: E402
from lineguard.detectors.scoring import DEFAULT_DEBOUNCE, score_batch  # noqa: E402

FROZEN = ("roots_", "feature_", "threshold_", "children_", "path_length_")


def twins(pipeline, F: np.ndarray):
    """Two copies of ``pipeline`` whose detectors hold the same trees, grown on
    ``F``: one frozen (as trained today), one scoring through scikit-learn."""
    frozen = copy.deepcopy(pipeline)
    frozen.detector_ = clone(pipeline.detector).fit(F)
    older = copy.deepcopy(frozen)
    det = older.detector_
    for name in FROZEN:
        delattr(det, name)
    det.forest_ = IsolationForest(
        n_estimators=det.n_estimators,
        max_samples=det.max_samples,
        max_features=det.max_features,
        random_state=det.random_state,
    ).fit(F)
    return frozen, older


def best_pass(lines, repeat: int) -> tuple[float, list[np.ndarray]]:
    k, n = DEFAULT_DEBOUNCE
    best, scores = np.inf, []
    for _ in range(repeat):
        scores = []
        t0 = time.perf_counter()
        for pipe, thr, batches in lines:
            state = None
            for X in batches:
                result, state = score_batch(pipe, X, state, thr, k, n)
                scores.append(result.score)
        best = min(best, time.perf_counter() - t0)
    return best, scores


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    sensors = [f"s{j:02d}" for j in range(50)]
    frozen, sk = [], []
    detector_s = {"frozen": np.inf, "scikit-learn": np.inf}
    for i in range(args.lines):
        X = synthetic_line(1000 + i, 6000, 50)
        clean = synthetic_line(1000 + i, 6000, 50, faults=False)[:2000]
        pipe, thr, _ = train_pipeline(clean, sensors, "iforest")
        batches = [X[2000 + lo : 2500 + lo] for lo in range(0, 4000, 500)]
        mine, older = twins(pipe, pipe.transform(clean)[0])
        frozen.append((mine, thr, batches))
        sk.append((older, thr, batches))
        feats = pipe.transform(X[2000:2500])[0]
        for name, p in (("frozen", mine), ("scikit-learn", older)):
            t0 = time.perf_counter()
            for _ in range(args.repeat):
                p.detector_.decision_function(feats)
            detector_s[name] = min(detector_s[name], (time.perf_counter() - t0) / args.repeat)
    t_frozen, s_frozen = best_pass(frozen, args.repeat)
    t_sk, s_sk = best_pass(sk, args.repeat)
    row = {
        "frames": args.lines * 4000,
        "frozen_s": round(t_frozen, 4),
        "scikit_learn_s": round(t_sk, 4),
        "ratio": round(t_sk / t_frozen, 2),
        "detector_ms_per_500_frames": {k: round(v * 1e3, 2) for k, v in detector_s.items()},
        "same_scores": all(np.array_equal(a, b) for a, b in zip(s_frozen, s_sk, strict=True)),
    }
    print(
        f"score_batch, {row['frames']} frames: frozen {row['frozen_s']} s, "
        f"scikit-learn {row['scikit_learn_s']} s, ratio {row['ratio']} "
        f"(detector per 500 frames: {row['detector_ms_per_500_frames']}); "
        f"same scores: {row['same_scores']}"
    )
    if args.json:
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
