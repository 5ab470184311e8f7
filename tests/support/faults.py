"""Fault-injection scenarios on the real broker and the real InfluxDB.

Test support, not shipped: shared by ``bench/faults.py`` (the printed
table) and ``tests/test_faults.py`` (the same scenarios, shorter). Each
scenario replays recorded SKAB runs through the edge gateway into a
scoring worker process, injects one fault, and then counts, per frame, what reached InfluxDB:

* ``lost``: frames sent (and not meant to be dead-lettered) with no score
  point;
* ``duplicated``: score points beyond one per frame sent (a point with the
  same tags and time is the same point, so this counts points under another
  tag set or at a time never sent) plus incidents recorded twice (two
  incident points of a line whose time ranges overlap);
* ``dead_lettered`` against ``dead_lettered_expected``: records on the
  dead-letter topic, against the bad records the scenario injected.

Nothing is mocked: the broker is Tansu behind a :class:`PausableTcpProxy`
(to cut the network path; Tansu keeps its data in memory, so it is never
restarted), InfluxDB is ``influxd`` (stopped and restarted on the same data
directory and port), and the worker is ``lineguard worker`` in its own
process (killed with SIGKILL).
"""

from __future__ import annotations

import itertools
import logging
import os
import random
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from kafka.errors import KafkaTimeoutError

from lineguard.demo import WorkerProcess, default_data_dir
from lineguard.extras import require
from lineguard.influx import InfluxV1Client
from lineguard.ingest.buffer import DiskBuffer
from lineguard.ingest.contract import TelemetryBatch, encode
from lineguard.ingest.csv_runs import RecordedRun, read_run
from lineguard.ingest.gateway import SequenceCounter, StoreAndForward, make_producer, replay
from lineguard.models.registry import Registry
from lineguard.models.training import train_line_model
from lineguard.settings import InfluxSettings, KafkaSettings, Settings, TopicSettings
from lineguard.stack import LocalStack
from lineguard.stream.processor import (
    INCIDENT_MEASUREMENT,
    RESULT_MEASUREMENT,
    RawRecord,
    TelemetryProcessor,
)
from lineguard.stream.stats import ASSIGNMENT_MEASUREMENT
from lineguard.stream.worker import ensure_topics

__all__ = [
    "SAMPLE_RUNS",
    "FaultRig",
    "ScenarioResult",
    "assignment_times",
    "assignments_counted",
    "bad_records",
    "reference_incidents",
    "stats_path",
    "stored_incidents",
    "summarize",
    "wait_for",
    "worker_stats",
]

log = logging.getLogger(__name__)

SAMPLES = default_data_dir()
#: (line id, file under the bundled samples): the in-repo runs, one line each.
SAMPLE_RUNS = (
    ("valve1-0", "valve1/0.csv"),
    ("valve1-1", "valve1/1.csv"),
    ("valve1-4", "valve1/4.csv"),
    ("valve2-0", "valve2/0.csv"),
    ("valve2-1", "valve2/1.csv"),
)
TRAIN_ROWS = 400
# Gateway producer for fault runs: fail a send after a few seconds of broker
# silence so store-and-forward (not the producer's memory) carries the outage.
FAST_FAIL = {"request_timeout_ms": 2_000, "delivery_timeout_ms": 4_000, "max_block_ms": 2_000}


@dataclass
class ScenarioResult:
    """What one scenario sent and what InfluxDB holds afterwards."""

    scenario: str
    frames_sent: int = 0
    frames_written: int = 0
    lost: int = 0
    duplicated: int = 0
    dead_lettered_expected: int = 0
    dead_lettered: int = 0
    incidents: int = 0
    worker_alive: bool = True
    notes: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return asdict(self)


def summarize(results: list[ScenarioResult]) -> dict[str, Any]:
    """Totals over scenarios, in the shape ``bench/faults.py --json`` prints."""
    return {
        "scenarios": [r.as_dict() for r in results],
        "frames_sent": sum(r.frames_sent for r in results),
        "frames_written": sum(r.frames_written for r in results),
        "lost": sum(r.lost for r in results),
        "duplicated": sum(r.duplicated for r in results),
        "dead_lettered_expected": sum(r.dead_lettered_expected for r in results),
        "dead_lettered": sum(r.dead_lettered for r in results),
        "incidents_differing": sum(r.notes.get("incidents_differing", 0) for r in results),
        **_pooled_assignment_times(results),
    }


def _pooled_assignment_times(results: list[ScenarioResult]) -> dict[str, Any]:
    """Worst p99 and max of assignment -> first stored batch over the scenarios."""
    with_times = [r.notes for r in results if r.notes.get("assignments")]
    if not with_times:
        return {}
    return {
        "assignments": sum(n["assignments"] for n in with_times),
        "assign_to_first_scored_p99_s_worst": max(
            n["assign_to_first_scored_p99_s"] for n in with_times
        ),
        "assign_to_first_scored_max_s": max(n["assign_to_first_scored_max_s"] for n in with_times),
    }


# --------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------


def bad_records(
    run: RecordedRun, line: str, t0_us: int
) -> tuple[list[tuple[str, bytes, bytes]], list[tuple[str, bytes, bytes, int]]]:
    """Bad and odd records for one trained line.

    Returns
    -------
    refused : list of (case, key, value)
        Records that must be dead-lettered, each with the case name.
    handled : list of (case, key, value, frames)
        Records with a defined handling other than the dead-letter topic:
        they are scored (``frames`` new frames at new times) or, for the
        duplicate, dropped (``frames`` 0).
    """
    sensors = list(run.sensors)
    width = len(sensors)
    row = [float(v) for v in np.nan_to_num(run.values[0]).tolist()]

    def doc(times: list[int], values: list[list[Any]], **over: Any) -> dict[str, Any]:
        d: dict[str, Any] = {
            "schema": "lineguard.telemetry.v1",
            "site": "site-1",
            "line": line,
            "gateway": "gw-bad",
            "seq": 1,
            "historical": False,
            "sensors": sensors,
            "frames": [{"time_us": t, "values": v} for t, v in zip(times, values, strict=True)],
        }
        d.update(over)
        return d

    key = line.encode()
    t = t0_us
    ok = doc([t], [row])
    raw_ok = orjson.dumps(ok)
    refused: list[tuple[str, bytes, bytes]] = [
        ("malformed JSON", key, b'{"schema": "lineguard.telemetry.v1", "line": '),
        ("not an object", key, b"[1, 2, 3]"),
        ("empty value", key, b""),
        ("wrong types", key, orjson.dumps({**ok, "seq": "seventeen"})),
        ("string value", key, orjson.dumps(doc([t], [[str(v) for v in row]]))),
        ("NaN literal", key, raw_ok.replace(orjson.dumps(row[0]), b"NaN", 1)),
        ("infinity", key, raw_ok.replace(orjson.dumps(row[0]), b"1e999", 1)),
        ("too few values", key, orjson.dumps(doc([t], [row[:-1]]))),
        ("huge value array", key, orjson.dumps(doc([t], [row * 1000]))),
        ("too many frames", key, orjson.dumps(doc([t] * 100_001, [[0.0] * width] * 100_001))),
        ("time before 2000", key, orjson.dumps(doc([1000], [row]))),
        ("unknown schema", key, orjson.dumps({**ok, "schema": "other.v9"})),
        (
            "unknown line",
            b"line-nobody-trained",
            orjson.dumps({**ok, "line": "line-nobody-trained"}),
        ),
        (
            "unknown sensors only",
            key,
            orjson.dumps(doc([t], [row], sensors=[f"x{i}" for i in range(width)])),
        ),
        (
            "future timestamp",
            key,
            orjson.dumps(doc([time.time_ns() // 1000 + 86_400_000_000], [row], seq=2)),
        ),
        ("oversized record", key, b'{"pad": "' + b"x" * (8 * 1024 * 1024 + 16) + b'"}'),
    ]
    # Scored normally (new frames) or dropped (the duplicate): never a dead letter.
    extra = [*sensors, "UnknownExtraSensor"]
    handled: list[tuple[str, bytes, bytes, int]] = [
        ("valid record", key, orjson.dumps(doc([t + 1_000_000], [row], seq=10)), 1),
        ("exact duplicate (same gateway, seq)", key, orjson.dumps(doc([t], [row], seq=10)), 0),
        (
            "extra unknown sensor (ignored)",
            key,
            orjson.dumps(doc([t + 2_000_000], [[*row, 1.0]], sensors=extra, seq=11)),
            1,
        ),
        (
            "missing sensor (imputed)",
            key,
            orjson.dumps(doc([t + 3_000_000], [row[1:]], sensors=sensors[1:], seq=12)),
            1,
        ),
        (
            "null readings (imputed)",
            key,
            orjson.dumps(doc([t + 4_000_000], [[None] * width], seq=13)),
            1,
        ),
        (
            "out-of-order timestamps",
            key,
            orjson.dumps(doc([t + 7_000_000, t + 5_000_000, t + 6_000_000], [row] * 3, seq=14)),
            3,
        ),
        (
            "gateway clock skew (sent_at one hour ahead)",
            key,
            orjson.dumps(
                doc(
                    [t + 8_000_000],
                    [row],
                    seq=15,
                    sent_at_us=time.time_ns() // 1000 + 3_600_000_000,
                )
            ),
            1,
        ),
    ]
    return refused, handled


# --------------------------------------------------------------------------
# The rig
# --------------------------------------------------------------------------


def _close_producer(producer: Any, report: dict[str, Any], line: str) -> None:
    """Close a replay producer within 10 s, and count a close that timed out.

    Bounded: kafka-python's close() otherwise waits forever for records it
    cannot deliver. After a cut, a produce request sent on the dead
    connection waits out its request timeout; the gateway has already put
    those records back in its buffer and resent them, so a close that times
    out loses nothing (the scenario's InfluxDB count is what decides), but
    kafka-python 3 raises ``KafkaTimeoutError`` from close() then. It is
    counted in the report instead of killing the replay thread.
    """
    try:
        producer.close(timeout=10)
    except KafkaTimeoutError:
        timed_out = report.setdefault("producer_close_timeouts", {})
        timed_out[line] = timed_out.get(line, 0) + 1


class FaultRig:
    """Trained lines, a proxied local stack, and helpers to run scenarios.

    Parameters
    ----------
    stack : LocalStack
        Started with ``kafka_proxy=PausableTcpProxy`` (broker outages cut the proxy).
    workdir : Path
        Registry, gateway buffers, worker logs.
    lines : int
        How many of :data:`SAMPLE_RUNS` to replay (1 to 5).
    seed : int
        For the random kill points.
    """

    def __init__(self, stack: LocalStack, workdir: Path, lines: int = 5, seed: int = 6) -> None:
        if stack.proxy is None:
            raise ValueError(
                "expected a LocalStack(kafka_proxy=PausableTcpProxy); got one without a proxy"
            )
        self.stack = stack
        self.workdir = Path(workdir)
        self.registry_dir = self.workdir / "registry"
        self.rng = random.Random(seed)
        self.runs: dict[str, RecordedRun] = {}
        self._reference: set[tuple[str, int, int, str]] | None = None
        registry = Registry(self.registry_dir)
        for line, rel in SAMPLE_RUNS[:lines]:
            run = read_run(SAMPLES / rel)
            self.runs[line] = run
            if registry.active_version(line) is None:
                train_line_model(registry, run, line, rows=TRAIN_ROWS)

    # -- per scenario --------------------------------------------------------
    def settings_for(self, name: str) -> tuple[Settings, dict[str, str]]:
        """Fresh topics, database and consumer group for one scenario."""
        tag = f"{re.sub('[^a-z0-9]', '', name.lower())[:12]}{uuid.uuid4().hex[:6]}"
        topics = TopicSettings(
            telemetry=f"telemetry-{tag}",
            dead_letter=f"dlq-{tag}",
            alerts=f"alerts-{tag}",
            incidents=f"incidents-{tag}",
        )
        settings = Settings(
            registry_dir=self.registry_dir,
            worker_id=f"faults-{tag}",
            state_dir=self.workdir / "state",
            kafka=KafkaSettings(bootstrap_servers=self.stack.kafka_bootstrap),
            influx=InfluxSettings(url=self.stack.influx_url, database=f"faults_{tag}"),
            topics=topics,
        )
        env = {
            **os.environ,
            **self.stack.env(),
            "LINEGUARD_REGISTRY_DIR": str(self.registry_dir),
            "LINEGUARD_STATE_DIR": str(self.workdir / "state"),
            "LINEGUARD_WORKER_ID": settings.worker_id,
            "LINEGUARD_INFLUX_DATABASE": settings.influx.database,
            "LINEGUARD_TOPIC_TELEMETRY": topics.telemetry,
            "LINEGUARD_TOPIC_DEAD_LETTER": topics.dead_letter,
            "LINEGUARD_TOPIC_ALERTS": topics.alerts,
            "LINEGUARD_TOPIC_INCIDENTS": topics.incidents,
        }
        ensure_topics(settings)
        self.last_settings = settings  # for a post-mortem look at a scenario's data
        return settings, env

    def start_worker(self, env: dict[str, str], name: str, n: int = 0) -> WorkerProcess:
        """A scoring worker process with its log and its stats file in the work directory."""
        log_path = self.workdir / f"{name}-worker-{n}.log"
        env = {**env, "LINEGUARD_STATS_FILE": str(stats_path(log_path))}
        return WorkerProcess("score", env, log_path)

    def replay_all(
        self,
        settings: Settings,
        *,
        speed: float,
        max_frames: int = 20,
        buffered: bool = True,
        name: str = "",
        producer_overrides: dict[str, Any] | None = None,
    ) -> tuple[list[threading.Thread], dict[str, Any]]:
        """Replay every line at once, one gateway (thread, producer, buffer) per line."""
        report: dict[str, Any] = {"gateways": {}}

        def one(line: str, run: RecordedRun) -> None:
            producer = make_producer(settings.kafka, **(producer_overrides or {}))
            gw = f"gw-{line}"
            state = self.workdir / "gateways" / f"{name}-{settings.worker_id}" / gw
            forward = None
            if buffered:
                forward = StoreAndForward(
                    producer,
                    settings.topics.telemetry,
                    DiskBuffer(state / "buffer"),
                    producer_factory=lambda: make_producer(
                        settings.kafka, **(producer_overrides or {})
                    ),
                )
            try:
                stats = replay(
                    run,
                    producer=producer,
                    topic=settings.topics.telemetry,
                    site="site-1",
                    line=line,
                    gateway_id=gw,
                    sequence=SequenceCounter(state / "seq"),
                    speed=speed,
                    max_frames=max_frames,
                    flush_interval_s=0.2,
                    forward=forward,
                    drain_timeout_s=300.0,
                )
                report["gateways"][line] = {
                    "records": stats.records,
                    "buffered_left": stats.buffered,
                    "sent_historical": stats.historical,
                    "dropped": stats.dropped,
                    **(forward.stats() if forward else {}),
                }
            finally:
                if forward is not None:
                    forward.buffer.close()
                    if forward.producer is not producer:  # replaced: a wedged client
                        _close_producer(forward.producer, report, line)
                _close_producer(producer, report, line)

        threads = [
            threading.Thread(target=one, args=(line, run), name=f"replay-{line}", daemon=True)
            for line, run in self.runs.items()
        ]
        for t in threads:
            t.start()
        return threads, report

    # -- counting ------------------------------------------------------------
    def scored_count(self, client: InfluxV1Client) -> int:
        """Score points in the scenario's database (-1 while unreachable)."""
        try:
            rows = client.query(f'SELECT count("score") FROM "{RESULT_MEASUREMENT}"')
            return int(rows[0]["count"]) if rows else 0
        except Exception:
            return -1

    def wait_progress(
        self, client: InfluxV1Client, above: int, worker: WorkerProcess, timeout: float = 90.0
    ) -> int:
        """Wait until more than ``above`` points are stored; returns the count.

        Raises if the worker dies or ``timeout`` passes first, naming what
        never happened: a scenario must not go on as if it had.
        """
        deadline = time.monotonic() + timeout
        count = self.scored_count(client)
        while count <= above:
            if not worker.alive():
                raise RuntimeError(f"worker died:\n{worker.log_tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"expected more than {above} score points within {timeout:.0f} s; "
                    f"got {count}\n{worker.log_tail()}"
                )
            time.sleep(0.2)
            count = self.scored_count(client)
        return count

    def wait_scored(
        self,
        client: InfluxV1Client,
        expected: int,
        worker: WorkerProcess,
        stall_s: float = 60.0,
    ) -> int:
        """Wait until ``expected`` points are stored or no progress for ``stall_s``."""
        last, last_change = -2, time.monotonic()
        while True:
            count = self.scored_count(client)
            if count >= expected:
                return count
            if count != last:
                last, last_change = count, time.monotonic()
            if time.monotonic() - last_change > stall_s or not worker.alive():
                return count
            time.sleep(0.3)

    def reference_incidents(self) -> set[tuple[str, int, int, str]]:
        """Incidents of the replayed runs scored offline, without any fault."""
        if self._reference is None:
            self._reference = reference_incidents(self.registry_dir, self.runs)
        return self._reference

    def incident_check(self, client: InfluxV1Client) -> dict[str, int]:
        """How the stored incidents compare with :meth:`reference_incidents`."""
        stored = stored_incidents(client)
        reference = self.reference_incidents()
        return {
            "incidents_expected": len(reference),
            "incidents_differing": len(stored ^ reference),
            # (id, end, frames, state): what an uninterrupted run has and not
            # this one, and the other way round; a few, for the post-mortem.
            "incidents_missing": sorted(reference - stored)[:5],
            "incidents_extra": sorted(stored - reference)[:5],
        }

    def tally(
        self,
        name: str,
        client: InfluxV1Client,
        settings: Settings,
        sent: dict[str, np.ndarray],
        dead_expected: int = 0,
    ) -> ScenarioResult:
        """Compare what was sent with what InfluxDB and the dead-letter topic hold."""
        result = ScenarioResult(name, dead_lettered_expected=dead_expected)
        for line, times in sent.items():
            rows = client.query(
                f'SELECT "score" FROM "{RESULT_MEASUREMENT}" WHERE "line" = \'{line}\'',
                epoch="u",
            )
            got = np.array([r["time"] for r in rows], dtype=np.int64)
            want = np.unique(times)
            found = np.isin(want, got)
            result.frames_sent += len(want)
            result.frames_written += len(got)
            result.lost += int((~found).sum())
            result.duplicated += len(got) - int(found.sum())
            incidents = client.query(
                f'SELECT "end_us", "incident_id" FROM "{INCIDENT_MEASUREMENT}" '
                f"WHERE \"line\" = '{line}'",
                epoch="u",
            )
            spans = sorted((int(r["time"]), int(r["end_us"])) for r in incidents)
            result.incidents += len(spans)
            # The same fault recorded twice shows up as overlapping incidents.
            result.duplicated += sum(
                1 for (_, end), (start, _) in itertools.pairwise(spans) if start <= end
            )
        result.dead_lettered = count_records(settings, settings.topics.dead_letter)
        return result

    # -- scenarios -------------------------------------------------------------
    def run_baseline(self) -> ScenarioResult:
        """No fault: the reference for the others."""
        name = "baseline"
        settings, env = self.settings_for(name)
        worker = self.start_worker(env, name)
        client = InfluxV1Client(settings.influx)
        try:
            threads, _report = self.replay_all(settings, speed=0, name=name)
            _join(threads)
            sent = {line: run.time_us for line, run in self.runs.items()}
            self.wait_scored(client, _total(sent), worker)
            result = self.tally(name, client, settings, sent)
            result.worker_alive = worker.alive()
            result.notes = {**self.incident_check(client), **assignment_times(client)}
            return result
        finally:
            client.close()
            worker.stop()

    def run_worker_kills(
        self, kills: int = 10, replay_s: float | None = None, last_kill_at: float = 0.95
    ) -> ScenarioResult:
        """SIGKILL the worker at random points during a paced replay, ``kills`` times.

        The kill points are random fractions of the frames to score; the
        worker is killed 0-1 s after the stored points pass the next one (and
        after it made progress since its restart), so kills land while it is
        consuming, spread over the whole replay. ``replay_s`` (default 30 s per
        kill) paces the replay to outlast the restarts.
        """
        name = f"worker SIGKILL x{kills}"
        settings, env = self.settings_for("kill")
        client = InfluxV1Client(settings.influx)
        speed = _speed_for(self.runs, replay_s if replay_s is not None else 30.0 * kills)
        sent = {line: run.time_us for line, run in self.runs.items()}
        total = _total(sent)
        # Kill points up to ``last_kill_at`` of the frames: a restart (a group
        # join) takes 5-15 s on a loaded machine, so the last points leave
        # room for the kills to land before the replay ends.
        points = sorted(int(self.rng.uniform(0.05, last_kill_at) * total) for _ in range(kills))
        worker = self.start_worker(env, "kill", 0)
        killed_at: list[int] = []
        try:
            threads, report = self.replay_all(settings, speed=speed, name="kill")
            count = 0
            for i, point in enumerate(points):
                self.wait_progress(client, max(point, count), worker, timeout=120.0)
                time.sleep(self.rng.uniform(0.0, 1.0))
                count = self.scored_count(client)
                killed_at.append(count)
                worker.process.kill()  # SIGKILL: no shutdown code runs
                worker.process.wait()
                worker.stop()
                worker = self.start_worker(env, "kill", i + 1)
            _join(threads)
            self.wait_scored(client, total, worker)
            result = self.tally(name, client, settings, sent)
            result.worker_alive = worker.alive()
            incidents = self.incident_check(client)
            result.notes = {
                "points_when_killed": killed_at,
                "replay_speed": round(float(speed), 1),
                "buffered_left": sum(
                    g.get("buffered_left", 0) for g in report["gateways"].values()
                ),
                **incidents,
                **assignment_times(client),
            }
            return result
        finally:
            client.close()
            worker.stop()

    def run_rebalances(self, cycles: int = 10, replay_s: float | None = None) -> ScenarioResult:
        """Workers join and leave one consumer group ``cycles`` times during a paced replay.

        Each cycle starts a new worker, waits until the group gave it
        partitions and scoring went on, then stops (SIGTERM: a clean leave)
        the oldest one, and waits until the survivor was reassigned. Every
        assignment's time to its first stored batch is read from the
        workers' ``lineguard_assignment`` points.
        """
        name = f"rebalance x{cycles}"
        settings, env = self.settings_for("rebalance")
        client = InfluxV1Client(settings.influx)
        speed = _speed_for(self.runs, replay_s if replay_s is not None else 30.0 * cycles)
        sent = {line: run.time_us for line, run in self.runs.items()}
        total = _total(sent)
        workers = [self.start_worker(env, "rebalance", 0)]
        stopped: list[WorkerProcess] = []
        during_replay = 0
        try:
            threads, _report = self.replay_all(settings, speed=speed, name="rebalance")
            self.wait_progress(client, 0, workers[0], timeout=120.0)
            for i in range(cycles):
                newcomer = self.start_worker(env, "rebalance", i + 1)
                workers.append(newcomer)
                wait_for(
                    lambda w=newcomer: assignments_counted(w) >= 1,
                    workers,
                    90.0,
                    f"worker {i + 1} assigned",
                )
                before = self.scored_count(client)
                wait_for(
                    lambda b=before: (
                        self.scored_count(client) > b or self.scored_count(client) >= total
                    ),
                    workers,
                    90.0,
                    f"scoring going on after worker {i + 1} joined",
                )
                leaving = workers.pop(0)
                survivors_before = {id(w): assignments_counted(w) for w in workers}
                if leaving.stop() != 0:
                    raise RuntimeError(f"worker did not leave cleanly:\n{leaving.log_tail()}")
                stopped.append(leaving)
                wait_for(
                    lambda sb=survivors_before: all(
                        assignments_counted(w) > sb[id(w)] for w in workers
                    ),
                    workers,
                    90.0,
                    f"survivors reassigned after worker {i} left",
                )
                during_replay += any(t.is_alive() for t in threads)
            _join(threads)
            self.wait_scored(client, total, workers[-1])
            result = self.tally(name, client, settings, sent)
            result.worker_alive = all(w.alive() for w in workers)
            result.notes = {
                "cycles": cycles,
                "cycles_during_replay": during_replay,
                "workers_left_cleanly": len(stopped),
                **assignment_times(client),
                **self.incident_check(client),
            }
            return result
        finally:
            client.close()
            for w in workers:
                w.stop()

    def run_influx_outage(self, outage_s: float = 60.0, replay_s: float = 40.0) -> ScenarioResult:
        """Stop InfluxDB for ``outage_s`` in the middle of a replay, then restart it."""
        psutil = require("psutil", "local")

        name = f"InfluxDB outage {outage_s:g}s"
        settings, env = self.settings_for("influx")
        client = InfluxV1Client(settings.influx)
        worker = self.start_worker(env, "influx")
        influx = self.stack.influx
        assert influx is not None
        try:
            threads, _report = self.replay_all(
                settings, speed=_speed_for(self.runs, replay_s), name="influx"
            )
            self.wait_progress(client, 0, worker)
            proc = psutil.Process(worker.process.pid)
            cpu0 = sum(proc.cpu_times()[:2])
            influx.stop()
            ends = time.monotonic() + outage_s
            during: list[dict[str, Any]] = []

            def outage_seen() -> bool:
                # The worker's stats file, rewritten on every report whatever
                # InfluxDB does: the outage must be noticed (sink_down) and the
                # records it holds back exposed (uncommitted), not just endured.
                during.append(worker_stats(worker))
                noticed = any(d.get("sink_down") == 1 for d in during)
                lag = max((d.get("uncommitted", -1) for d in during), default=-1)
                return noticed and lag > 0 and time.monotonic() >= ends

            wait_for(
                outage_seen,
                [worker],
                outage_s + 60.0,
                "the worker reporting InfluxDB down (sink_down) with uncommitted records",
            )
            cpu_s = sum(proc.cpu_times()[:2]) - cpu0
            influx.start()
            _join(threads)
            sent = {line: run.time_us for line, run in self.runs.items()}
            self.wait_scored(client, _total(sent), worker)
            result = self.tally(name, client, settings, sent)
            result.worker_alive = worker.alive()
            incidents = self.incident_check(client)
            # Written after the last stored batch, which every retry preceded.
            final = worker_stats(worker)
            result.notes = {
                "write_retries": final.get("write_retries", -1),
                "worker_cpu_during_outage_s": round(cpu_s, 2),
                "max_uncommitted_reported": max(d.get("uncommitted", -1) for d in during),
                **incidents,
                **assignment_times(client),
            }
            return result
        finally:
            if not influx.running:
                influx.start()
            client.close()
            worker.stop()

    def run_broker_outage(self, outage_s: float = 20.0, replay_s: float = 40.0) -> ScenarioResult:
        """Cut the network path to the broker for ``outage_s`` mid-replay (gateways
        buffer on disk, the worker cannot fetch or commit), then restore it."""
        name = f"broker outage {outage_s:g}s"
        settings, env = self.settings_for("broker")
        client = InfluxV1Client(settings.influx)
        worker = self.start_worker(env, "broker")
        proxy = self.stack.proxy
        assert proxy is not None
        try:
            threads, report = self.replay_all(
                settings,
                speed=_speed_for(self.runs, replay_s),
                name="broker",
                producer_overrides=FAST_FAIL,
            )
            self.wait_progress(client, 0, worker)
            proxy.pause()
            time.sleep(outage_s)
            proxy.resume()
            _join(threads)
            sent = {line: run.time_us for line, run in self.runs.items()}
            self.wait_scored(client, _total(sent), worker)
            result = self.tally(name, client, settings, sent)
            result.worker_alive = worker.alive()
            incidents = self.incident_check(client)
            gateways = report["gateways"].values()
            result.notes = {
                "sent_historical": sum(g.get("sent_historical", 0) for g in gateways),
                "gateway_send_failures": sum(g.get("send_failures", 0) for g in gateways),
                # Kafka clients found wedged after the cut healed, and replaced.
                "gateway_producers_replaced": sum(g.get("producers_replaced", 0) for g in gateways),
                "buffered_left": sum(g.get("buffered_left", 0) for g in gateways),
                "duplicates_dropped_by_worker": worker_stats(worker).get("duplicates", -1),
                **incidents,
                **assignment_times(client),
            }
            return result
        finally:
            if proxy.paused:
                proxy.resume()
            client.close()
            worker.stop()

    def run_bad_input(self) -> ScenarioResult:
        """Every kind of bad record, between good frames; the worker must stay up."""
        from kafka import KafkaProducer

        name = "bad input"
        settings, env = self.settings_for("bad")
        client = InfluxV1Client(settings.influx)
        worker = self.start_worker(env, "bad")
        line, run = next(iter(self.runs.items()))
        t0 = int(run.time_us[-1]) + 3_600_000_000
        refused, handled = bad_records(run, line, t0)
        producer = KafkaProducer(
            max_request_size=16 * 1024 * 1024, acks="all", **settings.kafka.kafka_python_config()
        )
        broker_refused = []
        try:
            sent_times = [run.time_us[:200]]
            good = TelemetryBatch(
                "site-1", line, "gw-good", 1, run.sensors, run.time_us[:200], run.values[:200]
            )
            producer.send(settings.topics.telemetry, key=line.encode(), value=encode(good))
            for case, key, value in refused:
                try:
                    producer.send(settings.topics.telemetry, key=key, value=value).get(30)
                except Exception as exc:  # the broker itself may refuse an oversized record
                    broker_refused.append(f"{case}: {type(exc).__name__}")
            for _case, key, value, _frames in handled:
                producer.send(settings.topics.telemetry, key=key, value=value).get(30)
            for _case, _key, value, frames in handled:
                if frames:
                    doc = orjson.loads(value)
                    sent_times.append(np.array([f["time_us"] for f in doc["frames"]]))
            producer.flush()
            sent = {line: np.concatenate(sent_times)}
            self.wait_scored(client, _total(sent), worker, stall_s=30.0)
            expected_dead = len(refused) - len(broker_refused)
            deadline = time.monotonic() + 30
            while (
                count_records(settings, settings.topics.dead_letter) < expected_dead
                and time.monotonic() < deadline
            ):
                time.sleep(0.5)
            result = self.tally(name, client, settings, sent, dead_expected=expected_dead)
            result.worker_alive = worker.alive()
            reasons = dead_letter_reasons(settings)
            result.notes = {
                "cases_refused": len(refused),
                "refused_by_broker": broker_refused,
                "cases_handled": len(handled),
                "reasons": reasons,
            }
            return result
        finally:
            producer.close()
            client.close()
            worker.stop()


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------


def assignments_counted(worker: WorkerProcess) -> int:
    """Partition assignments a rig worker has counted so far (its stats file).

    The worker rewrites its stats file as soon as it is assigned partitions,
    so a wait on this count follows each rebalance without reading the log.
    """
    return int(worker_stats(worker).get("assignments", 0))


def wait_for(
    condition: Callable[[], bool], workers: list[WorkerProcess], timeout: float, what: str
) -> None:
    """Poll ``condition``; fail naming ``what`` never happened, or which worker died."""
    deadline = time.monotonic() + timeout
    while not condition():
        for w in workers:
            if not w.alive():
                raise RuntimeError(f"worker died while waiting for {what}:\n{w.log_tail()}")
        if time.monotonic() > deadline:
            tails = "\n---\n".join(w.log_tail(15) for w in workers)
            raise TimeoutError(f"{what}: did not happen within {timeout:.0f} s\n{tails}")
        time.sleep(0.2)


def reference_incidents(
    registry_dir: Path, runs: dict[str, RecordedRun], frames_per_record: int = 20
) -> set[tuple[str, int, int, str]]:
    """Incidents of ``runs`` (line -> run) scored offline in one process, without faults:
    (incident id, end, frames, state) in their final state."""
    processor = TelemetryProcessor(Registry(registry_dir))
    final: dict[str, tuple[str, int, int, str]] = {}
    for line, run in runs.items():
        records = [
            RawRecord(
                encode(
                    TelemetryBatch(
                        "site-1",
                        line,
                        "gw-reference",
                        i,
                        run.sensors,
                        run.time_us[start : start + frames_per_record],
                        run.values[start : start + frames_per_record],
                    )
                ),
                line.encode(),
            )
            for i, start in enumerate(range(0, len(run), frames_per_record))
        ]
        for _key, m in processor.process(records).incidents:
            final[m["incident_id"]] = (m["incident_id"], m["end_us"], m["frames"], m["state"])
    return set(final.values())


def stored_incidents(client: InfluxV1Client) -> set[tuple[str, int, int, str]]:
    """The incidents in InfluxDB, in the shape of :func:`reference_incidents`."""
    rows = client.query(
        f'SELECT "incident_id", "end_us", "frames", "state" FROM "{INCIDENT_MEASUREMENT}"',
        epoch="u",
    )
    return {(r["incident_id"], r["end_us"], r["frames"], r["state"]) for r in rows}


def assignment_times(client: InfluxV1Client) -> dict[str, Any]:
    """Assignment -> first stored batch, over every assignment of the scenario's workers."""
    try:
        rows = client.query(f'SELECT "to_first_scored_s" FROM "{ASSIGNMENT_MEASUREMENT}"')
    except Exception:
        rows = []
    seconds = np.array([float(r["to_first_scored_s"]) for r in rows], dtype=float)
    if not len(seconds):
        return {"assignments": 0}
    return {
        "assignments": len(seconds),
        "assign_to_first_scored_p50_s": round(float(np.percentile(seconds, 50)), 2),
        "assign_to_first_scored_p99_s": round(float(np.percentile(seconds, 99)), 2),
        "assign_to_first_scored_max_s": round(float(seconds.max()), 2),
    }


def _join(threads: list[threading.Thread], timeout: float = 900.0) -> None:
    for t in threads:
        t.join(timeout)


def _total(sent: dict[str, np.ndarray]) -> int:
    return sum(len(np.unique(t)) for t in sent.values())


def _speed_for(runs: dict[str, RecordedRun], seconds: float) -> float:
    """Replay speed that makes the longest run last about ``seconds``."""
    span_s = max((r.time_us[-1] - r.time_us[0]) / 1e6 for r in runs.values())
    return max(span_s / max(seconds, 1e-3), 1.0)


def stats_path(log_path: Path) -> Path:
    """Where a worker started by the rig writes its stats file (beside its log)."""
    return log_path.with_suffix(".stats.json")


def worker_stats(worker: WorkerProcess) -> dict[str, Any]:
    """The counters in a rig worker's stats file (``{}`` before its first write).

    The file is replaced atomically by the worker (``write_stats_file``), so
    a read never sees half of it.
    """
    try:
        return dict(orjson.loads(stats_path(worker.log_path).read_bytes()))
    except FileNotFoundError:
        return {}


def _consume(settings: Settings, topic: str, on_message: Callable[[Any], None]) -> None:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        topic,
        group_id=None,
        auto_offset_reset="earliest",
        consumer_timeout_ms=3000,
        fetch_max_bytes=64 * 1024 * 1024,
        max_partition_fetch_bytes=32 * 1024 * 1024,
        **settings.kafka.kafka_python_config(),
    )
    try:
        for message in consumer:
            on_message(message)
    finally:
        consumer.close()


def count_records(settings: Settings, topic: str) -> int:
    """Records on a topic (read until it has been quiet for 3 s)."""
    n = [0]

    def count(_message: Any) -> None:
        n[0] += 1

    _consume(settings, topic, count)
    return n[0]


def dead_letter_reasons(settings: Settings) -> list[str]:
    """The ``lineguard.dlq.reason`` header of every dead letter, shortened."""
    reasons: list[str] = []

    def take(message: Any) -> None:
        headers = dict(message.headers or [])
        reason = headers.get("lineguard.dlq.reason", b"").decode("utf-8", "replace")
        reasons.append(reason[:90])

    _consume(settings, settings.topics.dead_letter, take)
    return reasons
