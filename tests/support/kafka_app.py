"""The few parts of a Faust app the worker's Kafka code touches, over real aiokafka clients.

Test support, not shipped. :mod:`lineguard.stream.kafka_internals` and
:class:`~lineguard.stream.loop.ConsumeLoop` reach Kafka through
``app.consumer._thread`` (Faust runs aiokafka's consumer in a thread of its
own: ``_ensure_consumer()`` and ``call_thread(fn, *args)``),
``app.consumer.earliest_offsets``, ``app.consumer.seek`` and
``app.producer``. These stand-ins pass the calls straight to a real
``AIOKafkaConsumer`` and ``AIOKafkaProducer`` on the test's event loop, so
the requests, the group, the commits and the network cut are all real; only
Faust's thread hop is left out.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["FaustLikeApp", "FaustLikeEvent", "events_of"]


class _ConsumerThread:
    def __init__(self, consumer: Any) -> None:
        self.consumer = consumer

    def _ensure_consumer(self) -> Any:
        return self.consumer

    async def call_thread(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        return await fn(*args)


class _Consumer:
    def __init__(self, consumer: Any) -> None:
        self._thread = _ConsumerThread(consumer)
        self.aiokafka = consumer
        #: Called before each earliest-offset request (a test cuts the path there).
        self.before_earliest: Callable[[], None] | None = None
        self.earliest_failures = 0
        #: (partition, offset) of every seek the worker's code asked for.
        self.seeks: list[tuple[int, int]] = []

    async def earliest_offsets(self, *tps: Any) -> dict[Any, int]:
        from aiokafka import TopicPartition

        if self.before_earliest is not None:
            self.before_earliest()
        wanted = {tp: TopicPartition(tp.topic, tp.partition) for tp in tps}
        try:
            found = await self.aiokafka.beginning_offsets(list(wanted.values()))
        except Exception:
            self.earliest_failures += 1
            raise
        return {tp: found[key] for tp, key in wanted.items()}

    async def seek(self, tp: Any, offset: int) -> None:
        from aiokafka import TopicPartition

        self.seeks.append((tp.partition, offset))
        self.aiokafka.seek(TopicPartition(tp.topic, tp.partition), offset)


class _Producer:
    """aiokafka's producer behind Faust's send(topic, key, value, partition, timestamp, headers)."""

    def __init__(self, producer: Any) -> None:
        self.producer = producer

    async def send(self, topic, key, value, partition, timestamp, headers) -> Any:
        return await self.producer.send(
            topic, value, key=key, partition=partition, headers=list((headers or {}).items())
        )

    async def flush(self) -> None:
        await self.producer.flush()


class FaustLikeApp:
    """``app.consumer`` and ``app.producer`` as the worker's Kafka code uses them."""

    def __init__(self, consumer: Any, producer: Any = None) -> None:
        self.consumer = _Consumer(consumer)
        self.producer = _Producer(producer) if producer is not None else None


@dataclass(frozen=True)
class _Message:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None

    @property
    def tp(self) -> Any:
        from aiokafka import TopicPartition

        return TopicPartition(self.topic, self.partition)


@dataclass(frozen=True)
class FaustLikeEvent:
    """What the loop reads of a Faust event: its message."""

    message: _Message


def events_of(records: dict[Any, list[Any]]) -> list[FaustLikeEvent]:
    """aiokafka's ``getmany()`` result as events, in partition then offset order."""
    return [
        FaustLikeEvent(_Message(r.topic, r.partition, r.offset, r.key, r.value))
        for rs in records.values()
        for r in rs
    ]
