"""What ``auto`` picks on a folder of normal runs, and the backtest behind the choice.

Trains one line on every run under ``--data`` (oldest first, as ``lineguard
train`` and ``lineguard evaluate --train-dir`` do) with ``detector_name="auto"``
and prints the selection from the training info: segments, each candidate's
false alarms on held-out segments and its detection of sensors played
backwards, the choice and its reason (:mod:`lineguard.detectors.selection`).

Usage::

    OPENBLAS_NUM_THREADS=1 python bench/auto_backtest.py [--data DIR] [--json]

``DIR`` defaults to ``/work/shared/data/midas/normal``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from lineguard.detectors.calibration import train_pipeline
from lineguard.ingest.csv_runs import read_run
from lineguard.models.evaluation import find_runs
from lineguard.models.training import concat_runs

DEFAULT_DATA = Path("/work/shared/data/midas/normal")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    history = concat_runs([read_run(p) for p in find_runs(args.data)])
    started = time.perf_counter()
    _, _, info = train_pipeline(
        history.values, list(history.sensors), "auto", time_us=history.time_us
    )
    selection = {**info["selection"], "training_s": round(time.perf_counter() - started, 1)}
    print(f"{args.data}: {len(history)} rows, {selection['segments']} segments")
    for name, far in selection["false_alarms"].items():
        found = selection["detection"][name]
        print(f"  {name:8s} false alarms {100 * far:.2f} %  detection {found:.3f}")
    print(f"  chose {selection['detector']}: {selection['reason']} ({selection['training_s']} s)")
    if args.json:
        print(json.dumps(selection))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
