"""Store-and-forward on the real broker: the network path is cut with the
stack's TCP proxy, the gateway buffers on disk, restarts, and drains in order."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from lineguard.ingest.buffer import DiskBuffer
from lineguard.ingest.contract import TelemetryBatch, decode, encode
from lineguard.ingest.gateway import SequenceCounter, StoreAndForward, make_producer
from lineguard.settings import Settings
from tests.pipeline_support import consume_all
from tests.support.faults import FAST_FAIL

pytestmark = pytest.mark.integration


def _batch(seq: int) -> TelemetryBatch:
    t = 1_600_000_000_000_000 + seq * 1_000_000
    return TelemetryBatch(
        "site-1", "line-a", "gw-a", seq, ("a", "b"), np.array([t]), np.ones((1, 2))
    )


def _consume(stack, topic: str, expected: int) -> list:
    return consume_all(Settings(kafka=stack.kafka_settings()), topic, expected, timeout=60.0)


def test_records_buffered_during_an_outage_survive_a_gateway_restart_and_drain_in_order(
    proxied_stack, tmp_path
) -> None:
    stack = proxied_stack
    topic = f"buffered-{uuid.uuid4().hex[:8]}"
    seq = SequenceCounter(tmp_path / "seq")
    # Broker up: the topic exists and the first records go out live.
    producer = make_producer(stack.kafka_settings(), **FAST_FAIL)
    forward = StoreAndForward(producer, topic, DiskBuffer(tmp_path / "buf"))
    for _ in range(3):
        forward.send(b"line-a", encode(_batch(seq.take())))
    assert forward.drain(30) and forward.online

    stack.proxy.pause()
    try:
        for _ in range(20):
            forward.send(b"line-a", encode(_batch(seq.take())))
        assert not forward.drain(8)  # nothing can be acknowledged
        assert not forward.online and forward.stats()["outages"] == 1
        assert forward.pending() == 20
        # The gateway goes down in the middle of the outage.
        forward.buffer.close()
        producer.close(timeout=1)
        producer = make_producer(stack.kafka_settings(), **FAST_FAIL)
        forward = StoreAndForward(producer, topic, DiskBuffer(tmp_path / "buf"))
        assert forward.pending() == 20  # on disk across the restart
        forward.send(b"line-a", encode(_batch(seq.take())))  # still unreachable
    finally:
        stack.proxy.resume()
    assert forward.drain(60), forward.stats()
    forward.send(b"line-a", encode(_batch(seq.take())))  # after the drain: live again
    assert forward.drain(30)
    forward.buffer.close()
    producer.close()

    messages = _consume(stack, topic, 3 + 20 + 1 + 1)
    batches = [decode(m.value) for m in messages]
    seqs = [b.seq for b in batches]
    first_seen = list(dict.fromkeys(seqs))
    # Every record arrived; first arrivals are in order (copies from retries
    # may repeat a number: the worker drops them by (gateway, seq)).
    assert first_seen == list(range(25))
    flags = {b.seq: b.historical for b in batches}
    assert not any(flags[s] for s in range(3))
    assert all(flags[s] for s in range(3, 24))  # sent late: historical
    assert flags[24] is False


def test_a_full_buffer_drops_oldest_with_a_count_while_the_broker_is_away(
    proxied_stack, tmp_path
) -> None:
    stack = proxied_stack
    topic = f"full-{uuid.uuid4().hex[:8]}"
    producer = make_producer(stack.kafka_settings(), **FAST_FAIL)
    buffer = DiskBuffer(tmp_path / "buf", max_bytes=8 * 1024, segment_bytes=2048)
    forward = StoreAndForward(producer, topic, buffer)
    stack.proxy.pause()
    try:
        for s in range(200):
            forward.send(b"line-a", encode(_batch(s)))
    finally:
        stack.proxy.resume()
    assert forward.drain(60)
    stats = forward.stats()
    assert stats["buffer_dropped"] > 0
    assert stats["buffer_dropped"] + stats["sent"] >= 200
    messages = _consume(stack, topic, stats["sent"])
    seqs = sorted({decode(m.value).seq for m in messages})
    # The newest records were kept: what is missing is a prefix.
    assert seqs[-1] == 199 and seqs == list(range(seqs[0], 200))
    assert 200 - len(seqs) == stats["buffer_dropped"]
    buffer.close()
    producer.close()


def test_a_fenced_producer_sends_nothing_it_still_held_once_the_broker_is_back(
    proxied_stack,
) -> None:
    # The fence (StoreAndForward._fence) drops the old client's queue so the
    # records behind a failed one go out again only through the new client,
    # in order. kafka-python 3's close(timeout=0) flushes first and raises
    # while records are pending, before it stops the client's I/O thread:
    # left at that, the old client delivered them once the broker was back.
    from lineguard.ingest.gateway import close_now

    stack = proxied_stack
    topic = f"fenced-{uuid.uuid4().hex[:8]}"
    producer = make_producer(stack.kafka_settings())
    producer.send(topic, key=b"line-a", value=encode(_batch(0))).get(30)
    stack.proxy.pause()
    try:
        queued = [
            producer.send(topic, key=b"line-a", value=encode(_batch(seq))) for seq in range(1, 6)
        ]
        close_now(producer)
    finally:
        stack.proxy.resume()
    assert all(f.is_done and f.failed() for f in queued)
    # Long enough for the old client to reconnect and deliver (it took < 2 s).
    messages = consume_all(Settings(kafka=stack.kafka_settings()), topic, 6, timeout=10.0)
    assert [decode(m.value).seq for m in messages] == [0]
