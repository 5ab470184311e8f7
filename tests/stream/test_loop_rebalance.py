"""A revocation waits for the batches in flight: the one being scored and the one being stored.

``ConsumeLoop.revoked`` runs in Faust's ``on_partitions_revoked``. Until it
returns, the partitions are still this worker's, so a batch whose store
started before the revocation must finish it, commit included: the next
owner then starts after it instead of scoring it again from an older
offset. The loop is the worker's own; its sinks are the real ones over
in-memory stand-ins (the protocol's order is the subject of
``test_protocol.py``), with InfluxDB's write held on a gate so the batch
is provably in flight when the revocation comes. No assertion depends on
time: the gate is opened by the test, and "not finished yet" is checked
after handing the event loop every chance to finish it.
"""

from __future__ import annotations

import asyncio
from collections import namedtuple
from typing import Any

from lineguard.stream.loop import ConsumeLoop
from lineguard.stream.processor import RawRecord
from lineguard.stream.protocol import Delivery
from lineguard.stream.sinks import delivery_sinks
from lineguard.stream.state import LineStates
from lineguard.stream.stats import WorkerStats

TP = namedtuple("TP", "topic partition")
TOPICS = {"dead_letter": "dlq", "alerts": "alerts", "incidents": "incidents", "state": "state"}


class GatedInflux:
    """InfluxDB whose writes wait until the test opens the gate."""

    endpoint = "memory://influx"

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.writing = asyncio.Event()
        self.bodies: list[str] = []

    async def write(self, body: Any, precision: str = "ns") -> None:
        self.writing.set()
        await self.gate.wait()
        self.bodies.append(body)


class Producer:
    async def send(self, topic, key, value, partition, timestamp, headers) -> asyncio.Future:
        ack: asyncio.Future = asyncio.get_running_loop().create_future()
        ack.set_result(None)
        return ack

    async def flush(self) -> None:
        return None


class Committed:
    def __init__(self, offsets: dict) -> None:
        self.committed, self.not_assigned = offsets, {}


def _loop(influx: GatedInflux, commits: list[dict]) -> ConsumeLoop:
    stats, states = WorkerStats(), LineStates()

    async def commit(offsets: dict) -> Committed:
        commits.append(dict(offsets))
        return Committed(dict(offsets))

    sinks = delivery_sinks(
        influx=influx,
        producer=Producer(),
        topics=TOPICS,
        states=states,
        commit=commit,
        on_committed=lambda offsets: None,
        stats=stats,
    )
    # The archive role (no model serving): the store path is the same.
    return ConsumeLoop(None, "archive", sinks, stats, states, influx=influx)


async def _not_finished(task: asyncio.Future, turns: int = 50) -> bool:
    """Whether ``task`` is still pending after the event loop ran ``turns`` times."""
    for _ in range(turns):
        await asyncio.sleep(0)
    return not task.done()


def test_a_revocation_waits_until_the_batch_being_stored_has_committed() -> None:
    async def scenario() -> None:
        influx, commits = GatedInflux(), []
        loop = _loop(influx, commits)
        tp = TP("telemetry", 3)
        delivery = Delivery(
            records=[RawRecord(b"v", b"press-1", "telemetry", 3, 41)],
            points=["lineguard_telemetry,line=press-1 p=1 1"],
            offsets={tp: 42},
        )
        generation = loop.generation
        storing = asyncio.ensure_future(loop.store(delivery, generation, 0.0))
        loop.inflight["deliver"] = storing
        await influx.writing.wait()  # the batch is at its points step

        revoking = asyncio.ensure_future(loop.revoked())
        assert await _not_finished(revoking), "revoked() returned with a batch still in flight"
        assert commits == []

        influx.gate.set()
        await asyncio.wait_for(revoking, 10)
        # The batch finished inside the assignment it was taken in: it wrote
        # its points and committed its offsets before the partitions moved.
        assert storing.done()
        assert influx.bodies[0] == "lineguard_telemetry,line=press-1 p=1 1"
        assert commits == [{tp: 42}]
        assert loop.generation == generation + 1  # later batches of the old assignment are stale

    asyncio.run(scenario())


def test_a_revocation_waits_for_the_batch_being_scored() -> None:
    async def scenario() -> None:
        loop = _loop(GatedInflux(), [])
        scored = asyncio.get_running_loop().create_future()
        loop.inflight["compute"] = scored
        revoking = asyncio.ensure_future(loop.revoked())
        assert await _not_finished(revoking), "revoked() returned while a batch was being scored"
        scored.set_result(None)
        await asyncio.wait_for(revoking, 10)

    asyncio.run(scenario())


def test_a_failed_batch_in_flight_does_not_stop_the_revocation() -> None:
    async def scenario() -> None:
        loop = _loop(GatedInflux(), [])
        failed = asyncio.get_running_loop().create_future()
        loop.inflight["compute"] = failed
        revoking = asyncio.ensure_future(loop.revoked())
        failed.set_exception(RuntimeError("scoring thread failed"))
        await asyncio.wait_for(revoking, 10)  # the batch's own path handles its failure
        assert loop.generation == 1

    asyncio.run(scenario())
