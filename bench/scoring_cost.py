"""Cost of the scoring stage alone: ``score_batch`` on bench/pipeline.py's fleet.

The same synthetic lines as ``bench/pipeline.py`` (:func:`synthetic.synthetic_line`:
50 correlated sensors, two injected faults), each line's model trained with
``fit_from_rows`` and the default ``TrainingConfig`` as ``bench/pipeline.py``
trains it (1,000 clean rows with ``--quick``, the default here), scored in
500-frame micro-batches without frame times, as that benchmark's "scoring
stage alone" does. Two figures per run:

* ``frames_per_s``: the whole fleet, best of ``--repeat`` passes;
* ``batch_us_per_frame``: every micro-batch of the fleet timed alone, its
  best of ``--repeat`` passes, summed (a busy machine inflates a whole pass
  more often than each of its batches' best).

To compare two versions of the code side by side, ``--against TREE`` runs
this script under ``TREE/.venv/bin/python`` (an older checkout with its own
virtualenv) and under this interpreter, alternately, ``--rounds`` times, one
right after the other, and prints every run and each round's ratio
(this tree / the other; above 1 is faster)::

    OPENBLAS_NUM_THREADS=1 python bench/scoring_cost.py --json
    OPENBLAS_NUM_THREADS=1 python bench/scoring_cost.py --against /work/wt/before --json

``--detector NAME`` trains the fleet with another detector (default ``pca``,
the figure issue 16's cost goal is about); with ``--against`` the other
tree must know it.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
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


def measure(args: argparse.Namespace) -> dict[str, object]:
    """Train the fleet and time its scoring with the code this interpreter imports."""
    import lineguard.detectors as detectors
    from lineguard.detectors.scoring import DEFAULT_DEBOUNCE, score_batch
    from lineguard.models.training import TrainingConfig, fit_from_rows

    sys.path.insert(0, str(REPO / "bench"))
    from synthetic import synthetic_line

    config = TrainingConfig(detector=getattr(args, "detector", "pca"))
    k, n = getattr(config, "debounce", DEFAULT_DEBOUNCE)
    sensors = [f"sensor_{j:03d}" for j in range(args.sensors)]
    total = args.train_rows + args.score_rows
    lines = []
    for i in range(args.lines):
        X = synthetic_line(1000 + i, total, args.sensors)
        clean = synthetic_line(1000 + i, total, args.sensors, faults=False)[: args.train_rows]
        pipe, thr, _ = fit_from_rows(sensors, clean, config)
        batches = [
            X[args.train_rows + lo : args.train_rows + lo + args.batch]
            for lo in range(0, args.score_rows, args.batch)
        ]
        lines.append((pipe, thr, batches))
    # Each batch's input state, from one untimed pass.
    states = []
    for pipe, thr, batches in lines:
        state, line_states = None, []
        for X in batches:
            line_states.append(state)
            _, state = score_batch(pipe, X, state, thr, k, n)
        states.append(line_states)
    best_pass = np.inf
    best_batch = np.full((len(lines), len(lines[0][2])), np.inf)
    for _ in range(args.repeat):
        started = time.perf_counter()
        for i, (pipe, thr, batches) in enumerate(lines):
            state = None
            for j, X in enumerate(batches):
                t0 = time.perf_counter()
                _, state = score_batch(pipe, X, state, thr, k, n)
                best_batch[i, j] = min(best_batch[i, j], time.perf_counter() - t0)
        best_pass = min(best_pass, time.perf_counter() - started)
    frames = args.lines * args.score_rows
    return {
        "code": str(Path(detectors.__file__).resolve().parent.parent),
        "checks": getattr(lines[0][0], "checks_", None) is not None,
        "takes_times": "time_us" in inspect.signature(score_batch).parameters,
        "frames": frames,
        "frames_per_s": round(frames / best_pass),
        "batch_us_per_frame": round(float(best_batch.sum()) / frames * 1e6, 4),
    }


def compare(
    args: argparse.Namespace, argv: list[str], script: Path | None = None
) -> list[dict[str, object]]:
    """Alternate the other tree's interpreter and this one; one row per run.

    ``script`` (this file by default) is run under each interpreter with
    ``--json`` and must print a row with ``frames_per_s`` and
    ``batch_us_per_frame`` last.
    """
    script = Path(__file__).resolve() if script is None else script
    other = Path(args.against).resolve() / ".venv" / "bin" / "python"
    if not other.exists():
        raise SystemExit(f"--against expects a tree with its own .venv; {other} does not exist")
    child = [a for a in argv if a != "--json"]
    skip = False
    rest = []
    for a in child:  # drop --against/--rounds and their values
        if skip:
            skip = False
            continue
        if a in ("--against", "--rounds"):
            skip = True
            continue
        if a.startswith(("--against=", "--rounds=")):
            continue
        rest.append(a)
    env = dict(os.environ, OPENBLAS_NUM_THREADS=os.environ.get("OPENBLAS_NUM_THREADS", "1"))
    rows = []
    for r in range(args.rounds):
        pair = {}
        for label, python in (("other", str(other)), ("this", sys.executable)):
            # cwd outside both trees: each interpreter imports its own package.
            out = subprocess.run(
                [python, str(script), "--json", *rest],
                env=env,
                cwd="/",
                capture_output=True,
                text=True,
                check=True,
            )
            row = json.loads(out.stdout.strip().splitlines()[-1])
            row.update(round=r + 1, tree=label)
            print(json.dumps(row), flush=True)
            pair[label] = row
            rows.append(row)
        ratio = {
            "round": r + 1,
            "frames_per_s_ratio": round(
                pair["this"]["frames_per_s"] / pair["other"]["frames_per_s"], 3
            ),
            "batch_ratio": round(
                pair["other"]["batch_us_per_frame"] / pair["this"]["batch_us_per_frame"], 3
            ),
        }
        print(json.dumps(ratio), flush=True)
        rows.append(ratio)
    return rows


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    fleet_arguments(parser, repeat=5)
    parser.set_defaults(train_rows=1000)  # as bench/pipeline.py --quick trains
    parser.add_argument("--detector", default="pca", help="the fleet's detector (default pca)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--against", help="another tree (with .venv) to alternate with")
    parser.add_argument("--rounds", type=int, default=2)
    return run(parser.parse_args(argv), argv, measure, "scoring stage alone", Path(__file__))


def run(
    args: argparse.Namespace,
    argv: list[str],
    measure: Callable[[argparse.Namespace], dict[str, object]],
    stage: str,
    script: Path,
) -> int:
    """Measure with this interpreter, or alternate with ``--against``'s (``script`` in both)."""
    if args.against:
        compare(args, argv, script=script.resolve())
        return 0
    row = measure(args)
    print(
        f"{stage}: {row['frames_per_s']} frames/s, "
        f"{row['batch_us_per_frame']} us/frame by batch ({row['code']})"
    )
    if args.json:
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
