"""Faults a control loop compensates, on a continuous reactor: which are caught?

A cooled exothermic reactor held by two PI loops
(``tests/support/reactor_line.py``) is trained on normal operation and
scored on one run per fault kind (:data:`FAULTS`: steps in unmeasured and
measured disturbances, random variation, catalyst decay, fouling, a
sticking and a stuck valve, a biased and a drifting transmitter). Each
scored run has 1,500 rows (one a minute), the fault from row 300 on. The
false-alarm rate is read on ``--normal-runs`` normal runs of 1,500 rows
that neither training nor the faulty runs share a seed with: a slow
process's normal range shows only over many runs, and one scored run
says little about it.

Two training protocols per seed, with the default training and debounce:

* ``one run``: 1,000 rows of one normal run (the last quarter held back
  for the threshold, as always);
* ``5 runs``: five normal runs of 1,000 rows, a day apart.

Printed per detector and protocol: each fault's detection rate (the share
of its faulty rows alerted), their mean, and the false-alarm rate on the
normal scored runs; the textbook PCA T²+Q at 99 % limits
(``bench/textbook_pca.py``) is fitted on the same training rows and run on
the same scored rows. ``--noise-window 20`` trains every detector with the
noise check on (``SensorChecks(noise_window=20)``; off by default).
``--calibration holdout`` calibrates on the most recent 30 % of the rows
instead of out of fold (the default, ``folded``). ``--dirty FAULT`` puts
a fault in the training history: the second of the five runs carries
``FAULT`` from its row 500 on (half the run, a tenth of the history);
``--dirty-runs 1,3`` puts it in the second and the fourth run instead (a
fault that recurs, two runs of five).
``--by-reason`` adds, per fault, which alert reasons
the caught rows carry and the sensor named first most often.

Usage::

    OPENBLAS_NUM_THREADS=1 python bench/reactor_line.py [--seeds 3] [--normal-runs 10]
        [--detectors pca,iforest,ecod,codebook,auto] [--noise-window N]
        [--calibration folded|holdout] [--dirty FAULT [--dirty-runs 1,3]] [--by-reason] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from textbook_pca import TextbookPCA  # noqa: E402

from lineguard.detectors.calibration import TRAINING_DEFAULTS, train_pipeline  # noqa: E402
from lineguard.detectors.scoring import score_batch  # noqa: E402
from lineguard.detectors.sensor_checks import REASONS, SensorChecks  # noqa: E402
from tests.support.reactor_line import (  # noqa: E402
    FAULTS,
    SENSORS,
    STEP_US,
    reactor_line,
    reactor_runs,
)

SCORE_ROWS = 1500
FAULT_START = 300
RUN_ROWS = 1000
PROTOCOLS = {"one run": 1, "5 runs": 5}


def scored_runs(seed: int, normal_runs: int) -> dict[str, np.ndarray]:
    """One run per fault (one seed), and ``normal_runs`` normal runs (others)."""
    scored_seed = 1000 * seed + 500
    runs = {fault: reactor_line(SCORE_ROWS, scored_seed, fault, FAULT_START) for fault in FAULTS}
    runs["normal"] = np.stack(
        [reactor_line(SCORE_ROWS, 1000 * seed + 600 + r) for r in range(normal_runs)]
    )
    return runs


def measure(
    seed: int,
    protocol: str,
    detectors: list[str],
    normal_runs: int,
    noise_window: int | None,
    by_reason: bool,
    calibration: str = "folded",
    dirty: str | None = None,
    dirty_runs: tuple[int, ...] = (1,),
) -> list[dict]:
    """Every detector (and the textbook baseline) on one seed and protocol."""
    X, t = reactor_runs(PROTOCOLS[protocol], RUN_ROWS, 1000 * seed)
    if dirty is not None and PROTOCOLS[protocol] > 1:
        for r in dirty_runs:
            X[r * RUN_ROWS : (r + 1) * RUN_ROWS] = reactor_line(
                RUN_ROWS, 1000 * seed + r, dirty, 500
            )
    runs = scored_runs(seed, normal_runs)
    ts = np.arange(SCORE_ROWS, dtype=np.int64) * STEP_US + 10**15
    k, n = TRAINING_DEFAULTS.debounce
    checks = True if noise_window is None else SensorChecks(noise_window=noise_window)
    rows = []
    for name in detectors:
        pipe, threshold, info = train_pipeline(
            X, SENSORS, name, time_us=t, sensor_checks=checks, calibration=calibration
        )
        chosen = (info.get("selection") or {}).get("detector", name)
        row = {"seed": seed, "protocol": protocol, "detector": name, "chosen": chosen}
        row["threshold"] = round(float(threshold), 2)
        row["set_aside"] = info.get("calibration_folds_set_aside") or []

        def alerts(R: np.ndarray, pipe=pipe, threshold=threshold) -> tuple[np.ndarray, object]:
            result, _ = score_batch(pipe, R, None, threshold, k, n, time_us=ts)
            return np.asarray(result.anomaly, dtype=bool), result

        far = [alerts(R)[0].mean() for R in runs["normal"]]
        row["far_pct"] = round(100 * float(np.mean(far)), 2)
        row["far_max_pct"] = round(100 * float(np.max(far)), 2)
        for run in FAULTS:
            alerted, result = alerts(runs[run])
            row[run] = round(100 * float(alerted[FAULT_START:].mean()), 1)
            if by_reason:
                caught = np.flatnonzero(alerted[FAULT_START:]) + FAULT_START
                reasons = Counter(REASONS[int(r)] for r in np.asarray(result.reason)[caught])
                named = Counter(
                    SENSORS[int(s)] for s in np.asarray(result.top_sensors)[caught, 0] if s >= 0
                )
                row[f"{run}_why"] = (dict(reasons), named.most_common(1))
        row["mean"] = round(float(np.mean([row[f] for f in FAULTS])), 1)
        rows.append(row)
    textbook = TextbookPCA().fit(X)
    row = {"seed": seed, "protocol": protocol, "detector": "textbook", "chosen": "textbook"}
    far = [textbook.alarms(R).mean() for R in runs["normal"]]
    row["far_pct"] = round(100 * float(np.mean(far)), 2)
    row["far_max_pct"] = round(100 * float(np.max(far)), 2)
    for fault in FAULTS:
        row[fault] = round(100 * float(textbook.alarms(runs[fault])[FAULT_START:].mean()), 1)
    row["mean"] = round(float(np.mean([row[f] for f in FAULTS])), 1)
    rows.append(row)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--detectors", default="pca,iforest,ecod,codebook,auto")
    parser.add_argument("--normal-runs", type=int, default=10)
    parser.add_argument("--noise-window", type=int, default=None)
    parser.add_argument("--calibration", choices=["folded", "holdout"], default="folded")
    parser.add_argument("--dirty", choices=sorted(FAULTS), default=None)
    parser.add_argument("--dirty-runs", default="1", help="runs (0-4) that carry --dirty")
    parser.add_argument("--by-reason", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    detectors = args.detectors.split(",")
    rows = [
        r
        for protocol in PROTOCOLS
        for seed in range(args.seeds)
        for r in measure(
            seed,
            protocol,
            detectors,
            args.normal_runs,
            args.noise_window,
            args.by_reason,
            args.calibration,
            args.dirty,
            tuple(int(r) for r in args.dirty_runs.split(",")),
        )
    ]
    short = [f[:14] for f in FAULTS]
    print(
        "protocol | detector (chosen) | seed | threshold (folds set aside) | FAR % (max) "
        "| mean detection % | " + " | ".join(short)
    )
    for r in rows:
        print(
            f"{r['protocol']} | {r['detector']} ({r['chosen']}) | {r['seed']} | "
            f"{r.get('threshold', '-')} ({r.get('set_aside', '-')}) | "
            f"{r['far_pct']:.2f} ({r['far_max_pct']:.2f}) | {r['mean']:.1f} | "
            + " | ".join(f"{r[f]:.1f}" for f in FAULTS)
        )
    print("\nmean over seeds: protocol | detector | FAR % | mean detection %")
    for protocol in PROTOCOLS:
        for name in [*detectors, "textbook"]:
            mine = [r for r in rows if r["protocol"] == protocol and r["detector"] == name]
            print(
                f"{protocol} | {name} | {np.mean([r['far_pct'] for r in mine]):.2f} | "
                f"{np.mean([r['mean'] for r in mine]):.1f}"
            )
    if args.by_reason:
        print("\nwhy (reasons of caught rows; sensor named first most often)")
        for r in rows:
            if r["detector"] == "textbook":
                continue
            for fault in FAULTS:
                why = r[f"{fault}_why"]
                print(f"{r['protocol']} | {r['detector']} | {r['seed']} | {fault} | {why}")
    if args.json:
        print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
