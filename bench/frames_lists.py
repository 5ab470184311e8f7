"""The gateway's frame builder and v3 encoder: lists against numpy, side by side.

``lineguard gateway run`` builds frames with :mod:`lineguard.ingest.live_frames`
and encodes them with :mod:`lineguard.ingest.wire_v3` (plain lists, so that
the gateway does not load numpy); the replay and the worker keep the numpy
versions (:mod:`lineguard.ingest.frames`, :func:`lineguard.ingest.contract.encode`).
This times both on the same ticks, in one process, alternating, at the
gateway's per-line batch sizes: one line of 50 sensors, ``tick_s`` 0.25 s,
updates per line per tick from a plant's 1 Hz (12) to well past what one
gateway core takes from asyncua (2 000 per tick = 8 000/s per line).

Prints one table and one JSON line: microseconds per tick (build + encode)
and per update for each, and their ratio (numpy / lists: above 1 means the
lists are faster). Usage: ``python bench/frames_lists.py [--ticks 400]``.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from lineguard.ingest import frames as vec
from lineguard.ingest import live_frames as lists
from lineguard.ingest.contract import SCHEMA_V3, TelemetryBatch, encode
from lineguard.ingest.wire_v3 import encode_v3

S = 1_000_000
T0 = 1_700_000_000 * S
SENSORS = 50
TICK_US = 250_000
IDENT = {
    "site": "s",
    "line": "l",
    "gateway": "g",
    "sensors": tuple(f"s{j}" for j in range(SENSORS)),
}


def _ticks(per_tick: int, n_ticks: int, seed: int = 1) -> list[tuple]:
    """Updates spread evenly over each tick, round-robin over the sensors."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n_ticks):
        start = T0 + i * TICK_US
        stamps = (start + np.arange(per_tick) * TICK_US // max(per_tick, 1)).tolist()
        sensor = [(i * per_tick + k) % SENSORS for k in range(per_tick)]
        value = rng.normal(size=per_tick).tolist()
        out.append((sensor, value, stamps, list(stamps), start + TICK_US))
    return out


def _run_vec(ticks) -> float:
    state = vec.new_line_state(1.0, [5.0] * SENSORS, 0.25)
    t0 = time.perf_counter()
    for seq, (sensor, value, source, received, now) in enumerate(ticks):
        state, fr = vec.assemble_frames(
            state, vec.TagUpdates.from_lists(sensor, value, source, received), now
        )
        if len(fr):
            encode(
                TelemetryBatch(**IDENT, seq=seq, time_us=fr.time_us, values=fr.values), SCHEMA_V3
            )
    return time.perf_counter() - t0


def _run_lists(ticks) -> float:
    state = lists.new_line_state(1.0, [5.0] * SENSORS, 0.25)
    t0 = time.perf_counter()
    for seq, (sensor, value, source, received, now) in enumerate(ticks):
        state, fr = lists.assemble_frames(
            state, lists.TagUpdates(sensor, value, source, received), now
        )
        if len(fr):
            encode_v3(**IDENT, seq=seq, time_us=fr.time_us, values=fr.values)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=5, help="best of, alternating")
    args = parser.parse_args(argv)
    rows = []
    for per_tick in (12, 125, 500, 2000):
        ticks = _ticks(per_tick, args.ticks)
        best_vec = best_lists = float("inf")
        for _ in range(args.repeats):  # alternate so that machine load hits both
            best_vec = min(best_vec, _run_vec(ticks))
            best_lists = min(best_lists, _run_lists(ticks))
        n_up = per_tick * args.ticks
        rows.append(
            {
                "updates_per_tick": per_tick,
                "numpy_us_per_tick": round(best_vec / args.ticks * 1e6, 1),
                "lists_us_per_tick": round(best_lists / args.ticks * 1e6, 1),
                "numpy_us_per_update": round(best_vec / n_up * 1e6, 3),
                "lists_us_per_update": round(best_lists / n_up * 1e6, 3),
                "numpy_over_lists": round(best_vec / best_lists, 2),
            }
        )
    print(
        "| updates per line per tick | numpy us/tick | lists us/tick | numpy us/update "
        "| lists us/update | numpy / lists |"
    )
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['updates_per_tick']} | {r['numpy_us_per_tick']} | {r['lists_us_per_tick']} | "
            f"{r['numpy_us_per_update']} | {r['lists_us_per_update']} | {r['numpy_over_lists']} |"
        )
    print(json.dumps({"bench": "frames_lists", "ticks": args.ticks, "rows": rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
