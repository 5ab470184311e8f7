"""Live gateway bench: tag updates per gateway CPU-second, load, latency.

Three measurements, each against real servers (the simulators of
``lineguard sim``, a mosquitto broker, Tansu, influxd, a scoring worker):

1. **Throughput, per source.** The simulator (another process, pinned to the
   other core) plays synthetic lines as fast as it can; the gateway (this
   process, pinned to core 0) turns the updates into telemetry records (v3,
   encoded, handed to a counting sender: the Kafka client's cost is in
   measurement 2). Reported, side by side in one run: updates/s of wall
   time, the share of one core the gateway used for it, and updates per
   second of the gateway's CPU time (what one gateway core sustains). One
   asyncua simulator is one single-threaded Python process, so OPC UA runs
   once per ``--opcua-servers`` count: the lines split over that many
   simulator processes, each a source of the same gateway.
2. **Plant load: 500 tags x 1 Hz** (10 lines x 50 sensors), per source,
   through the real Kafka producer and disk buffer: ``lineguard gateway
   run`` as its own process, its CPU (% of one core) and RSS sampled with
   psutil over ``--load-s`` seconds after a warm-up.
4. **Where the memory goes**: RSS after each import of ``lineguard
   gateway run``, in order, in a fresh process (most of the RSS at 500 tags
   is the libraries' code and data, not the tags).
3. **End-to-end latency** during measurement 2: a scoring worker scores the
   lines (models trained on the same synthetic process); InfluxDB is polled
   every 0.2 s and each new ``lineguard_score`` point's latency is the poll
   time minus its tag change time (rows are written at their stamps, on
   whole seconds: ``--retime``). The poll interval adds up to 0.2 s.

Ends with one JSON line. Usage::

    python bench/gateway.py [--rows 2000] [--load-s 60] [--sources opcua sparkplug]
        [--opcua-speed 40] [--opcua-servers 1 2] [--sims-on other|all]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import psutil

from lineguard.ingest.csv_runs import read_run
from lineguard.ingest.gateway_config import parse_config
from lineguard.ingest.live import LiveGateway
from lineguard.ingest.sim.opcua import line_name
from lineguard.stack import LocalStack, MosquittoServer, free_port

LINES, SENSORS = 10, 50
#: Wait past a period's end before closing it: above both sources' publishing
#: delay here (OPC UA publishing interval 0.1 s). A frame's latency is at
#: least period + lateness: its first tag change is at the period's start.
LATENESS_S = 0.25


def write_runs(directory: Path, rows: int, seed: int = 7) -> list[Path]:
    """Synthetic lines in the SKAB layout: correlated random walks per line."""
    rng = np.random.default_rng(seed)
    paths = []
    start = np.datetime64("2026-01-01T00:00:00")
    for k in range(LINES):
        base = np.cumsum(rng.normal(size=(rows, 5)), axis=0) * 0.05
        mix = rng.normal(size=(5, SENSORS))
        values = base @ mix + rng.normal(scale=0.1, size=(rows, SENSORS)) + 10
        path = directory / f"line{k:02d}" / "0.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        stamps = (start + np.arange(rows).astype("timedelta64[s]")).astype(str)
        with path.open("w") as f:
            f.write("datetime;" + ";".join(f"s{j:02d}" for j in range(SENSORS)) + "\n")
            for t, row in zip(stamps, values, strict=True):
                f.write(t.replace("T", " ") + ";" + ";".join(f"{v:.5f}" for v in row) + "\n")
        paths.append(path)
    return paths


def _config(
    source: str,
    paths: list[Path],
    state: Path,
    kafka: str = "127.0.0.1:9",
    topic: str = "t",
    servers: int = 1,
) -> str:
    """The gateway config; with ``servers`` > 1 (OPC UA), line k is read from
    source ``src<k % servers>`` (``source`` then holds that many sections)."""
    sensors = []
    for k, path in enumerate(paths):
        line = line_name(path)
        name = "src" if servers == 1 else f"src{k % servers}"
        for j in range(SENSORS):
            tag = (
                f'tag = "ns=2;s={line}.s{j:02d}"'
                if source.startswith('[[sources]]\ntype = "opcua"')
                else f'device = "{line}"\ntag = "s{j:02d}"'
            )
            sensors.append(
                f'[[sensors]]\nline = "{line}"\nname = "s{j:02d}"\nsource = "{name}"\n{tag}\n'
            )
    lines = "".join(
        f"[lines.{line_name(p)}]\nperiod_s = 1.0\nlateness_s = {LATENESS_S}\nstaleness_s = 5.0\n"
        for p in paths
    )
    return (
        f'site = "site-1"\ngateway_id = "gw-bench-{uuid.uuid4().hex[:6]}"\ntopic = "{topic}"\n'
        f'state_dir = "{state}"\ntick_s = 0.25\n[kafka]\nbootstrap_servers = "{kafka}"\n'
        f'[buffer]\nfsync = "never"\n{source}{lines}{"".join(sensors)}'
    )


def _opcua_source(port: int, name: str = "src") -> str:
    return (
        f'[[sources]]\ntype = "opcua"\nname = "{name}"\n'
        f'endpoint = "opc.tcp://127.0.0.1:{port}/lineguard/"\n'
        "publishing_interval_s = 0.1\nsampling_interval_s = 0.0\nqueue_size = 10000\n"
    )


def _spb_source(port: int) -> str:
    return (
        '[[sources]]\ntype = "sparkplug"\nname = "src"\nhost = "127.0.0.1"\n'
        f'port = {port}\ngroup_id = "Bench"\nedge_node = "sim"\n'
    )


def _pinned(core: int):
    def pin() -> None:
        os.sched_setaffinity(0, {core % os.cpu_count()})

    return pin


#: Where the simulators run: "other" pins them to core 1 (the gateway has
#: core 0); "all" lets them use every core, the gateway's too.
SIM_CORES = {"cores": "other"}


def _sim(
    kind: str, paths: list[Path], port: int, speed: float, extra: list[str]
) -> subprocess.Popen:
    args = [
        sys.executable,
        "-m",
        "lineguard.cli",
        "sim",
        kind,
        *map(str, paths),
        "--port",
        str(port),
    ]
    args += ["--speed", str(speed), *extra]
    if kind == "sparkplug":
        args += ["--group", "Bench", "--node", "sim"]
    pin = _pinned(1) if SIM_CORES["cores"] == "other" else None
    proc = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, preexec_fn=pin
    )
    # Building 500 nodes takes a while on a busy machine: wait until it serves.
    for line in proc.stdout:  # type: ignore[union-attr]
        if "serving on" in line or "edge node" in line:
            break
    threading.Thread(target=proc.stdout.read, daemon=True).start()  # type: ignore[union-attr]
    return proc


def _end(proc: subprocess.Popen | None) -> None:
    if proc is None:
        return
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def throughput(
    kind: str, paths: list[Path], tmp: Path, opcua_speed: float = 20.0, servers: int = 1
) -> dict:
    """Measurement 1: updates the gateway turns into telemetry, per CPU-second.

    With ``servers`` > 1 (OPC UA) the lines are split over that many
    simulator processes, each one a source of the one gateway: one asyncua
    server is a single-threaded Python process, and several of them offer
    the gateway more updates per second of wall time than one can.
    """
    os.sched_setaffinity(0, {0})
    total = LINES * SENSORS * len(read_run(paths[0]))
    broker = MosquittoServer().start() if kind == "sparkplug" else None
    servers = servers if kind == "opcua" else 1
    ports = [broker.port] if broker else [free_port() for _ in range(servers)]
    sent = {"records": 0}
    if kind == "opcua":
        names = ["src"] if servers == 1 else [f"src{i}" for i in range(servers)]
        source = "".join(_opcua_source(p, n) for p, n in zip(ports, names, strict=True))
    else:
        source = _spb_source(ports[0])
    gateway = LiveGateway(
        parse_config(_config(source, paths, tmp / f"tp-{kind}-{servers}", servers=servers)),
        send=lambda k, p: sent.__setitem__("records", sent["records"] + 1),
    )
    sims: list[subprocess.Popen] = []
    try:
        if kind == "opcua":
            # asyncua's server cannot write as fast as it is asked: unpaced,
            # it stops answering the client's keep-alive reads. Offered load:
            # speed x 500 updates/s, over all servers.
            for i, port in enumerate(ports):
                mine = paths[i::servers]
                extra = ["--wait-for-items", str(len(mine) * SENSORS)]
                sims.append(_sim(kind, mine, port, opcua_speed, extra))
        gateway.start()
        if kind == "sparkplug":
            sims.append(_sim(kind, paths, ports[0], 0, ["--start-after", "3"]))
        sink = gateway.sink
        deadline = time.monotonic() + 600
        # Past the first values (one per tag, at subscription or birth).
        while sink.updates <= LINES * SENSORS and time.monotonic() < deadline:
            gateway.tick()
            time.sleep(0.05)
        proc = psutil.Process()
        cpu0, t0, u0 = sum(proc.cpu_times()[:2]), time.monotonic(), sink.updates
        last, idle = sink.updates, time.monotonic()
        while time.monotonic() < deadline:
            gateway.tick()
            time.sleep(0.05)
            if sink.updates != last:
                last, idle = sink.updates, time.monotonic()
            elif time.monotonic() - idle > 5.0 or sink.updates >= total:
                break
        t1, cpu1, u1 = idle, sum(proc.cpu_times()[:2]), sink.updates
        gateway.tick()
    finally:
        for reader in gateway.readers:
            reader.stop()
        for sim in sims:
            _end(sim)
        if broker is not None:
            broker.stop()
        os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
    updates = u1 - u0
    return {
        "source": kind,
        "servers": servers,
        "updates": updates,
        "updates_expected": total,
        "offered_updates_per_s": round(opcua_speed * LINES * SENSORS) if kind == "opcua" else None,
        "frames": gateway.stats.frames,
        "records": sent["records"],
        "wall_s": round(t1 - t0, 2),
        "updates_per_s_wall": round(updates / max(t1 - t0, 1e-9)),
        "gateway_cpu_s": round(cpu1 - cpu0, 2),
        # Share of one core the gateway used while reaching the wall rate.
        "gateway_core_share": round((cpu1 - cpu0) / max(t1 - t0, 1e-9), 3),
        # The per-core rate: updates per second of the gateway's own CPU
        # time, i.e. what one gateway core sustains when nothing else limits
        # it. The wall rate equals it only when the core share reaches 1.
        "updates_per_cpu_s": round(updates / max(cpu1 - cpu0, 1e-9)),
        "wall_rate_bound_by": "gateway"
        if (cpu1 - cpu0) / max(t1 - t0, 1e-9) > 0.9
        else "simulator (the gateway core was idle part of the time)",
        "faults": {k: v for k, v in gateway.sink.stats().items() if isinstance(v, int) and v},
    }


#: What ``lineguard gateway run`` loads, in order, for the RSS breakdown
#: (numpy is not among them: the live path uses lists, docs/gateway.md).
IMPORT_STEPS = (
    ("python", ""),
    ("pydantic models", "import pydantic.main, pydantic.types, pydantic.fields"),
    ("pydantic_settings + lineguard.settings", "import lineguard.settings"),
    ("lineguard.ingest.live (config, frames, buffer)", "import lineguard.ingest.live"),
    ("kafka-python", "import kafka"),
    ("cryptography (asyncua's client imports it)", "import cryptography.x509"),
    ("asyncua", "import asyncua"),
    ("the rest of lineguard.cli", "import lineguard.cli"),
)


def import_rss() -> list[dict]:
    """Where the gateway's memory goes: RSS after each import step, in a fresh process."""
    code = "import json, psutil\np = psutil.Process()\nout = []\n"
    for name, stmt in IMPORT_STEPS:
        code += (
            f"{stmt}\nout.append(({name!r}, p.memory_info().rss))\n"
            if stmt
            else (f"out.append(({name!r}, p.memory_info().rss))\n")
        )
    # Proof that the steps are what the gateway loads: no numpy among them.
    code += "import sys\nout.append(('numpy loaded', int('numpy' in sys.modules)))\n"
    code += "print(json.dumps(out))\n"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    steps = json.loads(done.stdout.strip().splitlines()[-1])
    rows, before = [], 0
    for name, rss in steps:
        if name == "numpy loaded":
            if rss:
                raise SystemExit("expected the gateway's imports to leave numpy out; numpy loaded")
            continue
        rows.append(
            {
                "step": name,
                "rss_mb": round(rss / 2**20, 1),
                "added_mb": round((rss - before) / 2**20, 1),
            }
        )
        before = rss
    return rows


def load_and_latency(
    kind: str, paths: list[Path], tmp: Path, stack, settings, env, load_s: float
) -> dict:
    """Measurements 2 and 3: 500 tags x 1 Hz through Kafka to lineguard_score."""
    from lineguard.influx import InfluxV1Client
    from lineguard.stream.processor import RESULT_MEASUREMENT

    broker = MosquittoServer().start() if kind == "sparkplug" else None
    port = broker.port if broker else free_port()
    source = _opcua_source(port) if kind == "opcua" else _spb_source(port)
    config_path = tmp / f"gateway-{kind}.toml"
    config_path.write_text(
        _config(
            source, paths, tmp / f"load-{kind}", stack.kafka_bootstrap, settings.topics.telemetry
        )
    )
    sim = gw = None
    client = InfluxV1Client(settings.influx)
    try:
        if kind == "opcua":
            sim = _sim(kind, paths, port, 1, ["--retime", "--wait-for-items", str(LINES * SENSORS)])
        gw = subprocess.Popen(
            [sys.executable, "-m", "lineguard.cli", "gateway", "run", "--config", str(config_path)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=open(tmp / f"gateway-{kind}.log", "wb"),  # noqa: SIM115
            preexec_fn=_pinned(0),
        )
        if kind == "sparkplug":
            time.sleep(3)
            sim = _sim(kind, paths, port, 1, ["--retime", "--start-after", "2"])
        started_wall = time.time()
        time.sleep(15)  # warm-up: connections, births, the worker's first batches
        proc = psutil.Process(gw.pid)
        cpu0, t0 = sum(proc.cpu_times()[:2]), time.monotonic()
        rss = []
        seen: dict[tuple[str, int], float] = {}
        latencies: list[float] = []
        since_us = int(started_wall * 1e6)
        first_poll = True
        while time.monotonic() - t0 < load_s:
            rss.append(proc.memory_info().rss)
            try:
                rows = client.query(
                    f'SELECT "score", "line" FROM "{RESULT_MEASUREMENT}" '
                    f"WHERE time > {since_us * 1000}",
                    epoch="u",
                )
            except Exception:
                rows = []
            now = time.time()
            for r in rows:
                key = (r["line"], r["time"])
                if key not in seen:
                    seen[key] = now
                    # The first poll finds the warm-up's points: not timed.
                    if not first_poll:
                        latencies.append(now - r["time"] / 1e6)
            first_poll = False
            if rows:
                since_us = max(since_us, max(r["time"] for r in rows) - 5_000_000)
            time.sleep(0.2)
        cpu1, t1 = sum(proc.cpu_times()[:2]), time.monotonic()
    finally:
        client.close()
        _end(sim)
        _end(gw)
        if broker is not None:
            broker.stop()
    lat = np.asarray(latencies)
    return {
        "source": kind,
        "tags": LINES * SENSORS,
        "rate_hz": 1.0,
        "seconds": round(t1 - t0, 1),
        "cpu_pct_of_one_core": round(100 * (cpu1 - cpu0) / (t1 - t0), 2),
        "rss_mb_max": round(max(rss) / 2**20, 1),
        "score_points": len(lat),
        "latency_p50_s": round(float(np.percentile(lat, 50)), 3) if len(lat) else None,
        "latency_p99_s": round(float(np.percentile(lat, 99)), 3) if len(lat) else None,
        "latency_max_s": round(float(lat.max()), 3) if len(lat) else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000, help="rows per line (throughput)")
    parser.add_argument("--load-s", type=float, default=60.0)
    parser.add_argument("--sources", nargs="*", default=["opcua", "sparkplug"])
    parser.add_argument("--skip-load", action="store_true")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument(
        "--opcua-speed", type=float, default=20.0, help="OPC UA simulator pace (x 500 updates/s)"
    )
    parser.add_argument(
        "--opcua-servers",
        type=int,
        nargs="*",
        default=[1, 2],
        help="OPC UA throughput with this many simulator processes (one run per count)",
    )
    parser.add_argument(
        "--sims-on",
        choices=["other", "all"],
        default="other",
        help="simulators pinned to the other core, or free to use all cores",
    )
    parser.add_argument(
        "--gateway-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment of the load run's gateway process (e.g. MALLOC_ARENA_MAX=2)",
    )
    args = parser.parse_args(argv)
    SIM_CORES["cores"] = args.sims_on
    gateway_env = dict(item.split("=", 1) for item in args.gateway_env)
    import logging

    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("asyncua").setLevel(logging.ERROR)
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    result: dict = {"throughput": [], "load": [], "import_rss": import_rss()}
    with tempfile.TemporaryDirectory(prefix="lineguard-gwbench-") as tmp_name:
        tmp = Path(tmp_name)
        paths = write_runs(tmp / "runs", args.rows)
        for kind in [] if args.skip_throughput else args.sources:
            for servers in args.opcua_servers if kind == "opcua" else [1]:
                row = throughput(kind, paths, tmp, args.opcua_speed, servers)
                result["throughput"].append(row)
                print(json.dumps(row), flush=True)
        if not args.skip_load:
            from lineguard.demo import WorkerProcess
            from lineguard.models.registry import Registry
            from lineguard.models.training import train_line_model
            from lineguard.stream.worker import ensure_topics
            from tests.pipeline_support import isolated_settings

            with LocalStack() as stack:
                env, settings = isolated_settings(stack, tmp, uuid.uuid4().hex[:8], "gwbench")
                registry = Registry(settings.registry_dir)
                for path in paths:
                    train_line_model(registry, read_run(path), line_name(path), rows=600)
                ensure_topics(settings)
                worker = WorkerProcess("score", env, tmp / "score.log")
                try:
                    for kind in args.sources:
                        row = load_and_latency(
                            kind, paths, tmp, stack, settings, {**env, **gateway_env}, args.load_s
                        )
                        if gateway_env:
                            row["gateway_env"] = gateway_env
                        result["load"].append(row)
                        print(json.dumps(row), flush=True)
                finally:
                    worker.stop()
    print(
        "\n| source | servers | offered/s | updates | wall updates/s | gateway CPU s "
        "| gateway core share | per gateway core: updates per CPU-s | wall rate bound by |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in result["throughput"]:
        print(
            f"| {r['source']} | {r['servers']} | {r['offered_updates_per_s'] or 'unpaced'} | "
            f"{r['updates']} | {r['updates_per_s_wall']} | {r['gateway_cpu_s']} | "
            f"{r['gateway_core_share']} | {r['updates_per_cpu_s']} | "
            f"{r['wall_rate_bound_by'].split(' ')[0]} |"
        )
    if result["load"]:
        print("\n| source | tags x Hz | CPU % of one core | RSS MB (max) | p50 s | p99 s | max s |")
        print("|---|---|---|---|---|---|---|")
        for r in result["load"]:
            print(
                f"| {r['source']} | {r['tags']} x 1 | {r['cpu_pct_of_one_core']} | "
                f"{r['rss_mb_max']} | {r['latency_p50_s']} | {r['latency_p99_s']} | "
                f"{r['latency_max_s']} |"
            )
    print("\n| loaded (in order) | RSS MB after | added MB |")
    print("|---|---|---|")
    for r in result["import_rss"]:
        print(f"| {r['step']} | {r['rss_mb']} | {r['added_mb']} |")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.exit(main())
