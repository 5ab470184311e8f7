"""False alarms of SKAB's prefix protocol on SKAB's own normal run: a yardstick without labels.

SKAB's labelled runs are judged by F1, which mixes sensitivity and false
alarms, on ~700 test rows each. Its ``anomaly-free/`` run is 9,405 rows of
normal operation of the same testbed. Cut into windows shaped like a
labelled run (``--train`` rows to train on, as the protocol does, then
``--test`` rows to score: :func:`lineguard.models.evaluation.rolling_windows`,
the windows of ``lineguard evaluate --train-rows 400 --test-rows 700``), it
measures the false-alarm rate alone, on normal data only, so a training
choice can be judged by it without looking at a fault label. Each window is
trained with ``train_pipeline`` (frame times, its own hold-out and
conformal threshold) and scored from stream start with ``score_batch`` in
30-frame micro-batches, exactly as ``bench/skab_ablation.py`` does; the
textbook PCA T²+Q monitor (:mod:`textbook_pca`) is fitted on the same rows
and judged on the same test rows.

Per window it prints the alerted share of the test rows, the reasons of the
raw exceedances behind those alerts, the sensor named first on them, and the
two sensors whose 20-row level moved furthest from the training rows (in
training standard deviations of that level, :func:`level_shift`).

Usage::

    python bench/skab_normal.py [--data FILE] [--train 400] [--test 700]
        [--detector pca] [--set KEY=JSON] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from textbook_pca import TextbookPCA  # noqa: E402

from lineguard.detectors.calibration import TRAINING_DEFAULTS, train_pipeline  # noqa: E402
from lineguard.detectors.scoring import score_batch  # noqa: E402
from lineguard.detectors.sensor_checks import REASONS  # noqa: E402
from lineguard.ingest.csv_runs import read_run  # noqa: E402
from lineguard.models.evaluation import rolling_windows  # noqa: E402

DEFAULT_DATA = Path("/work/shared/data/skab/anomaly-free/anomaly-free.csv")
BATCH = 30


def level_shift(X: np.ndarray, train: int, sensors: list[str], window: int) -> dict[str, float]:
    """Per sensor: the test rows' mean trailing level, in training std of that level.

    The trailing mean over ``window`` rows is the level the detector's mean
    column sees; how far the test part's average level sits from the
    training rows', in standard deviations of the training rows' level,
    tells how far the line moved in a way 400 rows could not show.
    """
    c = np.cumsum(np.vstack([np.zeros((1, X.shape[1])), X]), axis=0)
    level = (c[window:] - c[:-window]) / window  # row i + window - 1's trailing mean
    fit = level[: train - window + 1]
    test = level[train - window + 1 :]
    spread = np.maximum(fit.std(axis=0), 1e-12)
    z = (test.mean(axis=0) - fit.mean(axis=0)) / spread
    return {name: round(float(v), 1) for name, v in zip(sensors, z, strict=True)}


def score_window(
    X: np.ndarray, t: np.ndarray, sensors: list[str], train: int, detector: str, kwargs: dict
) -> dict:
    """Train on the first ``train`` rows, stream the whole window, judge the rest."""
    pipe, threshold, info = train_pipeline(
        X[:train], sensors, detector, time_us=t[:train], **kwargs
    )
    k, n = TRAINING_DEFAULTS.debounce
    state = None
    anomaly, reason, top = [], [], []
    for lo in range(0, X.shape[0], BATCH):
        hi = min(lo + BATCH, X.shape[0])
        r, state = score_batch(pipe, X[lo:hi], state, threshold, k, n, time_us=t[lo:hi])
        anomaly.append(r.anomaly)
        reason.append(r.reason)
        top.append(r.top_sensors[:, 0])
    alerted = np.concatenate(anomaly)[train:]
    why = np.concatenate(reason)[train:]
    first = np.concatenate(top)[train:]
    baseline = TextbookPCA().fit(X[:train]).alarms(X[train:]).astype(bool)
    named = first[alerted & (first >= 0)]
    return {
        "level_shift_z": level_shift(X, train, sensors, pipe.window),
        "test_rows": int(alerted.size),
        "false_alarm_rows": int(alerted.sum()),
        "far": 100.0 * float(alerted.mean()),
        "baseline_far": 100.0 * float(baseline.mean()),
        "threshold": float(threshold),
        "reasons": dict(Counter(REASONS[c] for c in why[alerted & (why > 0)])),
        "named_first": dict(Counter(sensors[i] for i in named)),
        "slow_sensors": info["slow_sensors"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--train", type=int, default=400)
    parser.add_argument("--test", type=int, default=700)
    parser.add_argument("--detector", default=TRAINING_DEFAULTS.detector)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=JSON")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    kwargs = {k: json.loads(v) for k, v in (s.split("=", 1) for s in args.set)}
    run = read_run(args.data)
    sensors = list(run.sensors)
    rows = []
    for start, end in rolling_windows(len(run), args.train, args.test):
        row = score_window(
            run.values[start:end],
            run.time_us[start:end],
            sensors,
            args.train,
            args.detector,
            kwargs,
        )
        rows.append({"start": start, **row})
        named = ", ".join(f"{s} {c}" for s, c in Counter(row["named_first"]).most_common(2))
        moved = sorted(row["level_shift_z"].items(), key=lambda kv: -abs(kv[1]))[:2]
        print(
            f"rows {start}-{end}: FAR {row['far']:.1f} % (textbook {row['baseline_far']:.1f} %); "
            f"reasons {row['reasons'] or '-'}; named {named or '-'}; "
            f"level moved most: " + ", ".join(f"{s} {z:+.1f}" for s, z in moved)
        )
    fp = sum(r["false_alarm_rows"] for r in rows)
    n = sum(r["test_rows"] for r in rows)
    base = sum(r["baseline_far"] * r["test_rows"] for r in rows) / max(n, 1)
    reasons: Counter = Counter()
    for r in rows:
        reasons.update(r["reasons"])
    total = {
        "detector": args.detector,
        "train_kwargs": {k: str(v) for k, v in kwargs.items()},
        "windows": len(rows),
        "test_rows": n,
        "far": round(100.0 * fp / max(n, 1), 2),
        "baseline_far": round(base, 2),
        "windows_over_8pct": sum(r["far"] > 8.0 for r in rows),
        "reasons": dict(reasons),
    }
    print(
        f"SKAB anomaly-free, {len(rows)} windows of {args.train}+{args.test} rows | "
        f"FAR % LineGuard {total['far']} | textbook PCA T2+Q 99% {total['baseline_far']}"
    )
    if args.json:
        print(json.dumps(total))
    return 0


if __name__ == "__main__":
    sys.exit(main())
