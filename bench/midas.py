"""LineGuard on the MIDAS batch line, trained as a plant would: on complete normal batches.

Protocol (the data folder's README):

* **False alarms** -- leave-some-out over ``normal/``: the normal runs,
  sorted by name, are dealt into ``--folds`` folds; each fold's runs are
  scored by a model trained on all the other normal runs. Every normal row
  is therefore scored by a model that never saw its run. The rows of the
  fault runs before their fault starts count as normal too (reported
  separately).
* **Faults** -- a model trained on all of ``normal/`` scores each run of
  ``faults/`` from stream start. A fault is *caught* when an alert is raised
  at or after its first faulty row. Attribution: the faulted sensor (from
  ``manifest.txt``) is top-1 when it is the most frequent top-ranked sensor
  of the first alert event that overlaps the fault.

Scoring is the worker's pure path (``score_batch`` with frame times, so
the gap reset applies), fed in 30-frame micro-batches. Next to it, on the
same rows, the textbook PCA T²+Q monitor (:mod:`textbook_pca`, 99 % limits,
no debounce) trained on the same normal runs.

Usage::

    python bench/midas.py [--data DIR] [--detector NAME] [--folds 4] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from textbook_pca import TextbookPCA  # noqa: E402

from lineguard.detectors.calibration import TRAINING_DEFAULTS, train_pipeline  # noqa: E402
from lineguard.detectors.scoring import score_batch  # noqa: E402
from lineguard.ingest.csv_runs import RecordedRun, read_run  # noqa: E402
from lineguard.models.metrics import segments  # noqa: E402

DEFAULT_DATA = Path("/work/shared/data/midas")
BATCH = 30


def manifest(data: Path) -> list[dict[str, str]]:
    """Rows of ``manifest.txt`` as dicts."""
    lines = (data / "manifest.txt").read_text(encoding="utf-8").splitlines()
    header = lines[0].split(";")
    return [dict(zip(header, line.split(";"), strict=True)) for line in lines[1:] if line]


def stream(pipeline: Any, threshold: float, run: RecordedRun, debounce: tuple[int, int]) -> Any:
    """Score a run from stream start in micro-batches; (anomaly, top-1, reason)."""
    k, n = debounce
    state = None
    anomaly, top = [], []
    for lo in range(0, len(run), BATCH):
        hi = min(lo + BATCH, len(run))
        r, state = score_batch(
            pipeline, run.values[lo:hi], state, threshold, k, n, time_us=run.time_us[lo:hi]
        )
        anomaly.append(r.anomaly)
        top.append(r.top_sensors[:, 0])
    return np.concatenate(anomaly), np.concatenate(top)


def concat(runs: list[RecordedRun]) -> tuple[np.ndarray, np.ndarray]:
    """Rows and times of several runs, oldest first (the gap between runs resets windows)."""
    runs = sorted(runs, key=lambda r: int(r.time_us[0]))
    return np.concatenate([r.values for r in runs]), np.concatenate([r.time_us for r in runs])


def first_alert_top1(anomaly: np.ndarray, top: np.ndarray, onset: int) -> int | None:
    """Most frequent top-1 sensor of the first alert event overlapping rows >= onset."""
    for a, b in segments(anomaly):
        if b > onset:
            names = top[max(a, 0) : b]
            names = names[names >= 0]
            if names.size == 0:
                return None
            return int(np.bincount(names).argmax())
    return None


def evaluate(
    data: Path, detector: str, folds: int, train_kwargs: dict[str, Any], times: bool = True
) -> dict:
    """Run the protocol; returns per-run rows and totals for LineGuard and the baseline."""
    rows = manifest(data)
    normal = sorted(r["file"] for r in rows if r["kind"] == "normal")
    runs = {f: read_run(data / "normal" / f) for f in normal}
    sensors = list(next(iter(runs.values())).sensors)
    debounce = TRAINING_DEFAULTS.debounce
    out: dict[str, Any] = {"normal": [], "faults": []}

    def fit(train: list[str]) -> tuple[Any, float, TextbookPCA]:
        X, t = concat([runs[f] for f in train])
        pipe, thr, _ = train_pipeline(
            X, sensors, detector, time_us=t if times else None, **train_kwargs
        )
        return pipe, thr, TextbookPCA().fit(X)

    started = time.perf_counter()
    for fold in range(folds):
        held = normal[fold::folds]
        pipe, thr, base = fit([f for f in normal if f not in held])
        for f in held:
            anomaly, _ = stream(pipe, thr, runs[f], debounce)
            out["normal"].append(
                {
                    "run": f,
                    "rows": len(runs[f]),
                    "fp": int(anomaly.sum()),
                    "baseline_fp": int(base.alarms(runs[f].values).sum()),
                }
            )
    pipe, thr, base = fit(normal)
    for r in (r for r in rows if r["kind"] != "normal"):
        run = read_run(data / "faults" / r["file"])
        onset = int(r["onset_row"])
        anomaly, top = stream(pipe, thr, run, debounce)
        labels = np.asarray(run.anomaly, dtype=bool)
        hit = np.flatnonzero(anomaly[onset:])
        culprit = first_alert_top1(anomaly, top, onset)
        b = base.alarms(run.values).astype(bool)
        out["faults"].append(
            {
                "run": r["file"],
                "kind": r["kind"],
                "sensor": r["sensor"],
                "caught": bool(hit.size),
                "delay_rows": int(hit[0]) if hit.size else None,
                "top1": sensors[culprit] if culprit is not None else None,
                "top1_ok": culprit is not None and sensors[culprit] == r["sensor"],
                "pre_rows": onset,
                "pre_fp": int(anomaly[:onset].sum()),
                "recall_rows": float(anomaly[labels].mean()) if labels.any() else None,
                "baseline_caught": bool(b[onset:].any()),
                "baseline_pre_fp": int(b[:onset].sum()),
            }
        )
    out["seconds"] = round(time.perf_counter() - started, 1)
    n_rows = sum(x["rows"] for x in out["normal"])
    pre_rows = sum(x["pre_rows"] for x in out["faults"])
    caught = [x for x in out["faults"] if x["caught"]]
    out["summary"] = {
        "detector": detector,
        "train_kwargs": {k: str(v) for k, v in train_kwargs.items()},
        "far_normal_runs": round(100 * sum(x["fp"] for x in out["normal"]) / n_rows, 2),
        "far_pre_fault": round(100 * sum(x["pre_fp"] for x in out["faults"]) / pre_rows, 2),
        "far_all_normal_rows": round(
            100
            * (sum(x["fp"] for x in out["normal"]) + sum(x["pre_fp"] for x in out["faults"]))
            / (n_rows + pre_rows),
            2,
        ),
        "faults_caught": f"{len(caught)}/{len(out['faults'])}",
        "caught_frac": round(len(caught) / len(out["faults"]), 3),
        "top1_frac_of_caught": round(sum(x["top1_ok"] for x in caught) / max(len(caught), 1), 3),
        "median_delay_rows": float(np.median([x["delay_rows"] for x in caught]))
        if caught
        else None,
        "baseline_far_normal_runs": round(
            100 * sum(x["baseline_fp"] for x in out["normal"]) / n_rows, 2
        ),
        "baseline_far_pre_fault": round(
            100 * sum(x["baseline_pre_fp"] for x in out["faults"]) / pre_rows, 2
        ),
        "baseline_far_all_normal_rows": round(
            100
            * (
                sum(x["baseline_fp"] for x in out["normal"])
                + sum(x["baseline_pre_fp"] for x in out["faults"])
            )
            / (n_rows + pre_rows),
            2,
        ),
        "baseline_caught_frac": round(
            sum(x["baseline_caught"] for x in out["faults"]) / len(out["faults"]), 3
        ),
    }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--detector", default=TRAINING_DEFAULTS.detector)
    parser.add_argument("--folds", type=int, default=4)
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=JSON",
        help="extra train_pipeline keyword, e.g. --set sensor_checks=false",
    )
    parser.add_argument("--runs", action="store_true", help="print per-run rows")
    parser.add_argument(
        "--no-gap-reset",
        action="store_true",
        help="ablation: train without frame times (no gap bound, windows span pauses)",
    )
    parser.add_argument("--json", action="store_true", help="end with one JSON line")
    args = parser.parse_args(argv)
    kwargs = {k: json.loads(v) for k, v in (s.split("=", 1) for s in args.set)}
    # The holdout `lineguard train` / `evaluate` use, so the figures are theirs.
    kwargs.setdefault("holdout_fraction", TRAINING_DEFAULTS.holdout_fraction)
    if isinstance(kwargs.get("sensor_checks"), dict):
        from lineguard.detectors.sensor_checks import SensorChecks

        kwargs["sensor_checks"] = SensorChecks(**kwargs["sensor_checks"])
    if isinstance(kwargs.get("mode_models"), dict):
        from lineguard.detectors.modes import ModeModels

        kwargs["mode_models"] = ModeModels(**kwargs["mode_models"])
    res = evaluate(args.data, args.detector, args.folds, kwargs, times=not args.no_gap_reset)
    res["summary"]["gap_reset"] = not args.no_gap_reset
    if args.runs:
        for x in res["normal"]:
            print("normal", json.dumps(x))
        for x in res["faults"]:
            print("fault ", json.dumps(x))
    s = res["summary"]
    print(f"MIDAS, trained on complete normal batches ({args.folds}-fold leave-some-out for FAR)")
    print(
        "method | FAR all normal rows % | FAR held-out normal runs % | FAR pre-fault % | "
        "faults caught | faulted sensor top-1 of caught"
    )
    print(
        f"LineGuard {s['detector']} {s['train_kwargs']} | {s['far_all_normal_rows']} | "
        f"{s['far_normal_runs']} | {s['far_pre_fault']} | {s['faults_caught']} "
        f"({s['caught_frac']}) | {s['top1_frac_of_caught']}"
    )
    print(
        f"textbook PCA T2+Q 99% | {s['baseline_far_all_normal_rows']} | "
        f"{s['baseline_far_normal_runs']} | {s['baseline_far_pre_fault']} | "
        f"{s['baseline_caught_frac']} | -"
    )
    if args.json:
        print(json.dumps(s))
    return 0


if __name__ == "__main__":
    sys.exit(main())
