"""Alert rate and detection on ``bench/pipeline.py``'s synthetic slow line, by alert reason.

The benchmarks' fleet (``bench/synthetic.py``) is a continuous process of a
kind LineGuard is measured on but has no data for: 50 sensors driven by four
slow AR(1) latent factors (phi 0.98) plus sensor noise, trained on 1,000
clean rows, then scored on 20,000 rows that hold two planted shifts (+4 on
three sensors, 3 % of the rows). Each line's model is trained as
``bench/pipeline.py`` trains it and scores its rows in one ``score_batch``
call with the model's debounce (the result does not depend on the batch
size). Reported over all lines:

* ``alert_rate_normal_pct``: debounced alerts on the rows outside the shifts;
* ``exceed_rate_normal_pct``: raw exceedances there, and how many of them each
  alert reason raised (score, freeze, step, relation, unseen mode);
* ``shift_rows_alerted_pct``: debounced alerts on the shifted rows.

The code measured is the one this interpreter imports, driven by that tree's
own ``bench/pipeline.py``, so an older checkout runs it with its own venv::

    OPENBLAS_NUM_THREADS=1 python bench/slow_line.py --json
    OPENBLAS_NUM_THREADS=1 /work/wt/before/.venv/bin/python bench/slow_line.py --json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

REASONS = ("none", "score", "freeze", "step", "relation", "unseen_mode")


def shifted_rows(train_rows: int, score_rows: int) -> np.ndarray:
    """Which scored rows ``synthetic_line`` shifted (its two fault windows)."""
    rows = train_rows + score_rows
    width = max(rows // 66, 10)
    shifted = np.zeros(score_rows, dtype=bool)
    for start in (rows // 3, (2 * rows) // 3):
        shifted[start - train_rows : start - train_rows + width] = True
    return shifted


def measure(lines: int, sensors: int, train_rows: int, score_rows: int) -> dict[str, object]:
    import lineguard

    tree = Path(lineguard.__file__).resolve().parent.parent
    sys.path.insert(0, str(tree / "bench"))
    import pipeline

    from lineguard.detectors.scoring import score_batch
    from lineguard.models.registry import Registry

    fleet = pipeline.make_fleet(lines, sensors, train_rows, score_rows)
    shifted = shifted_rows(train_rows, score_rows)
    totals: Counter[str] = Counter()
    with tempfile.TemporaryDirectory(prefix="lineguard-slow-line-") as tmp:
        registry = Registry(Path(tmp))
        pipeline.train_fleet(fleet, registry, "pca")
        for line in fleet.lines:
            bundle = registry.load(line)
            k, n = bundle.debounce
            result, _ = score_batch(
                bundle.pipeline, fleet.score[line], None, threshold=bundle.threshold, k=k, n=n
            )
            exceed = np.asarray(result.raw_exceed, dtype=bool)
            alert = np.asarray(result.anomaly, dtype=bool)
            totals["normal_rows"] += int((~shifted).sum())
            totals["shift_rows"] += int(shifted.sum())
            totals["normal_alert"] += int((alert & ~shifted).sum())
            totals["normal_exceed"] += int((exceed & ~shifted).sum())
            totals["shift_alert"] += int((alert & shifted).sum())
            reason = getattr(result, "reason", None)  # absent before the sensor checks
            codes = reason[exceed & ~shifted] if reason is not None and reason.size else []
            for code in codes:
                totals[f"normal_exceed_{REASONS[int(code)]}"] += 1
    return {
        "code": str(tree),
        "lines": lines,
        "alert_rate_normal_pct": round(100 * totals["normal_alert"] / totals["normal_rows"], 2),
        "exceed_rate_normal_pct": round(100 * totals["normal_exceed"] / totals["normal_rows"], 2),
        "normal_exceed_by_reason": {
            name: totals[f"normal_exceed_{name}"]
            for name in REASONS[1:]
            if totals[f"normal_exceed_{name}"]
        },
        "shift_rows_alerted_pct": round(100 * totals["shift_alert"] / totals["shift_rows"], 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=20)
    parser.add_argument("--sensors", type=int, default=50)
    parser.add_argument("--train-rows", type=int, default=1000)
    parser.add_argument("--score-rows", type=int, default=20000)
    parser.add_argument("--json", action="store_true", help="end with one JSON line")
    args = parser.parse_args(argv)
    out = measure(args.lines, args.sensors, args.train_rows, args.score_rows)
    print(
        f"{out['code']}: alerts on {out['alert_rate_normal_pct']} % of normal rows "
        f"(exceedances {out['exceed_rate_normal_pct']} %: {out['normal_exceed_by_reason']}), "
        f"on {out['shift_rows_alerted_pct']} % of the shifted rows"
    )
    if args.json:
        print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
