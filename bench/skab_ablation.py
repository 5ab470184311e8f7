"""SKAB's prefix protocol through the pure scoring path, for ablations, beside textbook PCA.

Each run: train on its first 400 rows (``train_pipeline``, with frame
times), score the whole run from stream start with ``score_batch`` in
30-frame micro-batches, count the rows after the training rows -- what
``lineguard evaluate DIR --train-rows 400`` measures through the worker's
processor (``bench/skab.py``), in a fraction of the time, so that variants
of the training options can be compared side by side. The textbook PCA
T²+Q monitor (:mod:`textbook_pca`) is fitted on the same 400 rows and
judged on the same test rows.

``--dirty K`` tests a dirty training window instead (issue 16, item 5): each
run's 400 training rows end ``K`` rows into its labelled fault, so the fault's
first ``K`` rows are learned as normal, as in a plant where nobody labels the
window; the rows after the training window are scored (K = 20 is 5 % of the
window, 40 is 10 %).

Usage::

    python bench/skab_ablation.py [--data DIR] [--detector pca] [--dirty K]
        [--set sensor_checks=false] [--set 'sensor_checks={"range_margin": null}'] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from midas import stream  # noqa: E402
from textbook_pca import TextbookPCA  # noqa: E402

from lineguard.detectors.calibration import TRAINING_DEFAULTS, train_pipeline  # noqa: E402
from lineguard.ingest.csv_runs import RecordedRun, read_run  # noqa: E402
from lineguard.models.evaluation import find_runs  # noqa: E402
from lineguard.models.metrics import AlertScore, score_alerts  # noqa: E402

DEFAULT_DATA = Path("/work/shared/data/skab")
TRAIN_ROWS = 400


def evaluate(
    data: Path,
    detector: str,
    kwargs: dict[str, Any],
    runs_out: list | None = None,
    dirty: int | None = None,
):
    """Summed confusion for LineGuard and the baseline over the valve runs.

    With ``dirty``, the training window is the 400 rows ending ``dirty`` rows
    after the first labelled row, and scoring starts at that window.
    """
    ours = AlertScore(0, 0, 0, 0, 0, 0, 0)
    base = AlertScore(0, 0, 0, 0, 0, 0, 0)
    for path in find_runs(data):
        if path.parent.name not in ("valve1", "valve2"):
            continue
        run = read_run(path)
        if dirty is not None:
            onset = int(np.flatnonzero(run.anomaly)[0])
            first = onset + dirty - TRAIN_ROWS
            run = RecordedRun(
                path=run.path,
                sensors=run.sensors,
                time_us=run.time_us[first:],
                values=run.values[first:],
                anomaly=run.anomaly[first:],
                changepoint=None if run.changepoint is None else run.changepoint[first:],
            )
        n = TRAIN_ROWS
        pipe, thr, _ = train_pipeline(
            run.values[:n],
            list(run.sensors),
            detector,
            holdout_fraction=TRAINING_DEFAULTS.holdout_fraction,
            time_us=run.time_us[:n],
            **kwargs,
        )
        anomaly, _ = stream(pipe, thr, run, TRAINING_DEFAULTS.debounce)
        labels = run.anomaly[n:].astype(bool)
        mine = score_alerts(labels, anomaly[n:])
        theirs = score_alerts(labels, TextbookPCA().fit(run.values[:n]).alarms(run.values[n:]))
        ours, base = ours + mine, base + theirs
        if runs_out is not None:
            runs_out.append(
                {
                    "run": str(path.relative_to(data)),
                    "f1": round(mine.f1, 3),
                    "far": round(mine.far, 1),
                    "mar": round(mine.mar, 1),
                    "train_rows_labelled": int(run.anomaly[:n].sum()),
                }
            )
    return ours, base


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--detector", default=TRAINING_DEFAULTS.detector)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=JSON")
    parser.add_argument("--runs", action="store_true", help="print per-run rows")
    parser.add_argument(
        "--dirty",
        type=int,
        default=None,
        metavar="K",
        help="training window ends K rows into the fault",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    kwargs = {k: json.loads(v) for k, v in (s.split("=", 1) for s in args.set)}
    if isinstance(kwargs.get("sensor_checks"), dict):
        from lineguard.detectors.sensor_checks import SensorChecks

        kwargs["sensor_checks"] = SensorChecks(**kwargs["sensor_checks"])
    if isinstance(kwargs.get("mode_models"), dict):
        from lineguard.detectors.modes import ModeModels

        kwargs["mode_models"] = ModeModels(**kwargs["mode_models"])
    per_run: list = []
    ours, base = evaluate(args.data, args.detector, kwargs, per_run, args.dirty)
    if args.runs:
        for r in per_run:
            print(json.dumps(r))
    row = {
        "detector": args.detector,
        "train_kwargs": {k: str(v) for k, v in kwargs.items()},
        "dirty_rows": args.dirty,
        "f1": round(ours.f1, 3),
        "far": round(ours.far, 2),
        "mar": round(ours.mar, 2),
        "faults_caught": f"{ours.events_detected}/{ours.events}",
        "false_alarm_events": ours.false_alarm_events,
        "baseline_f1": round(base.f1, 3),
        "baseline_far": round(base.far, 2),
        "baseline_mar": round(base.mar, 2),
    }
    print(f"SKAB valve runs, {TRAIN_ROWS}-row prefix | F1 | FAR % | MAR %")
    print(
        f"LineGuard {args.detector} {row['train_kwargs'] or ''} | {row['f1']} | {row['far']} | "
        f"{row['mar']}"
    )
    print(
        f"textbook PCA T2+Q 99% | {row['baseline_f1']} | {row['baseline_far']} | "
        f"{row['baseline_mar']}"
    )
    if args.json:
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
