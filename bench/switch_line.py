"""Modes tried before they are trusted: a discrete line whose 0/1 channels are switches.

An assembly line's 0/1 columns are mostly switches that parts trip (light
barriers, part-present sensors), not a recipe's commands. Taken as mode
channels, their combinations split the rows into hundreds of modes and
every combination the training rows missed raises an unseen-mode alert.
``SensorChecks(validate_modes=True)`` (the default) sets aside the channels
whose combinations held-back normal rows do not bear out.

On ``tests/support/switch_line.py``'s line (8 switches, 6 analog readings;
with ``--running`` also a long-dwell running command, a true mode), per
seed: trained on 3,000 normal rows with the default training, scored on
5,000 more in which analog reading 0 freezes for 500 rows and reading 1
steps by 3 sd for 300, with the default debounce. Reported with mode
validation on and off: the channels set aside, the modes, the alert rate on
the normal scored rows (and how many exceedances there were unseen-mode
ones), and the share of the frozen and stepped rows alerted.

Usage::

    OPENBLAS_NUM_THREADS=1 python bench/switch_line.py [--seeds 3] [--running] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lineguard.detectors.calibration import TRAINING_DEFAULTS, train_pipeline
from lineguard.detectors.scoring import score_batch
from lineguard.detectors.sensor_checks import UNSEEN_MODE, SensorChecks
from tests.support.switch_line import switch_line

N_SWITCHES = 8
TRAIN_ROWS, SCORE_ROWS = 3000, 5000
FROZEN, STEPPED = slice(2500, 3000), slice(4000, 4300)


def run(seed: int, running: bool, validate_modes: bool) -> dict[str, object]:
    X = switch_line(np.random.default_rng(seed), TRAIN_ROWS + SCORE_ROWS, running=running)
    train, test = X[:TRAIN_ROWS], X[TRAIN_ROWS:].copy()
    frozen_col, stepped_col = N_SWITCHES, N_SWITCHES + 1
    test[FROZEN, frozen_col] = test[FROZEN.start, frozen_col]
    test[STEPPED, stepped_col] += 3.0 * train[:, stepped_col].std()
    normal = np.ones(SCORE_ROWS, dtype=bool)
    normal[FROZEN] = normal[STEPPED] = False
    sensors = [f"s{j}" for j in range(X.shape[1])]
    pipe, threshold, _ = train_pipeline(
        train, sensors, sensor_checks=SensorChecks(validate_modes=validate_modes)
    )
    k, n = TRAINING_DEFAULTS.debounce
    result, _ = score_batch(pipe, test, None, threshold=threshold, k=k, n=n)
    checks = pipe.checks_
    aside = getattr(checks, "channels_set_aside_", np.zeros(len(sensors), dtype=bool))
    return {
        "seed": seed,
        "validate_modes": validate_modes,
        "set_aside": [sensors[j] for j in np.flatnonzero(aside)],
        "modes": int(checks.modes_.size),
        "alert_rate_normal_pct": round(100 * float(result.anomaly[normal].mean()), 2),
        "unseen_mode_exceedances_normal": int((result.reason[normal] == UNSEEN_MODE).sum()),
        "frozen_rows_alerted_pct": round(100 * float(result.anomaly[FROZEN].mean()), 1),
        "stepped_rows_alerted_pct": round(100 * float(result.anomaly[STEPPED].mean()), 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--running", action="store_true", help="add a running command")
    parser.add_argument("--json", action="store_true", help="end with one JSON line")
    args = parser.parse_args(argv)
    rows = [
        run(seed, args.running, validate)
        for seed in range(args.seeds)
        for validate in (True, False)
    ]
    print(
        "seed | validate_modes | set aside | modes | alerts on normal rows % | "
        "unseen-mode exceedances there | frozen rows alerted % | stepped rows alerted %"
    )
    for r in rows:
        print(
            f"{r['seed']} | {r['validate_modes']} | {', '.join(r['set_aside']) or '-'} | "
            f"{r['modes']} | {r['alert_rate_normal_pct']} | "
            f"{r['unseen_mode_exceedances_normal']} | "
            f"{r['frozen_rows_alerted_pct']} | {r['stepped_rows_alerted_pct']}"
        )
    if args.json:
        print(json.dumps({"running": args.running, "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
