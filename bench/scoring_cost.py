"""Cost of the scoring stage alone: ``score_batch`` frames/s on bench/pipeline.py's fleet.

The same synthetic lines as ``bench/pipeline.py`` (``synthetic_line``: 50
correlated sensors, two injected faults), each line's model trained with
``train_pipeline`` (default options), scored in 500-frame micro-batches
with frame times, best of ``--repeat`` passes. To compare two versions of
the code, run it under each, one after the other on the same machine, e.g.
with an older checkout first on ``PYTHONPATH`` (its ``score_batch`` may not
take times; then none are passed)::

    python bench/scoring_cost.py --json
    PYTHONPATH=/path/to/old/tree python bench/scoring_cost.py --json
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def fleet_arguments(parser: argparse.ArgumentParser, repeat: int) -> None:
    """The synthetic fleet's options, shared by the scoring-stage benchmarks."""
    parser.add_argument("--lines", type=int, default=10)
    parser.add_argument("--sensors", type=int, default=50)
    parser.add_argument("--train-rows", type=int, default=2000)
    parser.add_argument("--score-rows", type=int, default=4000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=repeat)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    fleet_arguments(parser, repeat=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    import lineguard.detectors as detectors
    from lineguard.detectors.calibration import TRAINING_DEFAULTS, train_pipeline
    from lineguard.detectors.scoring import score_batch

    sys.path.insert(0, str(REPO / "bench"))
    from pipeline import synthetic_line

    takes_times = "time_us" in inspect.signature(score_batch).parameters
    sensors = [f"s{j:02d}" for j in range(args.sensors)]
    total = args.train_rows + args.score_rows
    t = np.arange(total, dtype=np.int64) * 1_000_000
    lines = []
    for i in range(args.lines):
        X = synthetic_line(1000 + i, total, args.sensors)
        clean = synthetic_line(1000 + i, total, args.sensors, faults=False)[: args.train_rows]
        kw = {"time_us": t[: args.train_rows]} if takes_times else {}
        pipe, thr, _ = train_pipeline(clean, sensors, "pca", **kw)
        lines.append((pipe, thr, X[args.train_rows :], t[args.train_rows :]))
    k, n = TRAINING_DEFAULTS.debounce
    best = np.inf
    for _ in range(args.repeat):
        started = time.perf_counter()
        for pipe, thr, X, tt in lines:
            state = None
            for lo in range(0, X.shape[0], args.batch):
                kw = {"time_us": tt[lo : lo + args.batch]} if takes_times else {}
                _, state = score_batch(pipe, X[lo : lo + args.batch], state, thr, k, n, **kw)
        best = min(best, time.perf_counter() - started)
    frames = args.lines * args.score_rows
    row = {
        "code": str(Path(detectors.__file__).parent),
        "times_passed": takes_times,
        "frames": frames,
        "frames_per_s": round(frames / best),
    }
    print(f"scoring stage alone: {row['frames_per_s']} frames/s ({row['code']})")
    if args.json:
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
