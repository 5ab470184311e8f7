"""A compensated fault or a noisy sensor on a continuous line: its check against none.

A fault a control loop compensates leaves a lasting offset of a few noise
standard deviations in one variable, inside its normal range: the picture
of a held-out continuous chemical process on which LineGuard caught such
faults on about half their rows. LineGuard has no such data, so the line
here is the benchmarks' synthetic kind (``bench/synthetic.py``: sensors
mixed from four slow AR(1) factors plus sensor noise), and the fault is
planted: after ``--train-rows`` clean rows, rows 3,000-5,000 of the
``--score-rows`` scored ones carry ``+s`` noise standard deviations on one
sensor picked at random, for each ``s`` of ``--shifts``.

With ``--fault noise`` the planted fault is a transmitter losing
precision instead: the sensor's noise grows to ``s`` times its normal
standard deviation (reading around the right value); the variant with it
is ``SensorChecks(noise_window=20)`` (the check is off by default) and the
variant without is the default.

Each line is trained twice on the same rows with ``train_pipeline``'s
defaults, once with the drift check (``SensorChecks()``) and once without
(``SensorChecks(drift_window=None)``), and both score the same rows in
50-row micro-batches with the model's debounce. Printed side by side, per
shift: the shifted rows alerted, the alerts on the other rows, and how often
the alerted shifted rows name the shifted sensor first.

Usage::

    OPENBLAS_NUM_THREADS=1 python bench/compensated_fault.py [--lines 10] [--sensors 20]
        [--train-rows 3000] [--score-rows 6000] [--shifts 1,2,3,5] [--fault offset|noise] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from synthetic import synthetic_line  # noqa: E402

from lineguard.detectors.calibration import TRAINING_DEFAULTS, train_pipeline  # noqa: E402
from lineguard.detectors.scoring import score_batch  # noqa: E402
from lineguard.detectors.sensor_checks import SensorChecks  # noqa: E402

BATCH = 50
FAULT = slice(3000, 5000)


def _score(pipeline, threshold: float, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    k, n = TRAINING_DEFAULTS.debounce
    state, alerts, top = None, [], []
    for a in range(0, len(X), BATCH):
        result, state = score_batch(pipeline, X[a : a + BATCH], state, threshold, k, n)
        alerts.append(np.asarray(result.anomaly, dtype=bool))
        top.append(np.asarray(result.top_sensors)[:, 0])
    return np.concatenate(alerts), np.concatenate(top)


def measure(
    lines: int,
    sensors: int,
    train_rows: int,
    score_rows: int,
    shifts: list[float],
    fault_kind: str = "offset",
) -> list[dict]:
    names = [f"s{j}" for j in range(sensors)]
    if fault_kind == "offset":
        variants = {"drift check": SensorChecks(), "without": SensorChecks(drift_window=None)}
    else:  # the noise check is off by default (its cost)
        variants = {"noise check": SensorChecks(noise_window=20), "without": SensorChecks()}
    out = []
    for shift in shifts:
        totals = {v: np.zeros(5) for v in variants}
        for seed in range(lines):
            X = synthetic_line(seed, train_rows + score_rows, sensors, faults=False)
            j = int(np.random.default_rng(1000 + seed).integers(sensors))
            noise_sd = float(np.std(np.diff(X[:train_rows, j])) / np.sqrt(2))
            scored = X[train_rows:].copy()
            fault = np.zeros(score_rows, dtype=bool)
            fault[FAULT] = True
            if fault_kind == "offset":
                scored[fault, j] += shift * noise_sd
            else:  # the noise grows to `shift` times its sd; the reading stays centred
                extra = np.random.default_rng(2000 + seed).normal(size=int(fault.sum()))
                scored[fault, j] += extra * noise_sd * np.sqrt(max(shift**2 - 1.0, 0.0))
            for name, checks in variants.items():
                pipeline, threshold, _ = train_pipeline(
                    X[:train_rows],
                    sensors=names,
                    holdout_fraction=TRAINING_DEFAULTS.holdout_fraction,
                    sensor_checks=checks,
                )
                alert, top = _score(pipeline, threshold, scored)
                hit = alert & fault
                totals[name] += [
                    hit.sum(),
                    fault.sum(),
                    (alert & ~fault).sum(),
                    (~fault).sum(),
                    (hit & (top == j)).sum(),
                ]
        for name, (hit, rows, false, normal, named) in totals.items():
            out.append(
                {
                    "fault": fault_kind,
                    "size": shift,
                    "variant": name,
                    "fault_rows_alerted_pct": round(100 * hit / rows, 1),
                    "normal_rows_alerted_pct": round(100 * false / normal, 2),
                    "shifted_sensor_named_first_pct": round(100 * named / max(hit, 1), 1),
                }
            )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=10)
    parser.add_argument("--sensors", type=int, default=20)
    parser.add_argument("--train-rows", type=int, default=3000)
    parser.add_argument("--score-rows", type=int, default=6000)
    parser.add_argument("--shifts", default="1,2,3,5", help="offsets in noise sd, or noise factors")
    parser.add_argument("--fault", choices=("offset", "noise"), default="offset")
    parser.add_argument("--json", action="store_true", help="end with one JSON line")
    args = parser.parse_args(argv)
    shifts = [float(s) for s in args.shifts.split(",")]
    rows = measure(args.lines, args.sensors, args.train_rows, args.score_rows, shifts, args.fault)
    size = "offset (noise sd)" if args.fault == "offset" else "noise (x normal sd)"
    print(f"{size} | variant | fault rows alerted % | normal rows alerted % | named first %")
    for r in rows:
        print(
            f"{r['size']:g} | {r['variant']} | {r['fault_rows_alerted_pct']} | "
            f"{r['normal_rows_alerted_pct']} | {r['shifted_sensor_named_first_pct']}"
        )
    if args.json:
        print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
