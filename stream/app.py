"""Wiring: the Faust app of one worker role, its topics, callbacks and timers.

Two roles share this code: ``score`` (the scoring worker, consumer group
``<worker_id>``) and ``archive`` (stores raw sensor values, its own consumer
group, so the archive never slows scoring). Nothing here decides anything:
the loop (:mod:`lineguard.stream.loop`) consumes, the protocol
(:mod:`lineguard.stream.protocol`) stores and commits, the state module
restores, model serving follows the models topic.

There are no Faust tables: line state goes to a state topic the worker reads
itself on assignment, in bounded time (Faust's table recovery could sit for
minutes after a rebalance; see ``docs/reliability.md``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from typing import Any

import faust

from lineguard.contracts import IMPUTED_MEASUREMENT
from lineguard.influx import AsyncInfluxV1Client, InfluxQueryError, encode_point, failure_text
from lineguard.retry import Backoff, async_retrying
from lineguard.settings import Settings
from lineguard.stream import kafka_internals
from lineguard.stream.limits import BATCH_RECORDS, RETRY_FIRST_S, RETRY_MAX_S
from lineguard.stream.loop import ConsumeLoop
from lineguard.stream.serving import ModelServing
from lineguard.stream.sinks import delivery_sinks
from lineguard.stream.state import LineStates, state_topic_name
from lineguard.stream.stats import WORKER_MEASUREMENT, WorkerStats, write_stats_file
from lineguard.stream.worker import faust_credentials

__all__ = ["create_app"]

log = logging.getLogger(__name__)

#: Bound on one partition's position while computing the reported lag.
LAG_POSITION_S = 1.0


def _faust_app(settings: Settings, app_id: str) -> faust.App:
    brokers = [f"kafka://{hp.strip()}" for hp in settings.kafka.bootstrap_servers.split(",")]
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    return faust.App(
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


def _state_consumer(settings: Settings) -> Any:
    from kafka import KafkaConsumer

    return KafkaConsumer(
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_bytes=64 * 1024 * 1024,
        max_partition_fetch_bytes=32 * 1024 * 1024,
        **settings.kafka.kafka_python_config(),
    )


def create_app(settings: Settings, role: str = "score") -> faust.App:
    """Build the Faust app for one role (``score`` or ``archive``)."""
    if role not in ("score", "archive"):
        raise ValueError(f"role must be 'score' or 'archive'; got {role!r}")
    app = _faust_app(
        settings, settings.worker_id if role == "score" else f"{settings.worker_id}-archive"
    )
    # acks=False: Faust must not commit telemetry offsets itself; the worker
    # commits only contiguous, stored progress (see detectors/offsets.py).
    telemetry = app.topic(
        settings.topics.telemetry, key_serializer="raw", value_serializer="raw", acks=False
    )
    stats = WorkerStats()
    influx = AsyncInfluxV1Client(settings.influx)
    states = LineStates()
    serving = ModelServing(settings) if role == "score" else None
    state_topic = state_topic_name(settings.worker_id)
    loop: ConsumeLoop

    async def commit(offsets: dict[Any, int]) -> Any:
        return await kafka_internals.commit(app, offsets)

    sinks = delivery_sinks(
        influx=influx,
        producer=_LazyProducer(app),
        topics={
            "dead_letter": settings.topics.dead_letter,
            "alerts": settings.topics.alerts,
            "incidents": settings.topics.incidents,
            "state": state_topic,
        },
        states=states,
        commit=commit,
        on_committed=lambda offsets: loop.on_committed(offsets),
        stats=stats,
    )
    loop = ConsumeLoop(
        app,
        role,
        sinks,
        stats,
        states,
        serving=serving,
        state_topic=state_topic if serving else None,
        state_consumer=(lambda: _state_consumer(settings)) if serving else None,
        influx=influx,
        worker_tag=f"{socket.gethostname()}-{os.getpid()}",
        on_stored=(lambda: _write_stats(settings, app, loop)) if settings.stats_file else None,
    )
    _connect(app, settings, telemetry, loop, influx, role)
    app.lineguard_stats = stats  # type: ignore[attr-defined]
    app.lineguard_processor = serving.processor if serving else None  # type: ignore[attr-defined]
    return app


class _LazyProducer:
    """The app's producer, looked up when used (Faust creates it at start)."""

    def __init__(self, app: faust.App) -> None:
        self.app = app

    async def send(self, *args: Any) -> Any:
        # Straight to the producer: Faust's Topic.send wraps every record in
        # futures and callbacks of its own (a tenth of the worker's time on a
        # fleet with frequent alerts).
        return await self.app.producer.send(*args)

    async def flush(self) -> None:
        await self.app.producer.flush()


def _connect(
    app: faust.App,
    settings: Settings,
    telemetry: Any,
    loop: ConsumeLoop,
    influx: AsyncInfluxV1Client,
    role: str,
) -> None:
    """Register the agent, the rebalance callbacks and the timers."""
    app.agent(telemetry, name=f"lineguard-{role}")(loop.consume)

    @app.task
    async def prepare() -> None:
        if loop.serving is not None:
            loop.serving.start()
        await _create_database(influx, loop.stats)

    @app.on_partitions_assigned.connect
    async def on_assigned(app: faust.App, assigned: Any, **kwargs: Any) -> None:
        partitions = {tp.partition for tp in assigned if tp.topic == settings.topics.telemetry}
        total = app.consumer.topic_partitions(settings.topics.telemetry)
        if not isinstance(total, int) or total < 1:
            total = settings.topics.partitions
        loop.assigned(partitions, total)
        if settings.stats_file is not None:
            # The assignment counter is what a supervisor (or a test) waits on
            # after a rebalance: written now, not at the next report tick.
            try:
                _write_stats(settings, app, loop)
            except OSError as exc:  # metrics must never stop the worker
                log.debug("stats file not written: %s", exc)

    @app.on_partitions_revoked.connect
    async def on_revoked(app: faust.App, revoked: Any, **kwargs: Any) -> None:
        await loop.revoked()

    @app.timer(interval=1.0)
    async def reseek() -> None:
        # A gap must be re-fetched even when no new record arrives.
        await loop.seek_gaps()

    @app.timer(interval=5.0)
    async def report() -> None:
        fields = _report_fields(app, settings, loop)
        fields["lag"] = await _lag(app, settings)
        now_ns = time.time_ns()
        point = encode_point(
            WORKER_MEASUREMENT, {"worker": loop.worker_tag, "role": role}, fields, now_ns
        )
        # Per line and sensor: the frames scored with an imputed reading.
        imputed = [
            encode_point(
                IMPUTED_MEASUREMENT,
                {"worker": loop.worker_tag, "line": line, "sensor": sensor},
                {"frames": frames},
                now_ns,
            )
            for (line, sensor), frames in sorted(loop.stats.imputed.items())
        ]
        try:
            await influx.write([point, *imputed])
        except Exception as exc:  # metrics must never stop the worker
            log.debug("worker metrics not written: %s", exc)
        if settings.stats_file is not None:
            try:
                write_stats_file(settings.stats_file, fields)
            except OSError as exc:  # metrics must never stop the worker
                log.debug("stats file not written: %s", exc)
        log.info("%s: %s", role, {k: v for k, v in fields.items() if k != "models"})
        if loop.stats.sink_down:
            log.warning("InfluxDB at %s unreachable: %s", influx.endpoint, loop.stats.sink_error)


async def _create_database(influx: AsyncInfluxV1Client, stats: WorkerStats) -> None:
    def down(exc: BaseException, _delay: float) -> None:
        stats.sink_down, stats.sink_error = True, failure_text(exc)

    # Start-up waits for InfluxDB as long as it takes (a stack starting
    # together), logging each attempt.
    async for attempt in async_retrying(
        f"InfluxDB at {influx.endpoint} (CREATE DATABASE)",
        Backoff(RETRY_FIRST_S, RETRY_MAX_S),
        describe=failure_text,
        on_retry=down,
        logger=log,
    ):
        with attempt:
            try:
                await influx.create_database()
            except InfluxQueryError as exc:
                # InfluxDB 2.x/3.x answer but manage buckets themselves.
                log.warning("CREATE DATABASE refused (%s); assuming it is managed", exc)


async def _lag(app: faust.App, settings: Settings) -> int:
    """Records on the broker past the fetch position (-1 while rebalancing or unreachable)."""
    try:
        lag = 0
        consumer = app.consumer
        for tp in consumer.assignment():
            if tp.topic != settings.topics.telemetry:
                continue
            # Bounded: while the broker is unreachable a position can wait for
            # it, and the report (the stats file among it) must go on.
            position = await asyncio.wait_for(consumer.position(tp), LAG_POSITION_S)
            if position is not None:
                lag += max(consumer.highwater(tp) - position, 0)
        return lag
    except Exception:  # not assigned yet, or rebalancing
        return -1


def _write_stats(settings: Settings, app: faust.App, loop: ConsumeLoop) -> None:
    """After a stored batch: the counters to the stats file (not the frame rate's window)."""
    assert settings.stats_file is not None
    write_stats_file(settings.stats_file, _report_fields(app, settings, loop, rate=False))


def _report_fields(
    app: faust.App, settings: Settings, loop: ConsumeLoop, rate: bool = True
) -> dict[str, Any]:
    """The worker's counters; ``rate=False`` leaves the frame rate's window alone."""
    consumer = app.consumer
    try:
        highwaters = {
            tp: consumer.highwater(tp)
            for tp in consumer.assignment()
            if tp.topic == settings.topics.telemetry
        }
        # Records on the broker past the last committed offset: grows while
        # the sink is down (nothing is committed), whatever was prefetched.
        behind = loop.offsets.uncommitted_from(highwaters)
    except Exception:  # not assigned yet, or rebalancing
        behind = -1
    s = loop.stats
    processor = loop.serving.processor if loop.serving else None
    models = processor.active_models() if processor else {}
    updates = loop.serving.updates if loop.serving else None
    fields: dict[str, Any] = {
        "records": s.records,
        "frames": s.frames,
        "dead_letters": s.dead_letters,
        "alerts": s.alerts,
        "incidents": s.incidents,
        "write_retries": s.write_retries,
        "write_errors": s.write_errors,
        "commit_failures": s.commit_failures,
        "commit_error": s.commit_error,
        "offset_lookup_retries": s.offset_lookup_retries,
        "assignments": s.assignments,
        "model_follower_reconnects": updates.reconnects if updates is not None else 0,
        "announced": updates.announced() if updates is not None else "",
        "batch_ms": s.batch_ms,
        "uncommitted": behind,
        "duplicates": s.duplicates,
        "historical_alerts_suppressed": s.historical_alerts_suppressed,
        "sink_down": int(s.sink_down),
        "imputed_frames": sum(s.imputed.values()),
        "state_restores": s.state_restores,
        "lines_restored": s.lines_restored,
        "state_restore_timeouts": s.state_restore_timeouts,
        "state_ahead": s.state_ahead,
        "uptime_s": time.monotonic() - s.started,
        "models": ",".join(f"{k}:{v}" for k, v in sorted(models.items())),
    }
    if rate:
        fields["frames_per_s"] = s.frames_per_s()
    return fields
