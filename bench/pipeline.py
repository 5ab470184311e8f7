"""Throughput, limit, naive baseline, latency and memory of the scoring pipeline.

Everything runs in one invocation on a fresh local stack (the real Tansu
broker and the real ``influxd`` started by :class:`lineguard.stack.LocalStack`)
so the ratios compare numbers measured side by side on the same machine:

a. **LineGuard's worker end to end**: ``lineguard worker`` processes join
   their consumer group and settle; then ``lines x frames`` frames
   (``sensors`` readings each) arrive as the gateway encodes them (v3
   records of ``--frames-per-record`` frames, lines interleaved, encoded
   beforehand so the producer is never the bottleneck) and are consumed,
   decoded, scored, turned into alerts and incidents, written to InfluxDB
   and committed. The rate is the InfluxDB point count over time, from the
   first stored batch to the last point (progress read from InfluxDB's
   write counters, which cost it nothing per stored point, the end from
   ``count()``); ``lost`` is frames sent minus ``lineguard_score`` points
   stored. Once with one worker and once with
   ``--workers`` in one consumer group.
b. **The limit**: each stage alone on the same frames, in this process:
   decoding the records, scoring (``score_batch``, no I/O), and InfluxDB taking
   the very result points the worker writes, in the worker's request
   sizes, with nothing else running. The limit is the slowest of them.
c. **The naive pipeline** (``bench/naive_pipeline.py``): a Faust agent, one
   JSON frame per record, the detector called per frame, one InfluxDB write
   per result. It is slow, so it runs for a bounded time and its rate is
   measured the same way.
d. **Latency** at half of the worker's measured rate: each line's gateway
   sends one record every ``--tick-ms`` (its flush interval), and a poller
   asks InfluxDB for each line's newest stored frame every ``--poll-ms``; a
   record's latency is from just before it is handed to the producer to the
   first poll that sees its last frame (so it includes up to one poll
   interval). The first 3 s are warm-up and not counted.
e. **Peak memory** (``VmHWM``) of a worker serving ``--rss-lines`` lines'
   models while it works through a backlog of 2,000 frames per line (fewer
   if ``--frames`` is smaller), sent as the throughput rows send theirs:
   models, read-ahead and batches in flight at once.

Usage::

    python bench/pipeline.py            # full run (about 3 minutes on 2 cores)
    python bench/pipeline.py --quick    # under 2 minutes
    python bench/pipeline.py --quick --json   # last line: one JSON object
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
# A worker writes a metrics point every few seconds and its results in
# bodies of thousands of points: the clock starts once more than this many
# points are stored.
FIRST_BATCH_POINTS = 100
sys.path.insert(0, str(BENCH_DIR))

from naive_pipeline import frame_record  # noqa: E402
from synthetic import synthetic_line  # noqa: E402

from lineguard.demo import WorkerProcess  # noqa: E402
from lineguard.detectors.scoring import score_batch  # noqa: E402
from lineguard.influx import InfluxV1Client, quote_ident  # noqa: E402
from lineguard.ingest.contract import SCHEMA_V3, TelemetryBatch, decode, encode  # noqa: E402
from lineguard.ingest.csv_runs import RecordedRun  # noqa: E402
from lineguard.ingest.gateway import SequenceCounter, make_producer  # noqa: E402
from lineguard.models.registry import Registry  # noqa: E402
from lineguard.models.training import TrainingConfig, fit_from_rows, train_from_rows  # noqa: E402
from lineguard.settings import InfluxSettings, KafkaSettings, Settings, TopicSettings  # noqa: E402
from lineguard.stack import LocalStack  # noqa: E402
from lineguard.stream.limits import BATCH_RECORDS  # noqa: E402
from lineguard.stream.processor import RESULT_MEASUREMENT, RawRecord, TelemetryProcessor  # noqa: E402
from lineguard.stream.serving import lines_on_partitions  # noqa: E402
from lineguard.stream.worker import ensure_topics  # noqa: E402
from lineguard.stream.writes import write_bodies  # noqa: E402

__all__ = ["main", "synthetic_line"]

# 2025-01-01T00:00:00Z: the recorded frames' start (1 Hz per line).
T0_US = 1_735_689_600_000_000


@dataclass
class Fleet:
    """The benchmark's lines: training rows, scored rows, sensor names."""

    lines: list[str]
    sensors: list[str]
    train: dict[str, np.ndarray]
    score: dict[str, np.ndarray]

    @property
    def frames(self) -> int:
        return sum(x.shape[0] for x in self.score.values())


def make_fleet(n_lines: int, n_sensors: int, train_rows: int, score_rows: int) -> Fleet:
    sensors = [f"sensor_{j:03d}" for j in range(n_sensors)]
    lines = [f"line-{i:03d}" for i in range(n_lines)]
    train, score = {}, {}
    for i, line in enumerate(lines):
        X = synthetic_line(1000 + i, train_rows + score_rows, n_sensors)
        # Training rows are clean (faults only land in the scored part).
        train[line] = synthetic_line(1000 + i, train_rows + score_rows, n_sensors, faults=False)[
            :train_rows
        ]
        score[line] = X[train_rows:]
    return Fleet(lines, sensors, train, score)


def train_fleet(fleet: Fleet, registry: Registry, detector: str) -> dict[str, tuple]:
    """Fit and store one model per line; returns the fitted tuples for reuse."""
    config = TrainingConfig(detector=detector)
    fitted = {}
    for line in fleet.lines:
        X = fleet.train[line]
        fitted[line] = fit_from_rows(fleet.sensors, X, config)
        train_from_rows(
            registry,
            line,
            sensors=fleet.sensors,
            time_us=T0_US + np.arange(X.shape[0], dtype=np.int64) * 1_000_000,
            X=X,
            source="bench-synthetic",
            config=config,
            fitted=fitted[line],
        )
    return fitted


def as_run(fleet: Fleet, line: str, rows: slice | None = None) -> RecordedRun:
    X = fleet.score[line] if rows is None else fleet.score[line][rows]
    start = fleet.train[line].shape[0] + (0 if rows is None else (rows.start or 0))
    time_us = T0_US + (start + np.arange(X.shape[0], dtype=np.int64)) * 1_000_000
    return RecordedRun(
        path=Path(f"{line}.csv"), sensors=tuple(fleet.sensors), time_us=time_us, values=X
    )


# -- the stack -------------------------------------------------------------------


@dataclass
class Scenario:
    """One worker deployment: its topics, consumer group and database."""

    name: str
    stack: LocalStack
    registry_dir: Path
    partitions: int
    telemetry: str | None = None
    gzip: bool = False

    def __post_init__(self) -> None:
        tag = f"{self.name}-{uuid.uuid4().hex[:6]}"
        self.tag = tag
        self.telemetry = self.telemetry or f"telemetry-{tag}"
        self.settings = Settings(
            registry_dir=self.registry_dir,
            worker_id=f"worker-{tag}",
            kafka=KafkaSettings(bootstrap_servers=self.stack.kafka_bootstrap),
            influx=InfluxSettings(
                url=self.stack.influx_url,
                database=f"bench_{tag.replace('-', '_')}",
                gzip=self.gzip,
            ),
            topics=TopicSettings(
                telemetry=self.telemetry,
                dead_letter=f"dlq-{tag}",
                alerts=f"alerts-{tag}",
                incidents=f"incidents-{tag}",
                partitions=self.partitions,
            ),
        )

    def env(self) -> dict[str, str]:
        s = self.settings
        return {
            **os.environ,
            **self.stack.env(),
            "LINEGUARD_REGISTRY_DIR": str(self.registry_dir),
            "LINEGUARD_WORKER_ID": s.worker_id,
            "LINEGUARD_INFLUX_DATABASE": s.influx.database,
            "LINEGUARD_TOPIC_TELEMETRY": s.topics.telemetry,
            "LINEGUARD_TOPIC_DEAD_LETTER": s.topics.dead_letter,
            "LINEGUARD_TOPIC_ALERTS": s.topics.alerts,
            "LINEGUARD_TOPIC_INCIDENTS": s.topics.incidents,
            "LINEGUARD_TOPIC_PARTITIONS": str(self.partitions),
            "LINEGUARD_INFLUX_GZIP": "true" if self.gzip else "false",
        }

    def client(self) -> InfluxV1Client:
        return InfluxV1Client(self.settings.influx)

    def retire(self) -> None:
        """Drop the scenario's database once its numbers are taken.

        InfluxDB snapshots and compacts what it was sent in the background,
        on the same two cores: left in place, the points of one measurement
        would be compacted inside the next one.
        """
        with self.client() as client:
            client.query(f"DROP DATABASE {quote_ident(self.settings.influx.database)}", epoch=None)


def stored_points(client: InfluxV1Client) -> int:
    try:
        rows = client.query(f'SELECT count("score") FROM "{RESULT_MEASUREMENT}"', epoch=None)
    except Exception:
        return 0  # database not created yet
    return int(rows[0]["count"]) if rows else 0


def accepted_points(http: httpx.Client, database: str) -> int:
    """Points InfluxDB has accepted into the database's shards so far.

    Read from ``/debug/vars`` (the ``writePointsOk`` counters of the
    database's shards): a constant-cost read, where ``count()`` reads every
    stored point. Polling ``count()`` ten times a second cost InfluxDB about
    1 µs of CPU per stored point (measured at 800k points: 3.3 -> 4.2 µs),
    which took that CPU from the pipeline being measured. It also counts the
    worker's own metrics points and any point written twice, so the totals
    are always checked with :func:`stored_points`.
    """
    try:
        stats = http.get("/debug/vars").json()
    except (httpx.HTTPError, ValueError):
        return 0
    return sum(
        int(entry.get("values", {}).get("writePointsOk", 0))
        for entry in stats.values()
        if isinstance(entry, dict)
        and entry.get("name") == "shard"
        and (entry.get("tags") or {}).get("database") == database
    )


def peak_rss_mb(pid: int) -> float:
    """Peak resident set (VmHWM) of a process and its children, in MB."""
    import psutil

    total = 0.0
    try:
        proc = psutil.Process(pid)
        for p in [proc, *proc.children(recursive=True)]:
            with open(f"/proc/{p.pid}/status") as fh:
                for row in fh:
                    if row.startswith("VmHWM:"):
                        total += int(row.split()[1]) / 1024.0
    except (psutil.Error, OSError):
        pass
    return total


def cpu_seconds(pid: int, children: bool = True) -> float:
    """CPU time (user + system) of a process (and its children) so far."""
    import psutil

    total = 0.0
    try:
        proc = psutil.Process(pid)
        for p in [proc, *(proc.children(recursive=True) if children else [])]:
            times = p.cpu_times()
            total += times.user + times.system
    except psutil.Error:
        pass
    return total


@dataclass
class Rate:
    frames: int
    seconds: float
    stored: int
    peak_rss_mb: float = 0.0
    # Cores each process kept busy while the frames were stored (cpu s / wall s).
    cores: dict[str, float] = field(default_factory=dict)
    # Telemetry partitions each worker held at the end.
    partitions: list[list[int]] = field(default_factory=list)

    @property
    def per_s(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def run_workers(
    scenario: Scenario,
    expected: int,
    n_workers: int,
    workdir: Path,
    timeout_s: float,
    command: list[str] | None = None,
    stop_after_s: float | None = None,
    send: Any = None,
    servers: dict[str, int] | None = None,
) -> Rate:
    """Start workers and time the stored points.

    With ``send``, the workers first join their group and settle (every one
    ready in the same generation, so no rebalance falls inside the timing),
    then ``send()`` puts the frames on the topic; without it the topic
    already holds them. The clock starts at the first stored batch (process
    start and the group join are not counted) and stops when every frame is
    stored, or after ``stop_after_s`` (the naive pipeline). Progress is
    polled from InfluxDB's write counters (:func:`accepted_points`), and the
    end from ``count()`` (:func:`stored_points`). ``servers``
    (name -> pid) are the other processes whose CPU use over the same
    interval is reported beside the workers' and this process's (the sender).
    """
    procs = []
    for i in range(n_workers):
        log = workdir / f"{scenario.tag}-{i}.log"
        if command is None:
            procs.append(WorkerProcess("score", scenario.env(), log))
        else:
            procs.append(_CommandProcess(command, scenario.env(), log))
    if send is not None:
        try:
            wait_settled(procs, timeout_s=120)
        except BaseException:
            for p in procs:
                p.stop()
            raise
        send()
    client = scenario.client()
    http = httpx.Client(base_url=scenario.settings.influx.url, timeout=10.0)
    database = scenario.settings.influx.database
    first_at = first_count = None
    last_count, last_at = 0, time.monotonic()
    deadline = time.monotonic() + timeout_s
    rss = 0.0
    watched = {f"worker {i}": p.process.pid for i, p in enumerate(procs)}
    watched.update(servers or {})
    # The bench process itself (the sender): without its children, which
    # are the servers and the workers.
    own = os.getpid()
    watched["sender (bench)"] = own

    def cpu_now() -> dict[str, float]:
        return {name: cpu_seconds(pid, children=pid != own) for name, pid in watched.items()}

    cpu_first: dict[str, float] = {}
    cpu_last: dict[str, float] = {}
    try:
        while time.monotonic() < deadline:
            # The cheap counter while points arrive; the exact count() once
            # it says all are there (it also counts worker metrics points).
            count = accepted_points(http, database)
            if count >= expected:
                count = stored_points(client)
            now = time.monotonic()
            # The clock starts at the first stored batch: a worker's own
            # metrics point (one every few seconds) must not start it.
            if count > FIRST_BATCH_POINTS and first_at is None:
                first_at, first_count = now, count
                cpu_first = cpu_now()
            if count != last_count:
                last_count, last_at = count, now
                cpu_last = cpu_now()
            rss = max(rss, sum(peak_rss_mb(p.process.pid) for p in procs))
            if count >= expected:
                break
            if first_at is not None and stop_after_s is not None and now - first_at > stop_after_s:
                break
            dead = [p for p in procs if not p.alive()]
            if dead:
                raise RuntimeError(f"worker exited early:\n{dead[0].log_tail(30)}")
            time.sleep(0.1)
        if first_at is None:
            tails = "\n".join(p.log_tail(15) for p in procs)
            raise RuntimeError(f"{scenario.name}: no result stored within {timeout_s} s\n{tails}")
        rss = max(rss, sum(peak_rss_mb(p.process.pid) for p in procs))
        held = [assigned_partitions(p.log_path) for p in procs]
    finally:
        for p in procs:
            p.stop()
        client.close()
        http.close()
    seconds = max(last_at - first_at, 1e-6)
    return Rate(
        frames=last_count - first_count,
        seconds=seconds,
        stored=last_count,
        peak_rss_mb=rss,
        partitions=held,
        cores={
            name: round((cpu_last[name] - cpu_first[name]) / seconds, 2)
            for name in cpu_first
            if name in cpu_last
        },
    )


def assigned_partitions(log_path: Path) -> list[int]:
    """The telemetry partitions of a worker's last assignment, from its log."""
    import re

    found = re.findall(r"telemetry partitions assigned: \[([\d, ]*)\]", log_path.read_text())
    return [int(n) for n in found[-1].split(",") if n.strip()] if found else []


def wait_settled(procs: list[WorkerProcess], timeout_s: float, quiet_s: float = 2.0) -> None:
    """Wait until every worker finished recovery in the same, latest generation."""
    import re

    pattern = re.compile(r"generation id (\d+) app consumers id")
    deadline = time.monotonic() + timeout_s
    stable_since = None
    while time.monotonic() < deadline:
        states = []
        for p in procs:
            text = p.log_path.read_text(errors="replace")
            generations = pattern.findall(text)
            last = text.rfind("generation id")
            ready = last >= 0 and "Worker ready" in text[last:]
            states.append((int(generations[-1]) if generations else -1, ready))
        settled = all(ready for _, ready in states) and len({g for g, _ in states}) == 1
        if settled:
            stable_since = stable_since or time.monotonic()
            if time.monotonic() - stable_since >= quiet_s:
                return
        else:
            stable_since = None
        if not all(p.alive() for p in procs):
            raise RuntimeError("a worker exited while joining")
        time.sleep(0.2)
    raise RuntimeError(f"workers did not settle into one group generation: {states}")


class _CommandProcess(WorkerProcess):
    """Like :class:`WorkerProcess`, for any command (the naive pipeline)."""

    def __init__(self, command: list[str], env: dict[str, str], log_path: Path) -> None:
        import subprocess

        self.role = "naive"
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            command, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )


def send_records(scenario: Scenario, records: list[RawRecord]) -> int:
    """Produce already encoded gateway records (lines interleaved), as fast as possible.

    Encoding is done beforehand, so the producer is never what the workers
    wait for while they are timed.
    """
    producer = make_producer(scenario.settings.kafka, linger_ms=20, batch_size=1 << 20)
    try:
        for record in records:
            producer.send(scenario.telemetry, key=record.key, value=record.value)
        producer.flush()
    finally:
        producer.close()
    return len(records)


# -- b. stages alone ----------------------------------------------------------------


def wire_records(fleet: Fleet, frames_per_record: int) -> list[RawRecord]:
    """The backlog's records as the worker receives them (v3, interleaved lines)."""
    per_line = []
    for line in fleet.lines:
        run = as_run(fleet, line)
        seq = SequenceCounter(None)
        records = []
        for start in range(0, len(run), frames_per_record):
            stop = min(start + frames_per_record, len(run))
            batch = TelemetryBatch(
                site="site-1",
                line=line,
                gateway=f"gw-{line}",
                seq=seq.take(),
                sensors=run.sensors,
                time_us=run.time_us[start:stop],
                values=run.values[start:stop],
            )
            records.append(encode(batch, SCHEMA_V3))
        per_line.append(records)
    out = []
    for i in range(max(len(r) for r in per_line)):
        for j, records in enumerate(per_line):
            if i < len(records):
                out.append(RawRecord(records[i], fleet.lines[j].encode(), "t", j % 4, i))
    return out


def stage_limits(
    fleet: Fleet, registry_dir: Path, records: list[RawRecord], scenario: Scenario
) -> dict[str, float]:
    """Frames/s of each stage alone, on the same frames."""
    frames = fleet.frames
    out: dict[str, float] = {}

    started = time.perf_counter()
    for record in records:
        decode(record.value)
    out["decode"] = frames / (time.perf_counter() - started)

    registry = Registry(registry_dir)
    bundles = {line: registry.load(line) for line in fleet.lines}
    per_record = decode(records[0].value).n_frames
    started = time.perf_counter()
    for line in fleet.lines:
        bundle, state = bundles[line], None
        X = fleet.score[line]
        k, n = bundle.debounce
        for start in range(0, X.shape[0], per_record):
            _, state = score_batch(
                bundle.pipeline, X[start : start + per_record], state, bundle.threshold, k, n
            )
    out["score"] = frames / (time.perf_counter() - started)

    # The worker's whole calculation (decode, route, score, alerts, incidents,
    # line protocol), no I/O, in the worker's micro-batch size.
    processor = TelemetryProcessor(registry)
    bodies = []
    started = time.perf_counter()
    for start in range(0, len(records), BATCH_RECORDS):
        outcome = processor.process(records[start : start + BATCH_RECORDS])
        bodies.extend(write_bodies(outcome.influx_lines))
    out["calculation"] = frames / (time.perf_counter() - started)

    with scenario.client() as client:
        client.create_database()
        started = time.perf_counter()
        # As the worker writes: bodies of at most MAX_WRITE_BYTES, in turn.
        for body in bodies:
            client.write(body, precision="ns")
        out["influx"] = frames / (time.perf_counter() - started)
        stored = stored_points(client)
    scenario.retire()
    if stored != frames:
        raise RuntimeError(f"InfluxDB stage: expected {frames} points stored; got {stored}")
    return out


# -- d. latency ------------------------------------------------------------------------


def measure_latency(
    fleet: Fleet,
    scenario: Scenario,
    rate_fps: float,
    seconds: float,
    workdir: Path,
    poll_s: float,
    warmup_s: float = 3.0,
    tick_s: float = 0.25,
) -> dict[str, Any]:
    """Paced gateway records at ``rate_fps`` frames/s; latency send -> visible in InfluxDB."""
    ensure_topics(scenario.settings)
    worker = WorkerProcess("score", scenario.env(), workdir / f"{scenario.tag}.log")
    client = scenario.client()
    producer = make_producer(scenario.settings.kafka, linger_ms=5)
    n_lines = len(fleet.lines)
    per_tick = max(round(rate_fps * tick_s / n_lines), 1)
    seq = {line: SequenceCounter(None) for line in fleet.lines}
    cursor = dict.fromkeys(fleet.lines, 0)
    last_sent_us = dict.fromkeys(fleet.lines, 0)
    pending: dict[str, list[tuple[int, float]]] = {line: [] for line in fleet.lines}
    latencies: list[tuple[float, float]] = []  # (sent at, latency s)
    poll_ms: list[float] = []
    acked_ms: list[float] = []  # send -> stored by the broker (the gateway's part)
    lock = threading.Lock()

    def send_tick(count: int) -> None:
        for line in fleet.lines:
            X = fleet.score[line]
            rows = np.arange(cursor[line], cursor[line] + count) % X.shape[0]
            cursor[line] += count
            now_us = time.time_ns() // 1000
            first = max(now_us - count + 1, last_sent_us[line] + 1)
            times = first + np.arange(count, dtype=np.int64)
            last_sent_us[line] = int(times[-1])
            batch = TelemetryBatch(
                site="site-1",
                line=line,
                gateway=f"gw-{line}",
                seq=seq[line].take(),
                sensors=tuple(fleet.sensors),
                time_us=times,
                values=X[rows],
                sent_at_us=now_us,
            )
            payload = encode(batch, SCHEMA_V3)
            sent_at = time.monotonic()
            with lock:
                pending[line].append((int(times[-1]) * 1000, sent_at))
            future = producer.send(scenario.telemetry, key=line.encode(), value=payload)
            future.add_callback(lambda _m, t=sent_at: acked_ms.append((time.monotonic() - t) * 1e3))

    stop = threading.Event()

    def poll() -> None:
        q = (
            f'SELECT last("score") FROM "{RESULT_MEASUREMENT}" '
            'WHERE time > now() - 5m GROUP BY "line"'
        )
        while not stop.is_set():
            asked = time.monotonic()
            try:
                rows = client.query(q, epoch="ns")
            except Exception:
                rows = []
            poll_ms.append((time.monotonic() - asked) * 1e3)
            with lock:
                for row in rows:
                    waiting = pending.get(row.get("line"), [])
                    while waiting and waiting[0][0] <= row["time"]:
                        sent_at = waiting.pop(0)[1]
                        latencies.append((sent_at, asked - sent_at))
            time.sleep(max(poll_s - (time.monotonic() - asked), 0.0))

    poller = threading.Thread(target=poll, daemon=True)
    try:
        # Warm up: the worker has joined its group and scored one tick.
        deadline = time.monotonic() + 120
        send_tick(1)
        producer.flush()
        while stored_points(client) < n_lines:
            if time.monotonic() > deadline or not worker.alive():
                raise RuntimeError(f"latency worker did not start:\n{worker.log_tail(30)}")
            time.sleep(0.2)
        with lock:
            for line in fleet.lines:
                pending[line].clear()
        poller.start()
        started = time.monotonic()
        ticks = 0
        while time.monotonic() - started < seconds + warmup_s:
            send_tick(per_tick)
            ticks += 1
            time.sleep(max(started + ticks * tick_s - time.monotonic(), 0.0))
        producer.flush()
        drain_deadline = time.monotonic() + 30
        while time.monotonic() < drain_deadline:
            with lock:
                if not any(pending.values()):
                    break
            time.sleep(0.1)
        sent = ticks * per_tick * n_lines
        with lock:
            unseen = sum(len(v) for v in pending.values())
    finally:
        stop.set()
        if poller.is_alive():
            poller.join(5)
        producer.close()
        rss = peak_rss_mb(worker.process.pid)
        worker.stop()
        client.close()
    # Steady state: records sent during the first ``warmup_s`` are left out
    # (the consumer's first fetches and the first batches' allocations).
    ms = np.array([lat for at, lat in latencies if at >= started + warmup_s]) * 1e3
    return {
        "rate_fps": per_tick * n_lines / tick_s,
        "frames": sent,
        "records_measured": int(ms.size),
        "records_unseen": unseen,
        "p50_ms": float(np.percentile(ms, 50)) if ms.size else float("nan"),
        "p99_ms": float(np.percentile(ms, 99)) if ms.size else float("nan"),
        "max_ms": float(ms.max()) if ms.size else float("nan"),
        "poll_query_ms_p50": float(np.percentile(poll_ms, 50)) if poll_ms else float("nan"),
        "broker_ack_ms_p50": float(np.percentile(acked_ms, 50)) if acked_ms else float("nan"),
        "broker_ack_ms_p99": float(np.percentile(acked_ms, 99)) if acked_ms else float("nan"),
        "rss_mb": rss,
    }


# -- e. memory with many lines ------------------------------------------------------------


def measure_rss(
    fleet: Fleet,
    fitted: dict[str, tuple],
    stack: LocalStack,
    n_lines: int,
    workdir: Path,
    partitions: int,
    frames_per_line: int,
    frames_per_record: int,
    gzip: bool = False,
) -> tuple[float, int, int]:
    """Peak RSS of one worker with ``n_lines`` lines' models working through a backlog.

    Each line has its own registered model (the fleet's fitted detectors,
    reused) and ``frames_per_line`` frames, sent as the throughput rows send
    theirs (v3 records of ``frames_per_record`` frames, lines interleaved)
    before the worker has caught up: models, read-ahead and batches in flight
    at once, the worst case for memory.
    """
    registry_dir = workdir / "registry-rss"
    registry = Registry(registry_dir)
    config = TrainingConfig()
    lines = [f"plant-{i // 20:02d}-line-{i % 20:02d}" for i in range(n_lines)]
    sources = {line: fleet.lines[i % len(fleet.lines)] for i, line in enumerate(lines)}
    for line, source in sources.items():
        X = fleet.train[source]
        train_from_rows(
            registry,
            line,
            sensors=fleet.sensors,
            time_us=T0_US + np.arange(X.shape[0], dtype=np.int64) * 1_000_000,
            X=X,
            source="bench-synthetic",
            config=config,
            fitted=fitted[source],
        )
    many = Fleet(
        lines=lines,
        sensors=fleet.sensors,
        train={line: fleet.train[source] for line, source in sources.items()},
        score={line: fleet.score[source][:frames_per_line] for line, source in sources.items()},
    )
    records = wire_records(many, frames_per_record)
    scenario = Scenario("rss", stack, registry_dir, partitions, gzip=gzip)
    ensure_topics(scenario.settings)
    rate = run_workers(
        scenario,
        many.frames,
        1,
        workdir,
        timeout_s=300,
        send=lambda: send_records(scenario, records),
    )
    return rate.peak_rss_mb, many.frames, rate.stored


# -- main ---------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smaller run, under two minutes")
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    parser.add_argument("--lines", type=int, default=20)
    parser.add_argument("--sensors", type=int, default=50)
    parser.add_argument(
        "--frames", type=int, help="scored frames per line (default 40000; quick 20000)"
    )
    parser.add_argument("--frames-per-record", type=int, default=500)
    parser.add_argument(
        "--partitions",
        type=int,
        default=5,
        help="telemetry partitions (default 5: the 20 default line keys hash onto them as "
        "2/5/5/5/3 and two workers get 10 lines each; onto 4 they hash as 3/7/3/7, "
        "which gives two workers 6 and 14 lines)",
    )
    parser.add_argument("--detector", default="pca")
    parser.add_argument(
        "--workers", type=int, default=2, help="workers in the scale-out row (0: skip)"
    )
    parser.add_argument("--naive-seconds", type=float, help="naive run length (30; quick 8)")
    parser.add_argument("--latency-seconds", type=float, help="paced run length (30; quick 8)")
    parser.add_argument("--poll-ms", type=float, default=50.0)
    parser.add_argument(
        "--tick-ms",
        type=float,
        default=250.0,
        help="latency run: each line sends one record per tick (the gateway's flush interval)",
    )
    parser.add_argument("--rss-lines", type=int, default=200)
    parser.add_argument(
        "--gzip",
        action="store_true",
        help="gzip InfluxDB writes (off by default: InfluxDB runs on this host)",
    )
    args = parser.parse_args(argv)
    frames_per_line = args.frames or (20000 if args.quick else 40000)
    naive_s = args.naive_seconds or (8.0 if args.quick else 30.0)
    latency_s = args.latency_seconds or (8.0 if args.quick else 30.0)
    train_rows = 1000 if args.quick else 2000

    def say(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="lineguard-bench-") as tmp, LocalStack() as stack:
        workdir = Path(tmp)
        say(f"stack up; {args.lines} lines x {args.sensors} sensors x {frames_per_line} frames")
        fleet = make_fleet(args.lines, args.sensors, train_rows, frames_per_line)
        registry_dir = workdir / "registry"
        fitted = train_fleet(fleet, Registry(registry_dir), args.detector)
        total = fleet.frames
        say(f"trained {args.lines} models ({args.detector})")

        main_scn = Scenario("one", stack, registry_dir, args.partitions, gzip=args.gzip)
        ensure_topics(main_scn.settings)
        sent = fleet.frames

        records = wire_records(fleet, args.frames_per_record)
        limits = stage_limits(
            fleet, registry_dir, records, Scenario("limit", stack, registry_dir, 1, gzip=args.gzip)
        )
        limit = min(limits["decode"], limits["score"], limits["influx"])
        say(f"stages alone: { {k: round(v) for k, v in limits.items()} }")

        servers = {"influxd": stack.influx.pid, "broker": stack.kafka.pid}
        one = run_workers(
            main_scn,
            sent,
            1,
            workdir,
            timeout_s=300,
            send=lambda: send_records(main_scn, records),
            servers=servers,
        )
        say(f"1 worker: {one.per_s:.0f} frames/s, stored {one.stored}/{sent}; cores {one.cores}")
        lost = sent - one.stored
        main_scn.retire()

        many = None
        if args.workers > 1:
            scn = Scenario(
                f"x{args.workers}",
                stack,
                registry_dir,
                args.partitions,
                gzip=args.gzip,
            )
            ensure_topics(scn.settings)
            many = run_workers(
                scn,
                sent,
                args.workers,
                workdir,
                timeout_s=300,
                send=lambda: send_records(scn, records),
                servers=servers,
            )
            lost += sent - many.stored
            scn.retire()
            split = [
                len(lines_on_partitions(fleet.lines, set(held), args.partitions))
                for held in many.partitions
            ]
            say(
                f"{args.workers} workers: {many.per_s:.0f} frames/s, stored {many.stored}/{sent}; "
                f"partitions {many.partitions}, lines {split}; cores {many.cores}"
            )

        naive_scn = Scenario("naive", stack, registry_dir, args.partitions, gzip=args.gzip)
        ensure_topics(naive_scn.settings)
        naive_frames = min(frames_per_line, 2000)
        producer = make_producer(naive_scn.settings.kafka, linger_ms=20)
        for line in fleet.lines:
            run = as_run(fleet, line, slice(0, naive_frames))
            for t, row in zip(run.time_us.tolist(), run.values, strict=True):
                producer.send(
                    naive_scn.telemetry,
                    key=line.encode(),
                    value=frame_record(line, t, fleet.sensors, row),
                )
        producer.flush()
        producer.close()
        naive = run_workers(
            naive_scn,
            naive_frames * len(fleet.lines),
            1,
            workdir,
            timeout_s=120,
            command=[sys.executable, str(BENCH_DIR / "naive_pipeline.py")],
            stop_after_s=naive_s,
        )
        naive_scn.retire()
        say(f"naive: {naive.per_s:.0f} frames/s over {naive.seconds:.1f} s")

        latency = measure_latency(
            fleet,
            Scenario("latency", stack, registry_dir, args.partitions, gzip=args.gzip),
            one.per_s / 2,
            latency_s,
            workdir,
            args.poll_ms / 1e3,
            tick_s=args.tick_ms / 1e3,
        )
        say(f"latency at {latency['rate_fps']:.0f} frames/s: {latency}")

        rss_mb, rss_sent, rss_stored = measure_rss(
            fleet,
            fitted,
            stack,
            args.rss_lines,
            workdir,
            args.partitions,
            min(frames_per_line, 2000),
            args.frames_per_record,
            args.gzip,
        )
        lost += rss_sent - rss_stored
        say(f"peak RSS with {args.rss_lines} lines, {rss_sent} frames backlog: {rss_mb:.0f} MB")

    readings = one.per_s * args.sensors
    results = {
        "frames_per_s": round(one.per_s, 1),
        "readings_per_s": round(readings, 1),
        "limit_frames_per_s": round(limit, 1),
        "naive_frames_per_s": round(naive.per_s, 1),
        "ratio_to_limit": round(one.per_s / limit, 3),
        "ratio_to_naive": round(one.per_s / naive.per_s, 1) if naive.per_s else None,
        "p50_latency_ms": round(latency["p50_ms"], 1),
        "p99_latency_ms": round(latency["p99_ms"], 1),
        "peak_rss_mb": round(rss_mb, 1),
        "rss_backlog_frames": rss_sent,
        "lost": int(lost),
        "workers_n": args.workers if many else 1,
        "workers_n_frames_per_s": round(many.per_s, 1) if many else None,
        "scale_out_ratio": round(many.per_s / one.per_s, 2) if many else None,
        "stage_decode_frames_per_s": round(limits["decode"], 1),
        "stage_score_frames_per_s": round(limits["score"], 1),
        "stage_influx_frames_per_s": round(limits["influx"], 1),
        "calculation_frames_per_s": round(limits["calculation"], 1),
        "latency_rate_frames_per_s": round(latency["rate_fps"], 1),
        "latency_records_measured": latency["records_measured"],
        "latency_records_unseen": latency["records_unseen"],
        "worker_rss_mb_20_lines": round(one.peak_rss_mb, 1),
        "cores_one_worker": one.cores,
        "cores_n_workers": many.cores if many else None,
        "lines_per_worker": split if many else None,
        "lines": args.lines,
        "sensors": args.sensors,
        "frames": total,
        "detector": args.detector,
        "quick": args.quick,
    }
    print_table(results, args)
    if args.json:
        import json

        print(json.dumps(results))
    return results


def print_table(r: dict[str, Any], args: argparse.Namespace) -> None:
    d = args.sensors

    def row(name: str, fps: float | None, note: str = "") -> str:
        if fps is None:
            return f"| {name} | - | - | {note} |"
        return f"| {name} | {fps:,.0f} | {fps * d:,.0f} | {note} |"

    lines = [
        f"{r['lines']} lines x {d} sensors, {r['frames']:,} frames, detector {r['detector']}"
        + (" (--quick)" if r["quick"] else ""),
        "",
        "| pipeline / stage | frames/s | readings/s | note |",
        "|---|---:|---:|---|",
        row("LineGuard worker, 1 process", r["frames_per_s"], f"lost {r['lost']}"),
    ]
    if r["workers_n_frames_per_s"] is not None:
        lines.append(
            row(
                f"LineGuard workers, {r['workers_n']} processes, one group",
                r["workers_n_frames_per_s"],
                f"{r['scale_out_ratio']}x one worker",
            )
        )
    lines += [
        row("stage alone: decode", r["stage_decode_frames_per_s"]),
        row("stage alone: scoring (no I/O)", r["stage_score_frames_per_s"]),
        row("stage alone: InfluxDB, same points", r["stage_influx_frames_per_s"]),
        row("limit (slowest stage)", r["limit_frames_per_s"]),
        row("worker calculation alone (no I/O)", r["calculation_frames_per_s"]),
        row("naive per-event Faust pipeline", r["naive_frames_per_s"]),
        "",
        f"ratio to limit {r['ratio_to_limit']}, ratio to naive {r['ratio_to_naive']}",
        f"latency at {r['latency_rate_frames_per_s']:,.0f} frames/s (half of one worker's rate):"
        f" p50 {r['p50_latency_ms']} ms, p99 {r['p99_latency_ms']} ms"
        f" ({r['latency_records_measured']} records, one per line every {args.tick_ms:.0f} ms,"
        f" poll {args.poll_ms:.0f} ms)",
        f"peak RSS of a worker with {args.rss_lines} lines loaded, working through a backlog of"
        f" {r['rss_backlog_frames']:,} frames: {r['peak_rss_mb']} MB",
    ]
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    main()
