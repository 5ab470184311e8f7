"""The worker's Kafka requests on the real broker: committed-offset look-up and the commit.

``kafka_internals`` runs over real aiokafka clients in a consumer group on
the local Tansu broker (through :mod:`tests.support.kafka_app`, which only
leaves out Faust's thread hop). The broker outage is a cut network path
(the stack's pausable proxy).

* Look-up while the broker is down. For a partition with a committed
  offset, aiokafka's own ``fetch_committed_offsets`` waits out the cut
  (it retries retriable errors itself). For a partition with nothing
  committed, the worker asks for the log start, and that request fails
  with ``KafkaTimeoutError`` while the path is cut: the worker's bounded
  retry must carry the look-up over the outage.
* Commit for a partition no longer assigned: after a second member joined
  the group and took one partition, a commit of both partitions commits
  only the one still owned, and reports the other.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any

import pytest

from lineguard.stream.kafka_internals import commit, committed_offsets
from tests.support.kafka_app import FaustLikeApp
from tests.support.workers import poll

pytestmark = pytest.mark.integration


def _group_member(bootstrap: str, topic: str, group: str) -> Any:
    """A group member that commits by hand, with the worker's session timeout."""
    from aiokafka import AIOKafkaConsumer

    return AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
    )


def _topic(bootstrap: str, partitions: int) -> str:
    from kafka.admin import KafkaAdminClient, NewTopic

    name = f"internals-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=[bootstrap])
    try:
        admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        admin.close()
    return name


async def _clients(bootstrap: str, group: str):  # type: ignore[no-untyped-def]
    """A started producer and a group consumer without auto-commit, whose short
    request timeout makes a cut fail a request within seconds."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        request_timeout_ms=3000,
    )
    await producer.start()
    await consumer.start()
    return producer, consumer


async def _stop(*clients) -> None:
    for client in clients:
        # Bounded: a client whose path was cut may not reach the broker to leave.
        with contextlib.suppress(asyncio.TimeoutError, OSError):
            await asyncio.wait_for(client.stop(), 10)


def test_the_committed_offset_lookup_is_carried_over_a_broker_outage(proxied_stack) -> None:
    from aiokafka import TopicPartition

    bootstrap = proxied_stack.kafka_bootstrap
    topic = _topic(bootstrap, 2)
    group = f"lookup-{uuid.uuid4().hex[:8]}"
    proxy = proxied_stack.proxy
    committed_tp, fresh_tp = TopicPartition(topic, 0), TopicPartition(topic, 1)

    async def scenario() -> None:
        producer, consumer = await _clients(bootstrap, group)
        try:
            for partition in (0, 1):
                for i in range(7):
                    await (await producer.send(topic, b"x%d" % i, partition=partition))
            consumer.assign([committed_tp, fresh_tp])
            await consumer.commit({committed_tp: 5})
            app = FaustLikeApp(consumer)

            # 1. The path is cut while the committed offsets are asked for.
            proxy.pause()
            lookup = asyncio.ensure_future(committed_offsets(app, {committed_tp}))
            await asyncio.sleep(4.0)  # the outage (longer than the request timeout)
            proxy.resume()
            assert await asyncio.wait_for(lookup, 60) == {committed_tp: 5}

            # 2. The path is cut just before the log-start request of a partition
            #    with nothing committed, and restored once a request failed.
            cut = {"done": False}

            def cut_once() -> None:
                if not cut["done"]:
                    cut["done"] = True
                    proxy.pause()

            app.consumer.before_earliest = cut_once
            lookup = asyncio.ensure_future(committed_offsets(app, {fresh_tp}))
            await asyncio.to_thread(
                poll,
                lambda: app.consumer.earliest_failures >= 1,
                60,
                "the log-start request failing while the path is cut",
            )
            proxy.resume()
            # Nothing committed: the group starts at the log start.
            assert await asyncio.wait_for(lookup, 60) == {fresh_tp: 0}
            assert app.consumer.earliest_failures == 1
        finally:
            if proxy.paused:
                proxy.resume()
            await _stop(consumer, producer)

    asyncio.run(scenario())


def test_a_commit_leaves_out_partitions_another_member_now_owns(local_stack) -> None:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    bootstrap = local_stack.kafka_bootstrap
    topic = _topic(bootstrap, 2)
    group = f"owner-{uuid.uuid4().hex[:8]}"
    both = {TopicPartition(topic, 0), TopicPartition(topic, 1)}

    def member() -> AIOKafkaConsumer:
        return _group_member(bootstrap, topic, group)

    async def assigned(consumer: AIOKafkaConsumer, count: int, what: str) -> None:
        deadline = asyncio.get_running_loop().time() + 60
        while len(consumer.assignment()) != count:
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"{what}: did not happen within 60 s")
            await consumer.getmany(timeout_ms=200)  # drives the group protocol

    async def scenario() -> None:
        first, second = member(), member()
        await first.start()
        try:
            await assigned(first, 2, "the first member owning both partitions")
            await second.start()
            await asyncio.gather(
                assigned(first, 1, "the first member keeping one partition after the join"),
                assigned(second, 1, "the second member taking one partition"),
            )
            (kept,) = first.assignment()
            (moved,) = second.assignment()
            assert {kept, moved} == both

            outcome = await commit(FaustLikeApp(first), dict.fromkeys(both, 3))
            assert outcome.committed == {kept: 3}
            assert outcome.not_assigned == {moved: 3}
            # On the broker: the kept partition at 3, the moved one untouched.
            assert await first.committed(kept) == 3
            assert await second.committed(moved) is None
        finally:
            await _stop(second, first)

    asyncio.run(scenario())


def test_a_commit_made_while_the_broker_is_cut_completes_once_it_is_back(proxied_stack) -> None:
    """The commit step on the real broker over an outage: aiokafka retries the
    commit request itself while the path is cut, so the step neither fails nor
    marks anything committed until the broker has the offsets; then it does,
    and the next batch's commit follows. (A commit *refused* by the broker --
    the failure branch of ``CommitSink`` -- is tested in memory only.)"""
    from aiokafka import TopicPartition

    from lineguard.stream.protocol import Delivery
    from lineguard.stream.sinks import CommitSink
    from lineguard.stream.stats import WorkerStats

    bootstrap = proxied_stack.kafka_bootstrap
    topic = _topic(bootstrap, 1)
    group = f"commit-{uuid.uuid4().hex[:8]}"
    proxy = proxied_stack.proxy
    tp = TopicPartition(topic, 0)

    async def scenario() -> None:
        producer, consumer = await _clients(bootstrap, group)
        try:
            for i in range(10):
                await (await producer.send(topic, b"x%d" % i, partition=0))
            consumer.assign([tp])
            app = FaustLikeApp(consumer)
            stats = WorkerStats()
            confirmed: list[dict] = []
            sink = CommitSink(lambda offsets: commit(app, offsets), confirmed.append, stats)

            # Batch 1 (records 0-3) is committed while the path is cut.
            proxy.pause()
            sink.add(Delivery(offsets={tp: 4}))
            flush = asyncio.ensure_future(sink.flush())
            await asyncio.sleep(6.0)  # the outage: twice the request timeout
            assert not flush.done(), "the commit step returned while the broker was unreachable"
            assert confirmed == [] and stats.commit_failures == 0
            proxy.resume()
            await asyncio.wait_for(flush, 120)
            assert confirmed == [{tp: 4}] and stats.commit_failures == 0
            assert await consumer.committed(tp) == 4

            # Batch 2 (records 4-9) follows.
            sink.add(Delivery(offsets={tp: 10}))
            await asyncio.wait_for(sink.flush(), 60)
            assert confirmed == [{tp: 4}, {tp: 10}]
            assert await consumer.committed(tp) == 10
        finally:
            if proxy.paused:
                proxy.resume()
            await _stop(consumer, producer)

    asyncio.run(scenario())


def test_the_broker_refuses_a_commit_from_a_stale_generation_or_an_unknown_member(
    local_stack,
) -> None:
    """The broker fact the worker's commit-refusal test rests on: the group
    coordinator checks a commit's generation and member id (Kafka's fencing
    of a member the group has moved on without). Raw OffsetCommit v2
    requests, as aiokafka builds them, answered per partition."""
    from aiokafka.protocol.commit import OffsetCommitRequest

    bootstrap = local_stack.kafka_bootstrap
    topic = _topic(bootstrap, 1)
    group = f"fence-{uuid.uuid4().hex[:8]}"

    async def scenario() -> dict[str, int]:
        member = _group_member(bootstrap, topic, group)
        await member.start()
        try:
            deadline = asyncio.get_running_loop().time() + 60
            while not member.assignment():
                if asyncio.get_running_loop().time() > deadline:
                    raise TimeoutError("the member was not assigned its partition within 60 s")
                await member.getmany(timeout_ms=200)
            coordinator = member._coordinator  # private: the generation and member id in force
            generation, member_id = coordinator.generation, coordinator.member_id

            async def commit(gen: int, mid: str) -> int:
                request = OffsetCommitRequest(group, gen, mid, -1, [(topic, [(0, 1, "")])])
                response = await member._client.send(coordinator.coordinator_id, request)
                ((_, ((_, code),)),) = response.topics
                return int(code)

            return {
                "current": await commit(generation, member_id),
                "stale generation": await commit(generation + 5, member_id),
                "unknown member": await commit(generation, "not-a-member"),
                "no generation, no member": await commit(-1, ""),
            }
        finally:
            await _stop(member)

    # Kafka error codes: 0 none, 22 ILLEGAL_GENERATION, 25 UNKNOWN_MEMBER_ID.
    assert asyncio.run(scenario()) == {
        "current": 0,
        "stale generation": 22,
        "unknown member": 25,
        "no generation, no member": 25,
    }
