"""Issue 16, item 6: can a line pick its detector from normal data alone?

A label-free selection rule, tried on SKAB's prefix protocol: for each run,
each candidate detector is trained on the first 70 % of the 400 training
rows (``train_pipeline``: its own hold-out and conformal threshold), then
synthetic faults are planted in the remaining 30 %: a step of ``--magnitude``
times the sensor's robust row-to-row scale (at least 5 % of its 5-95 %
spread), up and down, on every sensor in turn. The candidate whose threshold
is exceeded on most of the stepped rows is picked (ties: PCA, the default),
then trained on all 400 rows as usual and judged on the run's test rows,
beside every candidate alone.

Usage::

    python bench/auto_selection.py [--data DIR] [--candidates pca,mcd,ecod] [--magnitude 3]
        [--planted step|reverse] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from midas import stream  # noqa: E402

from lineguard.detectors.calibration import TRAINING_DEFAULTS, train_pipeline  # noqa: E402
from lineguard.detectors.scoring import score_batch  # noqa: E402
from lineguard.ingest.csv_runs import read_run  # noqa: E402
from lineguard.models.evaluation import find_runs  # noqa: E402
from lineguard.models.metrics import AlertScore, score_alerts  # noqa: E402

TRAIN_ROWS = 400


def stepped_detection(
    X: np.ndarray,
    t: np.ndarray,
    sensors: list[str],
    detector: str,
    magnitude: float,
    planted: str = "step",
) -> float:
    """Share of planted held-back rows over the candidate's threshold (no labels used).

    ``planted="step"``: a step on one sensor at a time, up and down.
    ``planted="reverse"``: one sensor's held-back rows in reverse time order,
    which keeps its values and its own dynamics but breaks its relation to
    the other sensors (what a multivariate detector is for); scored as the
    rate above the unplanted rows' own rate.
    """
    n_fit = int(X.shape[0] * 0.7)
    pipe, threshold, _ = train_pipeline(X[:n_fit], sensors, detector, time_us=t[:n_fit])
    scale = np.median(np.abs(np.diff(X[:n_fit], axis=0)), axis=0) * 1.4826 / np.sqrt(2)
    spread = np.quantile(X[:n_fit], 0.95, axis=0) - np.quantile(X[:n_fit], 0.05, axis=0)
    k, n = TRAINING_DEFAULTS.debounce
    rates = []
    if planted == "reverse":
        a = n_fit + 20
        clean, _ = score_batch(pipe, X, None, threshold=threshold, k=k, n=n, time_us=t)
        base = float(np.mean(clean.raw_exceed[a:]))
        for j in np.flatnonzero(spread > 0):
            Y = X.copy()
            Y[a:, j] = X[a:, j][::-1]
            result, _ = score_batch(pipe, Y, None, threshold=threshold, k=k, n=n, time_us=t)
            rates.append(float(np.mean(result.raw_exceed[a:])) - base)
        return float(np.mean(rates))
    for j in np.flatnonzero(spread > 0):
        for sign in (1.0, -1.0):
            Y = X.copy()
            # 20 rows in, so that the step is inside a full feature window.
            Y[n_fit + 20 :, j] += sign * magnitude * max(scale[j], 0.05 * spread[j])
            result, _ = score_batch(pipe, Y, None, threshold=threshold, k=k, n=n, time_us=t)
            rates.append(float(np.mean(result.raw_exceed[n_fit + 20 :])))
    return float(np.mean(rates))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("/work/shared/data/skab"))
    parser.add_argument("--candidates", default="pca,mcd,ecod")
    parser.add_argument("--magnitude", type=float, default=3.0)
    parser.add_argument("--planted", choices=("step", "reverse"), default="step")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=UserWarning)  # MinCovDet's rank warnings
    candidates = args.candidates.split(",")
    totals = {name: AlertScore(0, 0, 0, 0, 0, 0, 0) for name in [*candidates, "selected"]}
    picks: dict[str, str] = {}
    for path in find_runs(args.data):
        if path.parent.name not in ("valve1", "valve2"):
            continue
        run = read_run(path)
        sensors = list(run.sensors)
        X, t = run.values[:TRAIN_ROWS], run.time_us[:TRAIN_ROWS]
        rates = {
            d: stepped_detection(X, t, sensors, d, args.magnitude, args.planted) for d in candidates
        }
        pick = max(candidates, key=lambda d: (round(rates[d], 3), d == "pca"))
        labels = run.anomaly[TRAIN_ROWS:].astype(bool)
        scores = {}
        for d in candidates:
            pipe, threshold, _ = train_pipeline(X, sensors, d, time_us=t)
            anomaly, _ = stream(pipe, threshold, run, TRAINING_DEFAULTS.debounce)
            scores[d] = score_alerts(labels, anomaly[TRAIN_ROWS:])
            totals[d] = totals[d] + scores[d]
        totals["selected"] = totals["selected"] + scores[pick]
        name = str(path.relative_to(args.data))
        picks[name] = pick
        print(
            f"{name}: stepped-row detection "
            + ", ".join(f"{d} {rates[d]:.3f}" for d in candidates)
            + f" -> {pick}; test F1 "
            + ", ".join(f"{d} {scores[d].f1:.3f}" for d in candidates)
        )
    print("variant | F1 | FAR % | MAR %")
    for name, s in totals.items():
        print(f"{name} | {s.f1:.3f} | {s.far:.2f} | {s.mar:.2f}")
    if args.json:
        row = {
            name: {"f1": round(s.f1, 3), "far": round(s.far, 2), "mar": round(s.mar, 2)}
            for name, s in totals.items()
        }
        print(json.dumps({"magnitude": args.magnitude, "picks": picks, **row}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
