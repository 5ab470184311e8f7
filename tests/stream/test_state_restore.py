"""Line-state restore against the real broker: read to the barrier, choose by the committed offset.

Nothing is mocked: records go to a real state topic on the local Tansu
broker through aiokafka (the producer Faust wraps), and :func:`restore`
reads them back with kafka-python, as the worker does. The broker outage is
a cut network path (the stack's pausable proxy).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import pytest

from lineguard.settings import Settings, TopicSettings
from lineguard.stream.state import encode_record, restore, state_topic_name
from lineguard.stream.worker import ensure_topics

pytestmark = pytest.mark.integration


class FaustLikeProducer:
    """aiokafka's producer with Faust's ``send`` signature (what the worker passes)."""

    def __init__(self, producer) -> None:
        self.producer = producer

    async def send(self, topic, key, value, partition, timestamp, headers):
        return await self.producer.send(topic, value, key=key, partition=partition)


def _settings(stack) -> Settings:
    tag = uuid.uuid4().hex[:8]
    return Settings(
        worker_id=f"restore-{tag}",
        kafka=stack.kafka_settings(),
        topics=TopicSettings(telemetry=f"telemetry-{tag}", partitions=2),
    )


def _consumer(settings: Settings):
    from kafka import KafkaConsumer

    return KafkaConsumer(
        group_id=None, enable_auto_commit=False, **settings.kafka.kafka_python_config()
    )


async def _restore(settings: Settings, writes, committed, timeout_s: float, pause=None):
    from aiokafka import AIOKafkaProducer

    topic = state_topic_name(settings.worker_id)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers, acks="all")
    await producer.start()
    consumer = await asyncio.to_thread(_consumer, settings)
    try:
        for key, value, partition in writes:
            await (await producer.send(topic, value, key=key, partition=partition))
        if pause is not None:
            pause()
        return await restore(FaustLikeProducer(producer), consumer, topic, committed, timeout_s)
    finally:
        consumer.close()
        # Bounded: with the path cut, stopping cannot reach the broker.
        with contextlib.suppress(asyncio.TimeoutError, OSError):
            await asyncio.wait_for(producer.stop(), 5)


def test_each_line_resumes_from_the_snapshot_valid_at_its_committed_offset(local_stack) -> None:
    settings = _settings(local_stack)
    ensure_topics(settings)
    writes = [
        # line a, partition 0: batches ending at 10 and 20 committed, the last one
        # (ending at 30) written but its commit never happened.
        (b"a", encode_record(10, b"a10", -1, None), 0),
        (b"a", encode_record(20, b"a20", 10, b"a10"), 0),
        (b"a", encode_record(30, b"a30", 20, b"a20"), 0),
        # line b, partition 1: committed.
        (b"b", encode_record(7, b"b7", -1, None), 1),
        # line c, partition 1: its first batch, never committed: starts fresh.
        (b"c", encode_record(9, b"c9", -1, None), 1),
    ]
    result = asyncio.run(_restore(settings, writes, {0: 20, 1: 8}, timeout_s=20.0))
    assert result.unfinished == set()
    assert result.lines == {
        "a": (0, b"a20", "previous"),
        "b": (1, b"b7", "committed"),
        "c": (1, None, "previous"),
    }


def test_restore_returns_within_its_bound_when_the_broker_is_cut_off(proxied_stack) -> None:
    settings = _settings(proxied_stack)
    ensure_topics(settings)
    writes = [(b"a", encode_record(10, b"a10", -1, None), 0)]
    proxy = proxied_stack.proxy
    try:
        result = asyncio.run(
            _restore(settings, writes, {0: 10, 1: 0}, timeout_s=3.0, pause=proxy.pause)
        )
    finally:
        proxy.resume()
    # The fallback, reported: neither partition could be read to a barrier.
    assert result.unfinished == {0, 1}
    assert result.lines == {}
