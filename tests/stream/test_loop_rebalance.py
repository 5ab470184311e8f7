"""A revocation waits for the batches in flight, and no batch starts scoring during it.

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

Forgetting the lines' state under a batch being scored once made a scale-out
replay write a stray four-frame incident inside a real one: the rest of that
batch was scored from a fresh state, and its points reached InfluxDB though
the batch was never committed. The scoring stand-in below records whether its
state was forgotten while it scored.
"""

from __future__ import annotations

import asyncio
import threading
from collections import namedtuple
from types import SimpleNamespace
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


class Scoring:
    """The processor's part the loop uses; ``process`` can be held on a gate (a thread)."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.gate.set()
        self.scoring = threading.Event()
        self.batches = 0
        self.forgotten_while_scoring = False
        self._busy = False

    def process(self, records: list[RawRecord]) -> SimpleNamespace:
        self._busy = True
        self.scoring.set()
        self.gate.wait(10)
        self.batches += 1
        self._busy = False
        return SimpleNamespace(
            lines=["press-1"],
            influx_lines=["lineguard_scores,line=press-1 s=1 1"],
            dead_letters=[],
            alerts=[],
            incidents=[],
            imputed={},
            frames_scored=len(records),
            duplicates=0,
            historical_alerts_suppressed=0,
        )

    def export_state(self, line: str) -> dict:
        return {"line": line}

    def forget(self) -> None:
        self.forgotten_while_scoring |= self._busy


class Serving:
    """``ModelServing``'s part the loop uses; ``caught_up`` can be held on a gate."""

    def __init__(self) -> None:
        self.processor = Scoring()
        self.updates_gate = asyncio.Event()
        self.updates_gate.set()
        self.waiting = asyncio.Event()

    async def caught_up(self) -> None:
        self.waiting.set()
        await self.updates_gate.wait()

    def preload(self, partitions: set[int], total: int) -> list[str]:
        return []


RECORDS = [RawRecord(b"v", b"press-1", "telemetry", 3, 41)]


def _scoring_loop(influx: GatedInflux, serving: Serving) -> ConsumeLoop:
    loop = _loop(influx, [])
    loop.role, loop.serving = "score", serving  # type: ignore[assignment]
    loop.assigned({3}, 4)
    return loop


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


def test_no_batch_starts_scoring_once_a_revocation_has_begun() -> None:
    async def scenario() -> None:
        influx, serving = GatedInflux(), Serving()
        loop = _scoring_loop(influx, serving)
        generation = loop.generation
        # A batch at its points step keeps the revocation waiting ...
        storing = asyncio.ensure_future(
            loop.store(
                Delivery(records=RECORDS, points=["p,line=press-1 s=1 1"], offsets={TP("t", 3): 4}),
                generation,
                0.0,
            )
        )
        loop.inflight["deliver"] = storing
        await influx.writing.wait()
        revoking = asyncio.ensure_future(loop.revoked())
        assert await _not_finished(revoking)
        # ... while the next batch of the same assignment comes to be scored.
        assert await loop.prepare(RECORDS, generation) is None
        assert serving.processor.batches == 0
        influx.gate.set()
        await asyncio.wait_for(revoking, 10)
        assert loop.generation == generation + 1

    asyncio.run(scenario())


def test_a_batch_waiting_for_model_updates_when_the_revocation_begins_is_not_scored() -> None:
    async def scenario() -> None:
        serving = Serving()
        loop = _scoring_loop(GatedInflux(), serving)
        serving.updates_gate.clear()
        preparing = asyncio.ensure_future(loop.prepare(RECORDS, loop.generation))
        await serving.waiting.wait()
        await asyncio.wait_for(loop.revoked(), 10)  # nothing was being scored yet
        serving.updates_gate.set()
        assert await asyncio.wait_for(preparing, 10) is None
        assert serving.processor.batches == 0

    asyncio.run(scenario())


def test_line_state_is_forgotten_only_after_the_batch_being_scored_finished() -> None:
    async def scenario() -> None:
        serving = Serving()
        loop = _scoring_loop(GatedInflux(), serving)
        serving.processor.gate.clear()
        preparing = asyncio.ensure_future(loop.prepare(RECORDS, loop.generation))
        await asyncio.to_thread(serving.processor.scoring.wait, 10)
        revoking = asyncio.ensure_future(loop.revoked())
        assert await _not_finished(revoking), "revoked() returned while a batch was being scored"
        serving.processor.gate.set()
        await asyncio.wait_for(revoking, 10)
        delivery = await asyncio.wait_for(preparing, 10)
        assert serving.processor.batches == 1
        assert not serving.processor.forgotten_while_scoring
        # Scored inside the old assignment: stored, its state and offsets are not.
        assert delivery is not None and delivery.states == {"press-1": (3, b'{"line":"press-1"}')}

    asyncio.run(scenario())


def test_records_of_partitions_outside_the_assignment_are_left_to_their_owner() -> None:
    async def scenario() -> None:
        loop = _scoring_loop(GatedInflux(), Serving())
        message = SimpleNamespace(
            tp=TP("telemetry", 2), partition=2, offset=7, value=b"v", key=b"press-2", topic="t"
        )
        records, offsets = await loop.admit([SimpleNamespace(message=message)])
        assert records == [] and offsets == {}

    asyncio.run(scenario())
