"""Cost of the worker's whole calculation: ``TelemetryProcessor.process``, no I/O.

The "calculation alone" stage of ``bench/pipeline.py`` (decode, route, score,
alerts, incidents, line protocol, in the worker's micro-batches of
``BATCH_RECORDS`` records), made repeatable: the fleet, its training and its
v3 records come from the ``bench/pipeline.py`` *of the tree whose code is
measured* (``--quick``'s 20 lines x 50 sensors x 20,000 frames, 1,000
training rows, 500 frames per record by default), and each pass runs a fresh
processor over the same records, so every pass does the same work. The
first micro-batch of a pass (it loads the models) is not timed. Two figures:

* ``frames_per_s``: the timed micro-batches of the best of ``--repeat`` passes;
* ``batch_us_per_frame``: each timed micro-batch's best over the passes, summed.

``bench/pipeline.py``'s single pass of this stage swings with the machine's
load; this is the figure to compare two versions of the worker by::

    OPENBLAS_NUM_THREADS=1 python bench/calculation_cost.py --json
    OPENBLAS_NUM_THREADS=1 python bench/calculation_cost.py --against /work/wt/before --json

``--against TREE`` alternates ``TREE/.venv/bin/python`` and this interpreter
``--rounds`` times (see ``bench/scoring_cost.py``); ratio above 1: this tree
is faster.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent


def measure(args: argparse.Namespace) -> dict[str, object]:
    """Time the calculation with the code (and the bench/pipeline.py) this interpreter imports."""
    import lineguard

    tree = Path(lineguard.__file__).resolve().parent.parent
    # The measured tree's own pipeline benchmark builds the fleet and records,
    # so each version is driven the way its own benchmark drives it.
    sys.path.insert(0, str(tree / "bench"))
    import pipeline

    from lineguard.models.registry import Registry

    fleet = pipeline.make_fleet(args.lines, args.sensors, args.train_rows, args.score_rows)
    with tempfile.TemporaryDirectory(prefix="lineguard-calc-") as tmp:
        registry = Registry(Path(tmp))
        pipeline.train_fleet(fleet, registry, "pca")
        records = pipeline.wire_records(fleet, args.frames_per_record)
        step = pipeline.BATCH_RECORDS
        batches = [records[i : i + step] for i in range(0, len(records), step)]
        if len(batches) < 2:
            raise SystemExit(
                f"expected at least 2 micro-batches of {step} records (the first is not timed); "
                f"got {len(batches)}: raise --lines or --score-rows"
            )
        frames_in = [sum(pipeline.decode(r.value).n_frames for r in b) for b in batches]
        best_pass = np.inf
        best_batch = np.full(len(batches) - 1, np.inf)
        points = 0
        for _ in range(args.repeat):
            processor = pipeline.TelemetryProcessor(registry)
            outcome = processor.process(batches[0])  # loads the models: not timed
            pipeline.write_bodies(outcome.influx_lines)
            took = 0.0
            points = 0
            for j, batch in enumerate(batches[1:]):
                t0 = time.perf_counter()
                outcome = processor.process(batch)
                bodies = pipeline.write_bodies(outcome.influx_lines)
                dt = time.perf_counter() - t0
                took += dt
                best_batch[j] = min(best_batch[j], dt)
                points += sum(len(body.splitlines()) for body in bodies)
            best_pass = min(best_pass, took)
    frames = sum(frames_in[1:])
    return {
        "code": str(tree),
        "frames": frames,
        "points": points,
        "frames_per_s": round(frames / best_pass),
        "batch_us_per_frame": round(float(best_batch.sum()) / frames * 1e6, 4),
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=20)
    parser.add_argument("--sensors", type=int, default=50)
    parser.add_argument("--train-rows", type=int, default=1000)
    parser.add_argument("--score-rows", type=int, default=20000)
    parser.add_argument("--frames-per-record", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--against", help="another tree (with .venv) to alternate with")
    parser.add_argument("--rounds", type=int, default=2)
    sys.path.insert(0, str(BENCH_DIR))
    from scoring_cost import run

    return run(parser.parse_args(argv), argv, measure, "calculation alone", Path(__file__))


if __name__ == "__main__":
    sys.exit(main())
