"""Cost of naming the alert reason in ``lineguard_score`` points, side by side in one run.

The worker's point builder (``lineguard.detectors.points.result_points``)
writes ``reason`` only on exceeding frames, and makes the reason part of the
group key so it is a constant of each group's line template (no per-frame
formatting). This measures what that costs against the same builder given
results without reasons (``reason`` all 0), which writes exactly the points
of the code before the reason existed (checked: the outputs differ only by
the ``,reason="..."`` fields, and by the text of ``threshold`` on a point
left alone in its group: ``encode_points`` writes a column constant over
two or more points in full precision and a single point's with 12 digits,
and splitting groups by reason makes more single-point groups; both texts
parse to the threshold within 1e-12). Interleaved per micro-batch, best of ``--repeat`` each:

* ``fleet``: bench/pipeline.py's synthetic lines (50 sensors, 3 % fault rows),
  scored in the worker's 500-frame records; most frames are quiet;
* ``skab``: the five bundled SKAB runs, a third of whose frames exceed (the
  worst case for the reason field);
* ``calculation``: the worker's whole calculation (``TelemetryProcessor``:
  decode, route, score, alerts, incidents, points) over bench/pipeline.py's
  wire records of the fleet, two processors in lockstep, one of them with a
  point builder given results without reasons (as before), and a third with
  reasons again (``a_a_ratio``: the noise floor of the comparison), the
  order rotating per micro-batch; best of ``--passes`` passes.

    python bench/reason_cost.py --json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def _results(pipeline, threshold, debounce, X, t, batch):
    from lineguard.detectors.scoring import score_batch
    from lineguard.stream.processor import top_sensor_names

    k, n = debounce
    state, out = None, []
    for start in range(0, X.shape[0], batch):
        sl = slice(start, start + batch)
        result, state = score_batch(pipeline, X[sl], state, threshold, k, n, time_us=t[sl])
        named = result.raw_exceed | result.anomaly
        top = np.full(len(result.score), "", dtype=object)
        if named.any():
            top[named] = top_sensor_names(result.top_sensors[named], pipeline.sensors)
        out.append((t[sl], result, threshold, top))
    return out


def _best_times(cases, repeat: int) -> tuple[float, float]:
    """Sum over cases of the best time of each builder, the two interleaved per case.

    Interleaving at the level of one micro-batch, and keeping each batch's
    best of ``repeat``, keeps a load burst on a shared machine from landing
    on one side only.
    """
    from lineguard.detectors.points import result_points

    tags = {"site": "site-1", "line": "line-000", "model_version": "v0001"}
    without = with_ = 0.0
    for t, result, threshold, top in cases:
        late = np.zeros(len(t), bool)
        stripped = dataclasses.replace(result, reason=np.zeros_like(result.reason))
        best = [np.inf, np.inf]
        for _ in range(repeat):
            for side, r in enumerate((stripped, result)):
                started = time.perf_counter()
                result_points(tags, t, r, threshold, late, top)
                best[side] = min(best[side], time.perf_counter() - started)
        without += best[0]
        with_ += best[1]
    return without, with_


def _calculation(args) -> dict:
    import tempfile
    from unittest import mock

    import lineguard.stream.processor as processor_module
    from lineguard.models.registry import Registry
    from lineguard.stream.limits import BATCH_RECORDS
    from lineguard.stream.processor import TelemetryProcessor

    sys.path.insert(0, str(REPO / "bench"))
    from pipeline import make_fleet, train_fleet, wire_records

    real = processor_module.result_points

    def without_reason(tags, time_us, result, *rest):
        stripped = dataclasses.replace(result, reason=np.zeros_like(result.reason))
        return real(tags, time_us, stripped, *rest)

    fleet = make_fleet(args.lines, args.sensors, args.train_rows, args.score_rows)
    with tempfile.TemporaryDirectory(prefix="reason-cost-") as tmp:
        registry = Registry(tmp)
        train_fleet(fleet, registry, "pca")
        records = wire_records(fleet, args.batch)
        batches = [records[i : i + BATCH_RECORDS] for i in range(0, len(records), BATCH_RECORDS)]
        # Three processors in lockstep: without reasons, with, and with again
        # (the A/A pair: how far apart two identical sides land on this machine).
        sides = (without_reason, real, real)
        best = [np.inf] * len(sides)
        for _ in range(args.passes):
            procs = [TelemetryProcessor(registry) for _ in sides]
            for proc in procs:
                proc.preload()
            totals = [0.0] * len(sides)
            for i, batch in enumerate(batches):
                for k in range(len(sides)):
                    side = (i + k) % len(sides)  # rotate who goes first
                    with mock.patch.object(processor_module, "result_points", sides[side]):
                        started = time.perf_counter()
                        procs[side].process(batch)
                        totals[side] += time.perf_counter() - started
            best = [min(b, t) for b, t in zip(best, totals, strict=True)]
    return {
        "frames": fleet.frames,
        "frames_per_s_without_reason": round(fleet.frames / best[0]),
        "frames_per_s_with_reason": round(fleet.frames / best[1]),
        "cost_ratio": round(best[1] / best[0], 3),
        "a_a_ratio": round(best[2] / best[1], 3),
    }


def _normal(text: str) -> str:
    """Line protocol with the threshold at 12 significant digits."""
    return re.sub(r"threshold=([0-9.e+-]+)", lambda m: f"threshold={float(m[1]):.12g}", text)


def main(argv: list[str] | None = None) -> dict:
    sys.path.insert(0, str(REPO / "bench"))
    from scoring_cost import fleet_arguments

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    fleet_arguments(parser, repeat=15)
    parser.add_argument("--passes", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    from lineguard.detectors.calibration import train_pipeline
    from lineguard.detectors.points import result_points
    from lineguard.detectors.scoring import DEFAULT_DEBOUNCE
    from lineguard.ingest.csv_runs import read_run
    from lineguard.models.evaluation import find_runs

    sys.path.insert(0, str(REPO / "bench"))
    from pipeline import synthetic_line

    sets: dict[str, list] = {"fleet": [], "skab": []}
    sensors = [f"s{j:02d}" for j in range(args.sensors)]
    total = args.train_rows + args.score_rows
    t = np.arange(total, dtype=np.int64) * 1_000_000 + 1_735_689_600_000_000
    for i in range(args.lines):
        X = synthetic_line(1000 + i, total, args.sensors)
        clean = synthetic_line(1000 + i, total, args.sensors, faults=False)[: args.train_rows]
        pipe, thr, _ = train_pipeline(clean, sensors, "pca", time_us=t[: args.train_rows])
        sets["fleet"] += _results(
            pipe, thr, DEFAULT_DEBOUNCE, X[args.train_rows :], t[args.train_rows :], args.batch
        )
    for path in find_runs(REPO / "examples" / "data" / "skab"):
        run = read_run(path)
        pipe, thr, _ = train_pipeline(
            run.values[:400], list(run.sensors), "pca", time_us=run.time_us[:400]
        )
        sets["skab"] += _results(pipe, thr, DEFAULT_DEBOUNCE, run.values, run.time_us, args.batch)

    tags = {"site": "site-1", "line": "line-000", "model_version": "v0001"}
    report: dict = {"date": time.strftime("%Y-%m-%d"), "repeat": args.repeat}
    for name, cases in sets.items():
        frames = sum(len(c[0]) for c in cases)
        exceed = sum(int(c[1].raw_exceed.sum()) for c in cases)
        # The stripped builder writes the old points: same text minus the reason.
        for t_, result, threshold, top in cases:
            new = result_points(tags, t_, result, threshold, np.zeros(len(t_), bool), top)
            old_result = dataclasses.replace(result, reason=np.zeros_like(result.reason))
            old = result_points(tags, t_, old_result, threshold, np.zeros(len(t_), bool), top)
            if _normal(re.sub(r',reason="[a-z_]+"', "", new)) != _normal(old):
                raise AssertionError(f"{name}: reasons changed more than the reason field")
        without, with_ = _best_times(cases, args.repeat)
        best = {"without": without, "with": with_}
        report[name] = {
            "frames": frames,
            "exceed_share": round(exceed / frames, 3),
            "points_per_s_without_reason": round(frames / best["without"]),
            "points_per_s_with_reason": round(frames / best["with"]),
            "cost_ratio": round(best["with"] / best["without"], 3),
        }
    report["calculation"] = _calculation(args)
    if args.json:
        print(json.dumps(report))
    else:
        for name in sets:
            r = report[name]
            print(
                f"{name}: {r['frames']} frames, {100 * r['exceed_share']:.1f} % exceed; "
                f"points/s without reason {r['points_per_s_without_reason']}, with "
                f"{r['points_per_s_with_reason']}; time ratio {r['cost_ratio']}"
            )
        r = report["calculation"]
        print(
            f"calculation: {r['frames']} frames; frames/s without reason "
            f"{r['frames_per_s_without_reason']}, with {r['frames_per_s_with_reason']}; "
            f"time ratio {r['cost_ratio']} (A/A {r['a_a_ratio']})"
        )
    return report


if __name__ == "__main__":
    main()
