"""Fault-injection suite on the real broker and InfluxDB: is anything lost?

Starts a local stack (Tansu behind a pausable TCP proxy, influxd), trains the
five in-repo SKAB lines, and runs each scenario of
:mod:`tests.support.faults` with its own topics, database and worker process:

* baseline (no fault);
* the scoring worker killed with SIGKILL at random points during a replay,
  ten times, restarted each time;
* the network path to the broker cut mid-replay (gateways buffer on disk);
* InfluxDB stopped for 60 s mid-replay, restarted on the same data;
* workers joining and leaving one group ten times during a replay;
* every kind of bad record between good ones.

Prints a table (scenario, frames sent, frames in InfluxDB, lost, duplicated,
dead-lettered). With ``--json`` the last line is one JSON object with keys
``scenarios``, ``frames_sent``, ``frames_written``, ``lost``, ``duplicated``,
``dead_lettered_expected``, ``dead_lettered``.

Usage::

    python bench/faults.py [--kills 10] [--influx-outage 60] [--broker-outage 20]
                           [--only NAME ...] [--json]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

# The fault rig is test support (tests/support/faults.py), not shipped.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lineguard.stack import LocalStack
from tests.support.faults import FaultRig, ScenarioResult, summarize
from tests.support.proxy import PausableTcpProxy

SCENARIOS = ("baseline", "kill", "broker", "influx", "rebalance", "bad")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=10, help="worker SIGKILLs")
    parser.add_argument("--influx-outage", type=float, default=60.0, help="seconds")
    parser.add_argument("--broker-outage", type=float, default=20.0, help="seconds")
    parser.add_argument("--rebalances", type=int, default=10, help="join/leave cycles")
    parser.add_argument("--lines", type=int, default=5, help="SKAB lines replayed (1-5)")
    parser.add_argument("--only", nargs="*", choices=SCENARIOS, default=list(SCENARIOS))
    parser.add_argument("--json", action="store_true", help="end with one JSON line")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    # kafka-python logs every reset connection of a cut network path with a
    # traceback; the gateway's own log lines say what matters.
    logging.getLogger("kafka").setLevel(logging.CRITICAL)

    results: list[ScenarioResult] = []
    started = time.monotonic()
    with (
        tempfile.TemporaryDirectory(prefix="lineguard-faults-") as tmp,
        LocalStack(kafka_proxy=PausableTcpProxy) as stack,
    ):
        rig = FaultRig(stack, Path(tmp), lines=args.lines)
        runners = {
            "baseline": rig.run_baseline,
            "kill": lambda: rig.run_worker_kills(kills=args.kills),
            "broker": lambda: rig.run_broker_outage(outage_s=args.broker_outage),
            "influx": lambda: rig.run_influx_outage(outage_s=args.influx_outage),
            "rebalance": lambda: rig.run_rebalances(cycles=args.rebalances),
            "bad": rig.run_bad_input,
        }
        for name in SCENARIOS:
            if name not in args.only:
                continue
            t0 = time.monotonic()
            result = runners[name]()
            result.notes["seconds"] = round(time.monotonic() - t0, 1)
            results.append(result)
            print(f"# {result.scenario}: done in {result.notes['seconds']} s", flush=True)

    header = (
        "scenario",
        "frames sent",
        "in InfluxDB",
        "lost",
        "duplicated",
        "dead-lettered",
        "incidents differing",
        "assignments",
        "assign->scored p50/p99/max s",
    )
    rows = [
        (
            r.scenario,
            str(r.frames_sent),
            str(r.frames_written),
            str(r.lost),
            str(r.duplicated),
            f"{r.dead_lettered}/{r.dead_lettered_expected}",
            f"{r.notes.get('incidents_differing', '-')}/{r.notes.get('incidents_expected', '-')}",
            str(r.notes.get("assignments", "-")),
            "/".join(
                str(r.notes.get(f"assign_to_first_scored_{k}_s", "-"))
                for k in ("p50", "p99", "max")
            ),
        )
        for r in results
    ]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    print(" | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print("-+-".join("-" * w for w in widths))
    for row in rows:
        print(" | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
    for r in results:
        alive = "worker up" if r.worker_alive else "WORKER DIED"
        print(f"# {r.scenario}: {alive}, incidents {r.incidents}, {r.notes}")
    summary = summarize(results)
    print(f"# total {time.monotonic() - started:.0f} s")
    if args.json:
        print(json.dumps(summary))
    ok = summary["lost"] == 0 and summary["duplicated"] == 0
    ok = ok and summary["incidents_differing"] == 0
    ok = ok and summary["dead_lettered"] == summary["dead_lettered_expected"]
    return 0 if ok and all(r.worker_alive for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
