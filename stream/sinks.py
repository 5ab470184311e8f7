"""The real sinks of the delivery protocol, one per step of its ``STEPS``.

Each takes what it writes to from its constructor (an InfluxDB client, a
producer with Faust's ``send(topic, key, value, partition, timestamp,
headers)`` signature, a commit function), so the protocol's order and its
failure handling are tested with in-memory stand-ins and run with the real
clients unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Hashable
from typing import Any

import orjson

from lineguard.ingest.dead_letter import DeadLetter, fit_for_topic
from lineguard.stream.protocol import Delivery, Sink
from lineguard.stream.state import LineStates
from lineguard.stream.stats import WorkerStats
from lineguard.stream.writes import write_until_accepted

__all__ = [
    "CommitSink",
    "DeadLetterSink",
    "EventsSink",
    "LineStateSink",
    "PointsSink",
    "ProducerFlushSink",
    "delivery_sinks",
]

log = logging.getLogger(__name__)


class _Staged:
    """Holds the delivery between ``add`` and ``flush``."""

    name = ""

    def __init__(self) -> None:
        self._delivery: Delivery | None = None

    async def setup(self) -> None:
        return None

    def add(self, delivery: Delivery) -> None:
        self._delivery = delivery

    def _take(self) -> Delivery:
        delivery, self._delivery = self._delivery, None
        if delivery is None:
            raise RuntimeError(f"{self.name}: flush() without add(); expected add(delivery) first")
        return delivery


class PointsSink(_Staged):
    """Score points to InfluxDB; a batch InfluxDB refuses (HTTP 400) becomes dead letters."""

    name = "points"

    def __init__(self, client: Any, stats: WorkerStats) -> None:
        super().__init__()
        self.client = client
        self.stats = stats

    async def flush(self) -> None:
        delivery = self._take()
        refused = await write_until_accepted(self.client, delivery.points, self.stats)
        if refused is None:
            return
        # Such a body will never be accepted: dead-letter the batch's records
        # (those not already dead letters) instead of blocking the line.
        reason = f"InfluxDB refused the batch's points: {refused}"
        lettered = {(d.partition, d.offset) for d in delivery.dead_letters}
        delivery.dead_letters.extend(
            DeadLetter(reason, "sink", r.topic, r.partition, r.offset, r.key, r.value)
            for r in delivery.records
            if (r.partition, r.offset) not in lettered
        )


class DeadLetterSink(_Staged):
    """Bad records to the dead-letter topic, with their reason in headers."""

    name = "dead_letters"

    def __init__(self, producer: Any, topic: str) -> None:
        super().__init__()
        self.producer = producer
        self.topic = topic

    async def flush(self) -> None:
        delivery = self._take()
        acks = []
        for d in delivery.dead_letters:
            fitted, headers = fit_for_topic(d)  # an oversized record must not block us
            acks.append(
                await self.producer.send(self.topic, fitted.key, fitted.value, None, None, headers)
            )
        for ack in acks:
            await ack  # stored by the broker before the source offset is committed
        for d in delivery.dead_letters:
            log.warning("dead-lettered %s[%d]@%d: %s", d.topic, d.partition, d.offset, d.reason)
        delivery.done["dead_letters"] = len(delivery.dead_letters)


class EventsSink(_Staged):
    """Alert edges and incident messages to their topics."""

    name = "events"

    def __init__(self, producer: Any, alerts_topic: str, incidents_topic: str) -> None:
        super().__init__()
        self.producer = producer
        self.alerts_topic = alerts_topic
        self.incidents_topic = incidents_topic

    async def flush(self) -> None:
        delivery = self._take()
        acks = []
        for topic, messages in (
            (self.alerts_topic, delivery.alerts),
            (self.incidents_topic, delivery.incidents),
        ):
            for key, value in messages:
                acks.append(
                    await self.producer.send(topic, key, orjson.dumps(value), None, None, None)
                )
        for ack in acks:
            await ack
        delivery.done["alerts"] = len(delivery.alerts)
        delivery.done["incidents"] = len(delivery.incidents)


class LineStateSink(_Staged):
    """Each scored line's state to the state topic (see :mod:`lineguard.stream.state`)."""

    name = "line_state"

    def __init__(self, producer: Any, topic: str, states: LineStates) -> None:
        super().__init__()
        self.producer = producer
        self.topic = topic
        self.states = states

    async def flush(self) -> None:
        delivery = self._take()
        if not delivery.still_current():
            return  # an earlier assignment's batch: the new owner replays it
        ends = {tp.partition: offset for tp, offset in delivery.offsets.items()}
        acks = []
        for line, (partition, snapshot) in delivery.states.items():
            at = ends.get(partition)
            if at is None:
                raise RuntimeError(
                    f"line {line!r} is on partition {partition}, expected one of the batch's "
                    f"partitions {sorted(ends)}"
                )
            value = self.states.record(line, partition, at, snapshot)
            acks.append(
                await self.producer.send(self.topic, line.encode(), value, partition, None, None)
            )
        for ack in acks:
            await ack
        delivery.done["states"] = len(acks)


class ProducerFlushSink(_Staged):
    """Nothing the producer buffers is left behind before the commit."""

    name = "producer_flush"

    def __init__(self, producer: Any) -> None:
        super().__init__()
        self.producer = producer

    async def flush(self) -> None:
        self._take()
        await self.producer.flush()


class CommitSink(_Staged):
    """The batch's offsets, once everything before is durable.

    A failed commit request is not a failure of the batch: everything it
    produced is stored, and the next batch's commit covers its offsets too
    (a commit covers every offset below it). It is logged and counted, and
    the line states it would have confirmed stay pending, so the state
    records written meanwhile still carry the last *committed* snapshot.
    """

    name = "commit"

    def __init__(
        self,
        commit: Callable[[dict[Hashable, int]], Awaitable[Any]],
        on_committed: Callable[[dict[Hashable, int]], None],
        stats: WorkerStats,
    ) -> None:
        super().__init__()
        self.commit = commit
        self.on_committed = on_committed
        self.stats = stats

    async def flush(self) -> None:
        delivery = self._take()
        if not delivery.still_current() or not delivery.offsets:
            return
        try:
            outcome = await self.commit(delivery.offsets)
        except Exception as exc:  # rebalancing, coordinator moved: the next batch retries
            self.stats.commit_failures += 1
            self.stats.commit_error = _error_chain(exc)
            log.warning(
                "offset commit failed (%s: %s); the next batch retries", type(exc).__name__, exc
            )
            return
        if outcome.not_assigned:
            log.info("not committed, partitions no longer assigned: %s", outcome.not_assigned)
        if outcome.committed:
            self.on_committed(outcome.committed)
        delivery.done["committed"] = len(outcome.committed)


def _error_chain(exc: BaseException) -> str:
    """``exc``'s type and those it was raised from, outermost first.

    aiokafka raises ``CommitFailedError`` from the broker's answer
    (``UnknownMemberIdError``, ``IllegalGenerationError``,
    ``RebalanceInProgressError``); the chain keeps that answer visible.
    """
    names, seen = [], set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        names.append(type(current).__name__)
        current = current.__cause__ or current.__context__
    return " <- ".join(names)


def delivery_sinks(
    *,
    influx: Any,
    producer: Any,
    topics: dict[str, str],
    states: LineStates,
    commit: Callable[[dict[Hashable, int]], Awaitable[Any]],
    on_committed: Callable[[dict[Hashable, int]], None],
    stats: WorkerStats,
) -> list[Sink]:
    """The protocol's sinks in its order; ``topics``: dead_letter, alerts, incidents, state."""
    return [
        PointsSink(influx, stats),
        DeadLetterSink(producer, topics["dead_letter"]),
        EventsSink(producer, topics["alerts"], topics["incidents"]),
        LineStateSink(producer, topics["state"], states),
        ProducerFlushSink(producer),
        CommitSink(commit, on_committed, stats),
    ]
