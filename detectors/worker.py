"""The stream worker: a faust-streaming app around :class:`TelemetryProcessor`.

Delivery is at-least-once and the sink is idempotent:

* a micro-batch's offsets are committed only after InfluxDB accepted its
  points and the broker stored its dead letters, alerts, incidents and line
  state, so a crash at any point replays the batch instead of losing it;
* a result point is keyed by (line, model version, frame time), so a
  replayed frame rewrites the same point instead of adding one;
* the worker, not Faust, commits telemetry offsets, and only contiguous
  progress from the committed offset on (:mod:`lineguard.detectors.offsets`
  explains the rebalance race in Faust's own commits that this avoids).

The loop is pipelined: batch N is decoded and scored (in a thread) while
batches N-1 and N-2 are written; writes run one at a time, in batch order,
and each commits its own batch's offsets. A micro-batch is bounded by its
telemetry bytes (:data:`BATCH_BYTES`) as well as its record count.

Two roles share this code: ``score`` (the scoring worker, consumer group
``<worker_id>``) and ``archive`` (stores raw sensor values, its own consumer
group, so the archive never slows scoring).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import socket
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import faust
import orjson

from lineguard.contracts import IMPUTED_MEASUREMENT, WORKER_MEASUREMENT
from lineguard.detectors.feedback_worker import FeedbackConsumer
from lineguard.detectors.model_updates import ModelUpdates
from lineguard.detectors.offsets import Admission, OffsetTracker
from lineguard.detectors.processor import RawRecord, TelemetryProcessor, archive_lines
from lineguard.detectors.scoring import warm_up
from lineguard.influx import (
    AsyncInfluxV1Client,
    InfluxError,
    InfluxQueryError,
    InfluxWriteError,
    encode_point,
    failure_text,
)
from lineguard.ingest.dead_letter import DeadLetter, fit_for_topic
from lineguard.models.announce import ensure_models_topic
from lineguard.models.registry import Registry
from lineguard.settings import KafkaSettings, Settings

__all__ = [
    "OrderedStores",
    "WorkerStats",
    "batches_by_size",
    "create_app",
    "ensure_topics",
    "freeze_long_lived_objects",
    "lines_on_partitions",
    "run_worker",
    "write_bodies",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

BATCH_RECORDS = 200
# Longest a take waits for more records: every record waits up to this long
# when records trickle in (bench/pipeline.py latency at 91k frames/s: p99
# 369-404 ms at 50 ms, 311-314 ms at 25 ms, same throughput).
BATCH_WINDOW_S = 0.025
# Most telemetry bytes in one micro-batch: about 40k frames of 50 sensors in
# wire format v3. Small enough that storing a batch overlaps scoring the
# next one; large enough that the per-line and per-batch costs (state
# snapshots, changelog writes, commits) stay small (bench/pipeline.py,
# 800k frames: 4 MB batches 118k-133k frames/s, 8 MB 152k-157k, 16 MB
# 158k-160k).
BATCH_BYTES = 16 * 1024 * 1024
# Longest a fetch waits on the broker for new records. Faust hard-codes 1500
# ms, and Tansu answers a waiting fetch only when that time is up, so every
# record sat up to 1.5 s in the broker (measured p50 0.6 s at light load).
FETCH_MAX_WAIT_MS = 50
# Scored batches waiting to be stored, at most: scoring the next batch goes
# on while these are written, so a slow write does not idle the scorer.
STORES_PENDING = 2
RETRY_FIRST_S = 0.2
RETRY_MAX_S = 10.0
# Largest InfluxDB request body (see write_bodies): about 16k score points.
MAX_WRITE_BYTES = 2 * 1024 * 1024


class WorkerStats:
    """Counters a worker reports in its log and to InfluxDB."""

    def __init__(self) -> None:
        self.records = 0
        self.frames = 0
        self.dead_letters = 0
        self.alerts = 0
        self.incidents = 0
        self.write_retries = 0
        self.write_errors = 0
        # Resent copies dropped by (gateway, seq); alert edges at late frames.
        self.duplicates = 0
        self.historical_alerts_suppressed = 0
        self.batches = 0
        self.batch_ms = 0.0
        # The InfluxDB sink: unreachable since its last failed request, and why.
        self.sink_down = False
        self.sink_error = ""
        # Frames whose reading was missing and imputed, per (line, sensor).
        self.imputed: dict[tuple[str, str], int] = {}
        self.started = time.monotonic()
        self._last_frames = 0
        self._last_at = time.monotonic()

    def frames_per_s(self) -> float:
        """Scored (or archived) frames per second since the last call."""
        now = time.monotonic()
        rate = (self.frames - self._last_frames) / max(now - self._last_at, 1e-9)
        self._last_frames, self._last_at = self.frames, now
        return rate


def faust_credentials(kafka: KafkaSettings) -> Any:
    """Faust broker credentials from LineGuard's Kafka settings, or None."""
    context = None
    if kafka.security_protocol in ("SSL", "SASL_SSL"):
        context = ssl.create_default_context(
            cafile=str(kafka.ssl_cafile) if kafka.ssl_cafile else None
        )
        if kafka.ssl_certfile:
            context.load_cert_chain(
                str(kafka.ssl_certfile), str(kafka.ssl_keyfile) if kafka.ssl_keyfile else None
            )
    if kafka.security_protocol.startswith("SASL"):
        return faust.SASLCredentials(
            username=kafka.sasl_username,
            password=kafka.sasl_password.get_secret_value() if kafka.sasl_password else None,
            mechanism=kafka.sasl_mechanism or "PLAIN",
            ssl_context=context,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None


def ensure_topics(settings: Settings) -> None:
    """Create LineGuard's topics if the cluster does not have them yet.

    Production clusters usually create topics through their own tooling;
    this only fills in what is missing, with the configured partition count.
    """
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    ensure_models_topic(settings)  # compacted, one partition: created apart
    admin = KafkaAdminClient(client_id="lineguard-admin", **settings.kafka.kafka_python_config())
    try:
        existing = set(admin.list_topics())
        wanted = [
            settings.topics.telemetry,
            settings.topics.dead_letter,
            settings.topics.alerts,
            settings.topics.incidents,
            settings.topics.feedback,
        ]
        missing = [
            NewTopic(name, num_partitions=settings.topics.partitions, replication_factor=1)
            for name in wanted
            if name not in existing
        ]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):  # another worker won
                admin.create_topics(missing)
    finally:
        admin.close()


def _records(events: Sequence[Any]) -> list[RawRecord]:
    return [
        RawRecord(
            value=e.message.value,
            key=e.message.key,
            topic=e.message.topic,
            partition=e.message.partition,
            offset=e.message.offset,
        )
        for e in events
    ]


def _value_size(event: Any) -> int:
    return len(event.message.value or b"")


def batches_by_size(items: Sequence[T], max_bytes: int, size: Callable[[T], int]) -> list[list[T]]:
    """Split ``items``, in order, into runs of at most ``max_bytes`` each.

    An item larger than ``max_bytes`` makes a run of its own: it is never
    split or dropped. The worker uses this to bound a micro-batch by the
    bytes of telemetry it holds rather than by its record count alone, since
    a record carries anything from one frame to thousands.
    """
    runs: list[list[T]] = []
    run: list[T] = []
    held = 0
    for item in items:
        n = size(item)
        if run and held + n > max_bytes:
            runs.append(run)
            run, held = [], 0
        run.append(item)
        held += n
    if run:
        runs.append(run)
    return runs


class OrderedStores:
    """Stores that run one at a time, in the order they were queued.

    A micro-batch's store ends with the commit of its offsets, and a Kafka
    commit covers every offset before it: so store N+1 may start only once
    store N is done, whatever finishes first. Scoring queues a store and goes
    on with the next batch; :meth:`queue` waits only while ``pending``
    stores are still unfinished, which bounds the memory of scored batches
    waiting to be stored.
    """

    def __init__(self, pending: int) -> None:
        if pending < 1:
            raise ValueError(f"pending must be >= 1; got {pending!r}")
        self.pending = pending
        self._queued: deque[asyncio.Future[None]] = deque()

    async def queue(self, store: Callable[[], Awaitable[None]]) -> asyncio.Future[None]:
        """Queue ``store()`` behind the stores before it; returns its future (the last to end)."""
        while self._queued and (self._queued[0].done() or len(self._queued) >= self.pending):
            await self._queued.popleft()
        before = self._queued[-1] if self._queued else None

        async def in_turn() -> None:
            if before is not None:
                await before
            await store()

        future = asyncio.ensure_future(in_turn())
        self._queued.append(future)
        return future


def write_bodies(lines: Sequence[str], max_bytes: int = MAX_WRITE_BYTES) -> list[str]:
    """Group line-protocol blocks into request bodies of at most ``max_bytes``.

    InfluxDB 1.x refuses a body over its ``max-body-size`` (25 MB by default)
    by closing the connection, so one unbounded body per micro-batch would
    be retried forever once a backlog made batches large (measured: 200k
    score points, or far fewer raw-telemetry points with 50 fields each).
    Blocks stay whole unless one alone is too large; then it is cut at line
    boundaries. A single line longer than ``max_bytes`` gets a body of its own.
    """
    pieces: list[str] = []
    for block in lines:
        if len(block) <= max_bytes:
            pieces.append(block)
        else:
            pieces.extend(block.split("\n"))
    bodies: list[str] = []
    current: list[str] = []
    size = 0
    for piece in pieces:
        if not piece:
            continue
        if current and size + len(piece) + 1 > max_bytes:
            bodies.append("\n".join(current))
            current, size = [], 0
        current.append(piece)
        size += len(piece) + 1
    if current:
        bodies.append("\n".join(current))
    return bodies


async def _write_until_accepted(
    sink: AsyncInfluxV1Client,
    lines: Sequence[str],
    stats: WorkerStats,
    max_bytes: int = MAX_WRITE_BYTES,
) -> InfluxWriteError | None:
    """Write to InfluxDB, retrying with bounded backoff while it is unreachable.

    The batch goes as bodies of at most ``max_bytes`` (:func:`write_bodies`),
    one request at a time: a fleet's workers already keep InfluxDB's cores
    busy with their own requests, and on the benchmark's host two requests
    in flight per worker gave no measurable gain. Returns the first error
    where InfluxDB refuses the data itself (HTTP 400): such a body will never
    be accepted, so the caller dead-letters the batch instead of blocking the
    line forever; the batch's other bodies are still written (a point
    written twice is simply overwritten).
    """
    refused: InfluxWriteError | None = None
    for body in write_bodies(lines, max_bytes):
        error = await _write_body_until_accepted(sink, body, stats)
        refused = refused or error
    return refused


async def _write_body_until_accepted(
    sink: AsyncInfluxV1Client, body: str, stats: WorkerStats
) -> InfluxWriteError | None:
    delay = RETRY_FIRST_S
    while True:
        try:
            await sink.write(body, precision="ns")
            stats.sink_down = False
            return None
        except InfluxWriteError as exc:
            if exc.status == 400:
                stats.write_errors += 1
                return exc
            error: Exception = exc
        except (InfluxError, OSError, asyncio.TimeoutError) as exc:
            error = exc
        except Exception as exc:  # httpx transport errors and the like
            error = exc
        stats.write_retries += 1
        stats.sink_down, stats.sink_error = True, failure_text(error)
        log.warning(
            "InfluxDB write failed at %s (%s; %d bytes); retrying in %.1f s",
            sink.endpoint,
            stats.sink_error,
            len(body),
            delay,
        )
        await asyncio.sleep(delay)
        delay = min(delay * 2, RETRY_MAX_S)


def create_app(settings: Settings, role: str = "score") -> faust.App:
    """Build the Faust app for one role (``score`` or ``archive``)."""
    if role not in ("score", "archive"):
        raise ValueError(f"role must be 'score' or 'archive'; got {role!r}")
    app_id = settings.worker_id if role == "score" else f"{settings.worker_id}-archive"
    brokers = [f"kafka://{hp.strip()}" for hp in settings.kafka.bootstrap_servers.split(",")]
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        app_id,
        broker=brokers,
        broker_credentials=faust_credentials(settings.kafka),
        value_serializer="raw",
        key_serializer="raw",
        store="memory://",
        datadir=str(settings.state_dir / app_id),
        web_enabled=False,
        # A short session keeps consumer-group joins quick (the broker holds
        # a join for about half the session timeout).
        broker_session_timeout=6.0,
        broker_heartbeat_interval=1.0,
        broker_commit_interval=1.0,
        consumer_auto_offset_reset="earliest",
        topic_partitions=settings.topics.partitions,
        producer_acks=-1,
        # Records Faust may fetch ahead of the agent: its default (4096)
        # held up to 800 MB of large records in a backlog (bench/pipeline.py,
        # 500-frame records: peak RSS 541-581 MB with 20 lines, 411-430 MB
        # with this bound, at about the same rate).
        stream_buffer_maxsize=2 * BATCH_RECORDS,
    )
    # acks=False: Faust must not commit telemetry offsets itself; the worker
    # commits only contiguous, stored progress (see detectors/offsets.py).
    telemetry = app.topic(
        settings.topics.telemetry, key_serializer="raw", value_serializer="raw", acks=False
    )
    dead_letter_topic = app.topic(
        settings.topics.dead_letter, key_serializer="raw", value_serializer="raw"
    )
    alerts_topic = app.topic(settings.topics.alerts, key_serializer="raw", value_serializer="raw")
    incidents_topic = app.topic(
        settings.topics.incidents, key_serializer="raw", value_serializer="raw"
    )
    # Per-line scoring, alert and incident state, changelogged so it survives
    # restarts and rebalances. Keys are the line's Kafka key and the producer's
    # partitioner places them, so a line's state lives in the changelog
    # partition numbered like its telemetry partition.
    line_state: Any = None
    if role == "score":
        line_state = app.Table(
            "line-state",
            default=None,
            key_type=bytes,  # the app's serializers are raw bytes
            value_type=bytes,
            partitions=settings.topics.partitions,
            use_partitioner=True,
        )
    worker_tag = f"{socket.gethostname()}-{os.getpid()}"
    stats = WorkerStats()
    sink = AsyncInfluxV1Client(settings.influx)
    # Scoring workers follow model announcements (promote/rollback/shadow) and
    # store QA feedback, each in a background thread of its own.
    updates = ModelUpdates(settings) if role == "score" else None
    processor = TelemetryProcessor(Registry(settings.registry_dir), updates=updates)

    if updates is not None:

        @app.task
        async def follow_models_and_feedback() -> None:
            updates.start()
            FeedbackConsumer(settings).start()

    async def publish_dead_letters(letters: list[DeadLetter]) -> None:
        pending = []
        for d in letters:
            fitted, headers = fit_for_topic(d)  # an oversized record must not block us
            pending.append(
                await dead_letter_topic.send(key=fitted.key, value=fitted.value, headers=headers)
            )
        for fut in pending:
            await fut  # stored by the broker before the source offset is committed
        stats.dead_letters += len(letters)
        for d in letters:
            log.warning("dead-lettered %s[%d]@%d: %s", d.topic, d.partition, d.offset, d.reason)

    @app.task
    async def prepare() -> None:
        delay = RETRY_FIRST_S
        while True:
            try:
                await sink.create_database()
                return
            except InfluxQueryError as exc:
                # InfluxDB 2.x/3.x answer but manage buckets themselves.
                log.warning("CREATE DATABASE refused (%s); assuming it is managed", exc)
                return
            except Exception as exc:
                stats.sink_down, stats.sink_error = True, failure_text(exc)
                log.warning(
                    "InfluxDB at %s not ready (%s); retrying in %.1f s",
                    sink.endpoint,
                    stats.sink_error,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)

    # The micro-batch being scored (see consume()).
    inflight: dict[str, asyncio.Future[Any]] = {}

    offsets = OffsetTracker()
    # Bumped on every rebalance: a batch taken in an earlier assignment
    # commits nothing (its records are consumed again: duplicates, never loss).
    assignment = {"generation": 0}

    def new_assignment() -> None:
        offsets.forget()
        assignment["generation"] += 1

    background: set[asyncio.Future[Any]] = set()

    @app.on_partitions_assigned.connect
    async def on_assigned(app: faust.App, assigned: Any, **kwargs: Any) -> None:
        _shorten_fetch_wait(app)
        new_assignment()
        if role == "score":
            # Load the models of the lines now ours while the group settles,
            # so their first records are not held up by loading.
            partitions = {tp.partition for tp in assigned if tp.topic == settings.topics.telemetry}
            total = app.consumer.topic_partitions(settings.topics.telemetry)
            if not isinstance(total, int) or total < 1:
                total = settings.topics.partitions
            lines = lines_on_partitions(processor.registry.lines(), partitions, total)
            log.info(
                "telemetry partitions assigned: %s of %d (%d lines with models)",
                sorted(partitions),
                total,
                len(lines),
            )
            task = asyncio.ensure_future(asyncio.to_thread(processor.preload, lines))
            background.add(task)
            task.add_done_callback(background.discard)
            task.add_done_callback(lambda _: freeze_long_lived_objects())

    @app.on_partitions_revoked.connect
    async def on_revoked(app: faust.App, revoked: Any, **kwargs: Any) -> None:
        # Let the batch being scored and the ones being stored finish first
        # (the scoring thread must not run into a half-cleared processor, and
        # the stored batches' line state must reach the table; the last
        # store queued ends after all before it), then forget:
        # another worker may own these lines now; our copy would go stale.
        for name in ("compute", "deliver"):
            task = inflight.get(name)
            if task is not None and not task.done():
                with contextlib.suppress(Exception):
                    await asyncio.shield(task)
        processor.forget()
        new_assignment()

    async def consumer_lag() -> int:
        lag = 0
        consumer = app.consumer
        for tp in consumer.assignment():
            if tp.topic != settings.topics.telemetry:
                continue
            position = await consumer.position(tp)
            if position is not None:
                lag += max(consumer.highwater(tp) - position, 0)
        return lag

    def uncommitted() -> int:
        # Records on the broker past the last committed offset: grows while
        # the sink is down (nothing is committed), whatever was prefetched.
        consumer = app.consumer
        highwaters = {
            tp: consumer.highwater(tp)
            for tp in consumer.assignment()
            if tp.topic == settings.topics.telemetry
        }
        return offsets.uncommitted_from(highwaters)

    async def seek_gaps() -> None:
        for tp, offset in offsets.seeks_due().items():
            first, above = offsets.gaps().get(tp, (offset, None))
            log.warning(
                "offsets %d..%s of %s were not delivered in order; re-fetching from %d",
                first,
                "?" if above is None else above - 1,
                tp,
                offset,
            )
            try:
                await app.consumer.seek(tp, offset)
            except Exception as exc:  # retried by the next call
                log.warning("seek of %s to %d failed: %s", tp, offset, exc)

    @app.timer(interval=1.0)
    async def reseek() -> None:
        # A gap must be re-fetched even when no new record arrives.
        await seek_gaps()

    @app.timer(interval=5.0)
    async def report() -> None:
        try:
            lag = await consumer_lag()
        except Exception:  # not assigned yet, or rebalancing
            lag = -1
        try:
            behind = uncommitted()
        except Exception:
            behind = -1
        fields = {
            "records": stats.records,
            "frames": stats.frames,
            "dead_letters": stats.dead_letters,
            "alerts": stats.alerts,
            "incidents": stats.incidents,
            "write_retries": stats.write_retries,
            "write_errors": stats.write_errors,
            "batch_ms": stats.batch_ms,
            "frames_per_s": stats.frames_per_s(),
            "lag": lag,
            "uncommitted": behind,
            "duplicates": stats.duplicates,
            "historical_alerts_suppressed": stats.historical_alerts_suppressed,
            "uptime_s": time.monotonic() - stats.started,
            "sink_down": int(stats.sink_down),
            "imputed_frames": sum(stats.imputed.values()),
            "models": ",".join(f"{k}:{v}" for k, v in sorted(processor.active_models().items())),
        }
        now_ns = time.time_ns()
        point = encode_point(
            WORKER_MEASUREMENT, {"worker": worker_tag, "role": role}, fields, now_ns
        )
        # Per line and sensor: the frames scored with an imputed reading.
        imputed = [
            encode_point(
                IMPUTED_MEASUREMENT,
                {"worker": worker_tag, "line": line, "sensor": sensor},
                {"frames": frames},
                now_ns,
            )
            for (line, sensor), frames in sorted(stats.imputed.items())
        ]
        try:
            await sink.write([point, *imputed])
        except Exception as exc:  # metrics must never stop the worker
            log.debug("worker metrics not written: %s", exc)
        log.info("%s: %s", role, {k: v for k, v in fields.items() if k != "models"})
        if stats.sink_down:
            log.warning("InfluxDB at %s unreachable: %s", sink.endpoint, stats.sink_error)

    async def compute_score(records: list[RawRecord]) -> tuple[Any, dict[str, bytes]]:
        """Decode and score a micro-batch (CPU, in a thread); nothing is sent yet."""
        if updates is not None and not updates.caught_up():
            # After a start, know every line's announced version before scoring.
            await asyncio.to_thread(updates.wait_caught_up, 15.0)
        # Resume lines this worker has not seen since it started or was
        # assigned their partitions.
        for key in {r.key for r in records if r.key}:
            line = key.decode("utf-8", "replace")
            if not processor.knows(line):
                saved = line_state.get(key)
                if saved:
                    processor.restore_state(line, orjson.loads(saved))
        # Scoring is CPU-bound: off the event loop, so heartbeats keep flowing.
        computing = asyncio.ensure_future(asyncio.to_thread(processor.process, records))
        inflight["compute"] = computing
        outcome = await computing
        # Snapshot the line state now: a rebalance can make the processor
        # forget these lines while the writes below wait, and exporting then
        # would store an empty state over the line's real one.
        states = {line: orjson.dumps(processor.export_state(line)) for line in outcome.lines}
        return outcome, states

    async def deliver_score(
        records: list[RawRecord], outcome: Any, states: dict[str, bytes]
    ) -> None:
        """Store a scored micro-batch: InfluxDB, dead letters, alerts, line state."""
        refused = await _write_until_accepted(sink, outcome.influx_lines, stats)
        letters = list(outcome.dead_letters)
        if refused is not None:
            reason = f"InfluxDB refused the batch's points: {refused}"
            scored = {(r.partition, r.offset) for r in records} - {
                (d.partition, d.offset) for d in letters
            }
            letters += [
                DeadLetter(reason, "sink", r.topic, r.partition, r.offset, r.key, r.value)
                for r in records
                if (r.partition, r.offset) in scored
            ]
        if letters:
            await publish_dead_letters(letters)
        # Straight to the producer: Faust's Topic.send wraps every record in
        # futures and callbacks of its own, which made these sends a tenth of
        # the worker's time on a fleet with frequent alerts.
        producer = app.producer
        pending = [
            await producer.send(topic, key, orjson.dumps(value), None, None, None)
            for topic, records in (
                (alerts_topic.get_topic_name(), outcome.alerts),
                (incidents_topic.get_topic_name(), outcome.incidents),
            )
            for key, value in records
        ]
        for fut in pending:
            await fut
        for line, state in states.items():
            # Revoked meanwhile: the new owner replays this uncommitted batch
            # from the table's previous state, so leave that state alone.
            if processor.knows(line):
                line_state[line.encode()] = state
        stats.alerts += len(outcome.alerts)
        stats.incidents += len(outcome.incidents)
        stats.frames += outcome.frames_scored
        stats.duplicates += outcome.duplicates
        stats.historical_alerts_suppressed += outcome.historical_alerts_suppressed
        for key, frames in outcome.imputed.items():
            stats.imputed[key] = stats.imputed.get(key, 0) + frames

    async def store_score(records: list[RawRecord], prepared: Any) -> None:
        outcome, states = prepared
        await deliver_score(records, outcome, states)

    async def prepare_archive(records: list[RawRecord]) -> Any:
        return archive_lines(records)[0]

    async def store_archive(records: list[RawRecord], lines: Any) -> None:
        refused = await _write_until_accepted(sink, lines, stats)
        if refused is not None:
            log.error("InfluxDB refused raw telemetry of %d records: %s", len(records), refused)
        stats.frames += sum(line.count("\n") + 1 for line in lines)

    prepare_batch, store_batch = (
        (compute_score, store_score) if role == "score" else (prepare_archive, store_archive)
    )

    def crash() -> None:
        # A bug must not turn into silent loss, nor into a silent stall of a
        # batch that is never committed: exit at once, like a crash. Nothing
        # past the last stored batch was committed, so the supervisor's
        # restart consumes the failed batch again.
        log.exception("%s batch failed; stopping the worker uncommitted", role)
        for handler in logging.getLogger().handlers:
            handler.flush()
        os._exit(70)  # EX_SOFTWARE

    async def store_and_commit(
        records: list[RawRecord],
        prepared: Any,
        batch_offsets: dict[Any, int],
        generation: int,
        started: float,
    ) -> None:
        try:
            await store_batch(records, prepared)
        except Exception:
            crash()
        if generation == assignment["generation"]:
            await _commit(app, offsets, batch_offsets)
        stats.records += len(records)
        stats.batches += 1
        stats.batch_ms = 1e3 * (time.perf_counter() - started)

    @app.agent(telemetry, name=f"lineguard-{role}")
    async def consume(stream: Any) -> None:
        # Pipelined: batch N is decoded and scored while batches N-1 and N-2
        # are being stored. Stores run one at a time in batch order and each
        # commits only its own offsets after InfluxDB and the broker accepted
        # it. Faust's acknowledgements commit nothing for telemetry
        # (acks=False), so a batch is acknowledged as soon as it is scored; a
        # rebalance still waits for the batches being stored (see on_revoked).
        stores = OrderedStores(STORES_PENDING)
        async for taken_events in stream.take_events(BATCH_RECORDS, within=BATCH_WINDOW_S):
            # A take of large records is scored and stored as several
            # batches, so that storing one overlaps scoring the next.
            for events in batches_by_size(taken_events, BATCH_BYTES, _value_size):
                await step(stream, events, stores)

    async def step(stream: Any, events: list[Any], stores: OrderedStores) -> None:
        """Score one batch, then queue its store behind the batches before it."""
        started = time.perf_counter()
        generation = assignment["generation"]
        records: list[RawRecord] = []
        batch_offsets: dict[Any, int] = {}
        try:
            unknown = {e.message.tp for e in events if not offsets.knows(e.message.tp)}
            for tp, committed in (await _committed_offsets(app, unknown)).items():
                offsets.start(tp, committed)
            taken = [
                e for e in events if offsets.admit(e.message.tp, e.message.offset) is Admission.TAKE
            ]
            # The unbroken progress up to this batch: committed once this
            # batch is stored, and so is everything before it.
            batch_offsets = offsets.committable()
            records = _records(taken)
            prepared = await prepare_batch(records) if records else None
        except Exception:
            crash()
        for event in events:
            await stream.ack(event)
        if records:
            # Waits only while STORES_PENDING stores are unfinished; the
            # store queued last ends after every one before it.
            inflight["deliver"] = await stores.queue(
                lambda: store_and_commit(records, prepared, batch_offsets, generation, started)
            )
        await seek_gaps()

    app.lineguard_stats = stats  # type: ignore[attr-defined]
    app.lineguard_processor = processor  # type: ignore[attr-defined]
    return app


async def _committed_offsets(app: faust.App, tps: set[Any]) -> dict[Any, int]:
    """Each partition's committed offset, or its earliest offset when none is committed.

    Retries with bounded backoff while the broker does not answer.
    """
    if not tps:
        return {}
    from aiokafka import TopicPartition

    thread = app.consumer._thread
    consumer = thread._ensure_consumer()
    found: dict[Any, int] = {}
    delay = RETRY_FIRST_S
    for tp in tps:
        while tp not in found:
            try:
                committed = await thread.call_thread(
                    consumer.committed, TopicPartition(tp.topic, tp.partition)
                )
                if committed is None or committed < 0:
                    # Nothing committed yet: the group starts at the log start
                    # (auto_offset_reset=earliest), which retention may have moved.
                    earliest = await app.consumer.earliest_offsets(tp)
                    committed = max(int(next(iter(earliest.values()), 0) or 0), 0)
                found[tp] = int(committed)
            except Exception as exc:  # broker unreachable: bounded backoff, no busy loop
                log.warning("committed offset of %s unknown (%s); retry in %.1f s", tp, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)
    return found


async def _commit(app: faust.App, offsets: OffsetTracker, pending: dict[Any, int]) -> None:
    """Commit a stored batch's offsets; a failure is made good by the next batch's commit."""
    if not pending:
        return
    from aiokafka import TopicPartition
    from aiokafka.structs import OffsetAndMetadata

    thread = app.consumer._thread
    consumer = thread._ensure_consumer()
    assigned = consumer.assignment()
    request = {
        TopicPartition(tp.topic, tp.partition): OffsetAndMetadata(offset, "")
        for tp, offset in pending.items()
        if TopicPartition(tp.topic, tp.partition) in assigned
    }
    if not request:
        return
    try:
        # The batch's line state goes to the table's changelog through the
        # producer's buffer: it must be on the broker before the offsets
        # that depend on it are, or a crash would resume from an older state.
        await app.producer.flush()
        await thread.call_thread(consumer.commit, request)
    except Exception as exc:  # rebalancing, coordinator moved: the next batch retries
        log.warning("offset commit failed (%s); retrying after the next batch", exc)
        return
    offsets.committed({tp: o for tp, o in pending.items() if (tp.topic, tp.partition) in request})


def lines_on_partitions(lines: list[str], partitions: set[int], total: int) -> list[str]:
    """The lines whose telemetry lands on ``partitions``.

    Gateways key records by line and use Kafka's default partitioner
    (murmur2 of the key, as the Java client and kafka-python do), so a
    line's partition is known without reading its records.
    """
    from kafka.partitioner.default import murmur2

    return [
        line
        for line in lines
        if (murmur2(line.encode("utf-8")) & 0x7FFFFFFF) % max(total, 1) in partitions
    ]


def _shorten_fetch_wait(app: faust.App) -> None:
    """Set the aiokafka fetcher's max wait to :data:`FETCH_MAX_WAIT_MS`.

    Faust passes ``fetch_max_wait_ms=1500`` with no setting to change it, so
    the running consumer's fetcher is adjusted in place (a private attribute:
    skipped with a debug line if a Faust/aiokafka upgrade moves it).
    """
    try:
        fetcher = app.consumer._thread._ensure_consumer()._fetcher
        fetcher._fetch_max_wait_ms = FETCH_MAX_WAIT_MS
    except AttributeError as exc:
        log.debug("fetch wait left at Faust's default: %s", exc)


def freeze_long_lived_objects() -> None:
    """Keep the objects alive now out of every later garbage collection.

    After start-up a worker holds some 200k objects that live as long as it
    does (Faust, aiokafka, the lines' models), and each full collection
    walked all of them: about 0.1 s with the scoring thread stopped, several
    times a minute under load (measured with ``gc.callbacks``: 0.26 s of a
    5 s backlog run). Frozen, a collection only visits what was allocated
    since. Unfreezing first lets the collection free what a rebalance or a
    model reload let go.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def run_worker(settings: Settings, role: str = "score", loglevel: str = "INFO") -> None:
    """Run a worker in the foreground until SIGTERM or Ctrl-C."""
    from threadpoolctl import threadpool_limits

    # One BLAS thread: a micro-batch's products are small, and threads that
    # spin-wait for each other cost more than they give once the broker,
    # InfluxDB and the event loop want the same cores (measured: BLAS was a
    # fifth of a worker's samples with OpenBLAS's default of one per core).
    # A fleet scales out with worker processes instead.
    threadpool_limits(limits=1, user_api="blas")
    warm_up()
    ensure_topics(settings)
    app = create_app(settings, role)
    worker = faust.Worker(app, loglevel=loglevel, quiet=True)
    worker.execute_from_commandline()
