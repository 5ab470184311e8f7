"""What per-mode models cost ``score_batch`` on a batch line (MIDAS), side by side.

Two pipelines trained on the same normal runs of ``../shared/data/midas``
(``normal/``) -- the pooled model only (``mode_models=False``) and the
default, a model per operating mode -- score every fault run in 30-frame
micro-batches with frame times, as the worker would. Passes alternate
between the two, best of ``--repeat`` each, in one process, so the ratio is
measured on the same machine load.

Usage::

    python bench/modes_cost.py [--data DIR] [--repeat 7] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from midas import BATCH, concat  # noqa: E402

from lineguard.detectors.calibration import TRAINING_DEFAULTS, train_pipeline  # noqa: E402
from lineguard.detectors.scoring import score_batch  # noqa: E402
from lineguard.ingest.csv_runs import read_run  # noqa: E402

DEFAULT_DATA = Path("/work/shared/data/midas")


def one_pass(pipeline, threshold: float, runs) -> float:
    """Seconds to score every run from stream start in BATCH-frame batches."""
    k, n = TRAINING_DEFAULTS.debounce
    started = time.perf_counter()
    for run in runs:
        state = None
        for lo in range(0, len(run), BATCH):
            _, state = score_batch(
                pipeline,
                run.values[lo : lo + BATCH],
                state,
                threshold,
                k,
                n,
                time_us=run.time_us[lo : lo + BATCH],
            )
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    normal = [read_run(p) for p in sorted((args.data / "normal").glob("*.csv"))]
    faults = [read_run(p) for p in sorted((args.data / "faults").glob("*.csv"))]
    X, t = concat(normal)
    sensors = list(normal[0].sensors)
    variants = {
        name: train_pipeline(X, sensors, time_us=t, mode_models=modal)[:2]
        for name, modal in (("pooled", False), ("per_mode", True))
    }
    best = dict.fromkeys(variants, np.inf)
    for _ in range(args.repeat):
        for name, (pipe, thr) in variants.items():
            best[name] = min(best[name], one_pass(pipe, thr, faults))
    frames = sum(len(r) for r in faults)
    row = {
        "frames": frames,
        "batch": BATCH,
        "pooled_frames_per_s": round(frames / best["pooled"]),
        "per_mode_frames_per_s": round(frames / best["per_mode"]),
        "per_mode_over_pooled": round(best["pooled"] / best["per_mode"], 3),
    }
    print(
        f"MIDAS fault runs, {frames} frames in {BATCH}-frame batches, best of {args.repeat}: "
        f"pooled {row['pooled_frames_per_s']} frames/s, per-mode "
        f"{row['per_mode_frames_per_s']} frames/s (ratio {row['per_mode_over_pooled']})"
    )
    if args.json:
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
