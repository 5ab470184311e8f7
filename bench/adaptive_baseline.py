"""Fast sensors judged against an adaptive baseline: measured outside the library, not built.

On SKAB's normal run (``bench/skab_normal.py``) most false alarms of the
400-row prefix protocol come from the trailing means of *fast* sensors
(vibration RMS, flow) whose level wanders by several training standard
deviations within the next 700 rows of healthy operation. This script tries
the textbook answer: judge each fast sensor's level against an exponentially
weighted baseline of its own recent rows (time constant ``--tau`` rows)
instead of against the training rows, and stop the baseline following the
line while it alerts (``--freeze``), so that a fault is not learned as the
new normal.

How it is run: the pipeline is trained as usual on the first 400 rows, only
to learn which sensors are fast (neither judged by their dynamics nor with a
kept level); those columns of the raw rows are then replaced by
``x - baseline + baseline_at_start`` (the baseline from earlier rows only),
and a fresh pipeline is trained and scored on the adjusted rows. The
baseline is updated once per ``--block`` rows (30, the micro-batch), from those rows,
and with ``--freeze`` not at all when the batch alerted; it is a
preprocessing of the input, so the sensor checks see the adjusted rows too.

Usage::

    python bench/adaptive_baseline.py [--tau 150] [--freeze | --no-freeze]
        [--skab DIR] [--normal FILE] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from skab_normal import DEFAULT_DATA as NORMAL_RUN  # noqa: E402

from lineguard.detectors.calibration import TRAINING_DEFAULTS, train_pipeline  # noqa: E402
from lineguard.detectors.scoring import score_batch  # noqa: E402
from lineguard.ingest.csv_runs import read_run  # noqa: E402
from lineguard.models.evaluation import find_runs, rolling_windows  # noqa: E402
from lineguard.models.metrics import AlertScore, score_alerts  # noqa: E402

TRAIN_ROWS = 400
BATCH = 30


def _adjusted(
    X: np.ndarray, cols: np.ndarray, start: np.ndarray, ref: np.ndarray, alpha: float
) -> tuple[np.ndarray, np.ndarray]:
    """Rows with ``cols`` taken against the running baseline, and the baseline after them.

    Each row uses the baseline of the rows before it; ``ref`` puts the
    adjusted values back on the sensor's own scale.
    """
    Y = X.copy()
    b = start.copy()
    for i in range(X.shape[0]):
        Y[i, cols] = X[i, cols] - b + ref
        b = b + alpha * (X[i, cols] - b)
    return Y, b


def alerts(
    X: np.ndarray, t: np.ndarray, sensors: list[str], tau: float, freeze: bool, block: int = BATCH
) -> np.ndarray:
    """Debounced alerts of the whole run, fast sensors against the adaptive baseline."""
    n = TRAIN_ROWS
    probe, _, _ = train_pipeline(X[:n], sensors, "pca", time_us=t[:n])
    feats = probe.features_
    cols = np.flatnonzero(~np.asarray(feats.slow_) & ~np.asarray(feats.level_kept_))
    ref = X[: TRAINING_DEFAULTS.window, cols].mean(axis=0)
    alpha = 1.0 / tau
    Xtr, b = _adjusted(X[:n], cols, ref, ref, alpha)
    pipe, threshold, _ = train_pipeline(Xtr, sensors, "pca", time_us=t[:n])
    k, m = TRAINING_DEFAULTS.debounce
    r, state = score_batch(pipe, Xtr, None, threshold, k, m, time_us=t[:n])
    out = [r.anomaly]
    for lo in range(n, X.shape[0], block):
        hi = min(lo + block, X.shape[0])
        Y, after = _adjusted(X[lo:hi], cols, b, ref, alpha)
        r, state = score_batch(pipe, Y, state, threshold, k, m, time_us=t[lo:hi])
        if not (freeze and r.anomaly.any()):
            b = after
        out.append(r.anomaly)
    return np.concatenate(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tau", type=float, default=150.0)
    parser.add_argument("--freeze", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--skab", type=Path, default=Path("/work/shared/data/skab"))
    parser.add_argument("--normal", type=Path, default=NORMAL_RUN)
    parser.add_argument(
        "--block", type=int, default=BATCH, help="rows per baseline update (default 30)"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    total = AlertScore(0, 0, 0, 0, 0, 0, 0)
    for path in find_runs(args.skab):
        if path.parent.name not in ("valve1", "valve2"):
            continue
        run = read_run(path)
        a = alerts(run.values, run.time_us, list(run.sensors), args.tau, args.freeze, args.block)
        total = total + score_alerts(run.anomaly[TRAIN_ROWS:].astype(bool), a[TRAIN_ROWS:])
    normal = read_run(args.normal)
    fp = rows = 0
    for start, end in rolling_windows(len(normal), TRAIN_ROWS, 700):
        a = alerts(
            normal.values[start:end],
            normal.time_us[start:end],
            list(normal.sensors),
            args.tau,
            args.freeze,
            args.block,
        )
        fp += int(a[TRAIN_ROWS:].sum())
        rows += a.size - TRAIN_ROWS
    row = {
        "tau": args.tau,
        "freeze": args.freeze,
        "block": args.block,
        "skab_f1": round(total.f1, 3),
        "skab_far": round(total.far, 2),
        "skab_mar": round(total.mar, 2),
        "skab_faults_caught": f"{total.events_detected}/{total.events}",
        "normal_run_far": round(100.0 * fp / max(rows, 1), 2),
    }
    print(
        f"adaptive baseline tau {args.tau:g} freeze {args.freeze}: SKAB valve runs F1 "
        f"{row['skab_f1']} FAR {row['skab_far']} MAR {row['skab_mar']} "
        f"({row['skab_faults_caught']}); SKAB normal run FAR {row['normal_run_far']} %"
    )
    if args.json:
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
