"""The gap re-seek, for real: the consumer jumps ahead, the loop re-fetches the offsets it skipped.

The worker scores a record only if it is the next offset of its partition
from the committed one (``detectors/offsets.py``). Here the worker's own
``ConsumeLoop`` (archive role: the same admit, store and re-seek path as
scoring) consumes through a real aiokafka consumer from the local broker,
stores into the real InfluxDB and commits to the real group; only Faust's
stream is replaced by a plain ``getmany`` pump. Part-way through, the
consumer is seeked 40 records ahead behind the loop's back (what a stale
fetch delivered after a rebalance looks like to the loop). The loop must
skip the records above the gap, re-seek to the first missing offset, and
end with every frame stored exactly once and the commit at the end of
the partition.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import numpy as np
import pytest

from lineguard.influx import AsyncInfluxV1Client, InfluxV1Client
from lineguard.settings import InfluxSettings
from lineguard.stream import kafka_internals
from lineguard.stream.batching import OrderedStores
from lineguard.stream.limits import STORES_PENDING
from lineguard.stream.loop import ConsumeLoop
from lineguard.stream.processor import TELEMETRY_MEASUREMENT
from lineguard.stream.sinks import delivery_sinks
from lineguard.stream.state import LineStates
from lineguard.stream.stats import WorkerStats
from tests.support.kafka_app import FaustLikeApp, events_of
from tests.support.workers import sample_run, telemetry_records

pytestmark = pytest.mark.integration

RECORDS = 100
PER_RECORD = 5
JUMP_AT, JUMP_TO = 20, 60


class _Stream:
    async def ack(self, event) -> None:  # telemetry is acks=False: acks commit nothing
        return None


def test_records_above_a_gap_are_skipped_and_the_partition_re_seeked(local_stack) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
    from kafka.admin import KafkaAdminClient, NewTopic

    bootstrap = local_stack.kafka_bootstrap
    tag = uuid.uuid4().hex[:8]
    topic, group = f"gaps-{tag}", f"gaps-{tag}"
    admin = KafkaAdminClient(bootstrap_servers=[bootstrap])
    admin.create_topics([NewTopic(topic, 1, 1)])
    admin.close()
    influx_settings = InfluxSettings(url=local_stack.influx_url, database=f"gaps_{tag}")
    with InfluxV1Client(influx_settings) as client:
        client.create_database()
    run = sample_run()
    frames = RECORDS * PER_RECORD
    records = telemetry_records(run, "press-gap", frames, per_record=PER_RECORD)
    tp = TopicPartition(topic, 0)

    async def scenario() -> tuple[ConsumeLoop, dict]:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        influx = AsyncInfluxV1Client(influx_settings)
        await producer.start()
        await consumer.start()
        try:
            for key, value in records:
                await (await producer.send(topic, value, key=key, partition=0))
            consumer.assign([tp])
            app = FaustLikeApp(consumer, producer)
            stats, states = WorkerStats(), LineStates()
            loop: ConsumeLoop

            async def commit(offsets):
                return await kafka_internals.commit(app, offsets)

            sinks = delivery_sinks(
                influx=influx,
                producer=app.producer,
                topics={"dead_letter": f"dlq-{tag}", "alerts": "-", "incidents": "-", "state": "-"},
                states=states,
                commit=commit,
                on_committed=lambda offsets: loop.on_committed(offsets),
                stats=stats,
            )
            loop = ConsumeLoop(app, "archive", sinks, stats, states, influx=influx)
            loop.assigned({0}, 1)  # what Faust's on_partitions_assigned does
            stores, stream = OrderedStores(STORES_PENDING), _Stream()
            jumped = False
            deadline = asyncio.get_running_loop().time() + 120

            def storing() -> bool:
                last = loop.inflight.get("deliver")
                return last is not None and not last.done()

            while stats.records < RECORDS or storing():
                if asyncio.get_running_loop().time() > deadline:
                    raise TimeoutError(
                        f"all {RECORDS} records stored: did not happen within 120 s "
                        f"(stored {stats.records}, gaps {loop.offsets.gaps()})"
                    )
                taken = await consumer.getmany(tp, timeout_ms=200, max_records=10)
                if taken:
                    await loop.step(stream, events_of(taken), stores)
                await loop.seek_gaps()  # the worker's 1 s timer does this too
                if not jumped and await consumer.position(tp) >= JUMP_AT:
                    # Behind the loop's back: the next records it sees start at JUMP_TO.
                    consumer.seek(tp, JUMP_TO)
                    jumped = True
            assert jumped
            seeks = app.consumer.seeks
            return loop, {"committed": await consumer.committed(tp), "stats": stats, "seeks": seeks}
        finally:
            await influx.close()
            for client in (consumer, producer):
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(client.stop(), 10)

    loop, seen = asyncio.run(scenario())
    # Every frame stored once: the loop counted each record's frames once
    # (a record scored twice would count twice), InfluxDB holds every frame,
    # and the commit is the end of the partition.
    # The loop saw the gap and re-seeked to its first missing offset.
    assert seen["seeks"] and set(seen["seeks"]) == {(0, JUMP_AT)}, seen["seeks"]
    assert seen["stats"].records == RECORDS
    assert seen["stats"].frames == frames
    assert seen["committed"] == RECORDS
    assert loop.offsets.gaps() == {}
    with InfluxV1Client(influx_settings) as client:
        rows = client.query(f'SELECT * FROM "{TELEMETRY_MEASUREMENT}"', epoch="u")
    np.testing.assert_array_equal(
        np.sort([r["time"] for r in rows]), run.time_us[:frames].astype(np.int64)
    )
