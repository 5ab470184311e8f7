"""Where SKAB's missed fault rows are: before the first alert, or after it.

For each valve run (400-row prefix protocol, defaults, the pure path of
``bench/skab_ablation.py``) it splits the labelled fault rows that were not
alerted into the *delay* (rows from the label's first row to the first alert
inside it; the whole fault when nothing is alerted) and the rows *missed
after* the first alert, and counts false-alarm rows. It then prints what
SKAB's F1 goal needs from these totals, and, with ``--off-delay``, what
holding each alert for D more rows (an alarm off-delay, as alarm management
standards recommend per signal type) does to F1 / FAR / MAR; with
``--deadband``, the same for alerts that clear only once the score falls
below a share of the threshold (a value deadband).

It also prints, for ``--onset RUN``, 5-row means of every sensor around the
label's first row, to show when the fault becomes visible in the readings.

Usage::

    python bench/skab_misses.py [--data DIR] [--off-delay 0,5,10,20] [--deadband 0.8,0.5]
        [--onset valve2/3.csv] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from midas import stream  # noqa: E402

from lineguard.detectors.calibration import TRAINING_DEFAULTS, train_pipeline  # noqa: E402
from lineguard.ingest.csv_runs import read_run  # noqa: E402
from lineguard.models.evaluation import find_runs  # noqa: E402
from lineguard.models.metrics import AlertScore, score_alerts  # noqa: E402

DEFAULT_DATA = Path("/work/shared/data/skab")
TRAIN_ROWS = 400
F1_GOAL = 0.88


def _features(pipe, X: np.ndarray) -> tuple:
    """The run's features and imputed rows from stream start (for its scores)."""
    features, _, imputed = pipe.transform_rows(X)
    return features, imputed


def held(alerts: np.ndarray, rows: int) -> np.ndarray:
    """Alerts held for ``rows`` more rows after each alerted row (an off-delay)."""
    out = alerts.copy()
    for lag in range(1, rows + 1):
        out[lag:] |= alerts[:-lag]
    return out


def deadband(score: np.ndarray, alerts: np.ndarray, clear: float) -> np.ndarray:
    """Alerts that stay on while the score is above ``clear`` (a value deadband)."""
    out = alerts.copy()
    for i in range(1, out.size):
        out[i] |= out[i - 1] and score[i] > clear
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--off-delay", default="0", help="comma-separated rows, e.g. 0,5,10")
    parser.add_argument(
        "--deadband",
        default="",
        help="comma-separated shares of the threshold an alert clears below, e.g. 0.8,0.5",
    )
    parser.add_argument("--onset", default=None, metavar="RUN", help="e.g. valve2/3.csv")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    runs, scored = [], []
    for path in find_runs(args.data):
        if path.parent.name not in ("valve1", "valve2"):
            continue
        run = read_run(path)
        pipe, thr, _ = train_pipeline(
            run.values[:TRAIN_ROWS],
            list(run.sensors),
            time_us=run.time_us[:TRAIN_ROWS],
        )
        alerts, _ = stream(pipe, thr, run, TRAINING_DEFAULTS.debounce)
        labels = run.anomaly.astype(bool)
        name = str(path.relative_to(args.data))
        runs.append((name, labels[TRAIN_ROWS:], alerts[TRAIN_ROWS:]))
        score, _ = pipe.score_features(*_features(pipe, run.values))
        scored.append((score[TRAIN_ROWS:], thr))
    delay_total = after_total = 0
    for name, labels, alerts in runs:
        fault = np.flatnonzero(labels)
        inside = alerts[fault[0] : fault[-1] + 1]
        hits = np.flatnonzero(inside)
        delay = int(hits[0]) if hits.size else int(inside.size)
        after = int((~inside).sum()) - delay
        delay_total, after_total = delay_total + delay, after_total + after
        fp = int((alerts & ~labels).sum())
        print(
            f"{name}: fault rows {inside.size}, delay {delay}, missed after the first alert "
            f"{after}, false-alarm rows {fp}"
        )
    base = AlertScore(0, 0, 0, 0, 0, 0, 0)
    for _, labels, alerts in runs:
        base = base + score_alerts(labels, alerts)
    # F1 = TP / (TP + (FN + FP) / 2) >= g, with TP + FN fixed:
    positives = base.tp + base.fn
    need_tp = int(np.ceil(F1_GOAL * (positives + base.fp) / (2 - F1_GOAL)))
    need_fp = int(np.floor(base.tp * (2 - F1_GOAL) / F1_GOAL - positives))
    print(
        f"missed fault rows {base.fn}: delay {delay_total}, after the first alert {after_total}; "
        f"false-alarm rows {base.fp}"
    )
    print(
        f"F1 {base.f1:.3f}; F1 {F1_GOAL} needs TP >= {need_tp} (now {base.tp}: "
        f"+{need_tp - base.tp} fault rows) at these false alarms, or FP <= {need_fp} "
        f"(now {base.fp}) at these catches"
    )
    delays = [int(d) for d in args.off_delay.split(",") if d]
    table = []
    for d in delays:
        total = AlertScore(0, 0, 0, 0, 0, 0, 0)
        for _, labels, alerts in runs:
            total = total + score_alerts(labels, held(alerts, d))
        table.append(
            {
                "off_delay": d,
                "f1": round(total.f1, 3),
                "far": round(total.far, 2),
                "mar": round(total.mar, 2),
            }
        )
        print(
            f"off-delay {d} rows: F1 {total.f1:.3f}, FAR {total.far:.2f} %, MAR {total.mar:.2f} %"
        )
    bands = []
    for share in [float(x) for x in args.deadband.split(",") if x]:
        total = AlertScore(0, 0, 0, 0, 0, 0, 0)
        for (_, labels, alerts), (score, thr) in zip(runs, scored, strict=True):
            total = total + score_alerts(labels, deadband(score, alerts, share * thr))
        bands.append(
            {
                "clear_share": share,
                "f1": round(total.f1, 3),
                "far": round(total.far, 2),
                "mar": round(total.mar, 2),
            }
        )
        print(
            f"deadband (clears below {share:g} x threshold): F1 {total.f1:.3f}, "
            f"FAR {total.far:.2f} %, MAR {total.mar:.2f} %"
        )
    if args.onset:
        run = read_run(args.data / args.onset)
        on = int(np.flatnonzero(run.anomaly)[0])
        print(f"{args.onset}: label starts at row {on}; 5-row means from row {on - 10}:")
        for j, sensor in enumerate(run.sensors):
            means = run.values[on - 10 : on + 70, j].reshape(-1, 5).mean(axis=1)
            print(f"  {sensor}: " + " ".join(f"{m:.4g}" for m in means))
    if args.json:
        print(
            json.dumps(
                {
                    "missed": base.fn,
                    "delay_rows": delay_total,
                    "missed_after_first_alert": after_total,
                    "false_alarm_rows": base.fp,
                    "need_tp": need_tp,
                    "need_fp": need_fp,
                    "off_delay": table,
                    "deadband": bands,
                }
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
