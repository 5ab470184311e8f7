"""The delivery/commit protocol with in-memory sinks: its order, and a failure at each step.

The sinks are the worker's real ones (:mod:`lineguard.stream.sinks`) over
in-memory stand-ins for InfluxDB, the producer and the commit request, which
log every call to one shared journal. The expectations are written out by
hand from the protocol's contract: points, dead letters, alerts and
incidents, line state, producer flush, commit; nothing after a failure.
"""

from __future__ import annotations

import asyncio
from collections import namedtuple
from typing import Any

import pytest

from lineguard.influx import InfluxWriteError
from lineguard.ingest.dead_letter import DeadLetter
from lineguard.stream.processor import RawRecord
from lineguard.stream.protocol import STEPS, Delivery, DeliveryFailed, check_order, deliver
from lineguard.stream.sinks import delivery_sinks
from lineguard.stream.state import LineStates, decode_record
from lineguard.stream.stats import WorkerStats

TP = namedtuple("TP", "topic partition")
TOPICS = {"dead_letter": "dlq", "alerts": "alerts", "incidents": "incidents", "state": "state"}


class Boom(RuntimeError):
    pass


class Journal:
    """Everything the in-memory stand-ins were asked to do, in order."""

    def __init__(self, fail: str | None = None) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.fail = fail


class MemoryInflux:
    endpoint = "memory://influx"

    def __init__(self, journal: Journal, status: int | None = None) -> None:
        self.journal = journal
        self.status = status

    async def write(self, body: str, precision: str = "ns") -> None:
        if self.journal.fail == "points":
            raise InfluxWriteError(400, "refused") if self.status == 400 else Boom("influx down")
        self.journal.calls.append(("influx", body))


class MemoryProducer:
    """Faust's producer signature; acks resolve at once unless the journal fails that topic."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    async def send(self, topic, key, value, partition, timestamp, headers) -> asyncio.Future:
        ack: asyncio.Future = asyncio.get_running_loop().create_future()
        failing = {"dead_letters": "dlq", "events": "alerts", "line_state": "state"}
        if failing.get(self.journal.fail or "") == topic:
            ack.set_exception(Boom(f"{topic} not acknowledged"))
        else:
            ack.set_result(None)
        self.journal.calls.append(("send", topic, key, value, partition))
        return ack

    async def flush(self) -> None:
        if self.journal.fail == "producer_flush":
            raise Boom("flush failed")
        self.journal.calls.append(("flush",))


class Committed:
    def __init__(self, committed: dict, not_assigned: dict | None = None) -> None:
        self.committed = committed
        self.not_assigned = not_assigned or {}


def _rig(journal: Journal, status: int | None = None):
    stats = WorkerStats()
    states = LineStates()
    confirmed: list[dict] = []

    async def commit(offsets: dict) -> Committed:
        if journal.fail == "commit":
            raise Boom("coordinator moved")
        journal.calls.append(("commit", dict(offsets)))
        return Committed(dict(offsets))

    sinks = delivery_sinks(
        influx=MemoryInflux(journal, status),
        producer=MemoryProducer(journal),
        topics=TOPICS,
        states=states,
        commit=commit,
        on_committed=confirmed.append,
        stats=stats,
    )
    return sinks, stats, states, confirmed


def _delivery() -> Delivery:
    records = [RawRecord(b"v1", b"press-1", "telemetry", 0, 40), RawRecord(b"v2", b"x", "t", 0, 41)]
    return Delivery(
        records=records,
        points=["lineguard_score,line=press-1 score=1 1"],
        dead_letters=[DeadLetter("bad", "decode", "t", 0, 41, b"x", b"v2")],
        alerts=[(b"press-1", {"state": "raised"})],
        incidents=[(b"press-1", {"incident_id": "i1"})],
        states={"press-1": (0, b'{"seen": {}}')},
        offsets={TP("telemetry", 0): 42},
    )


def _kinds(journal: Journal) -> list[str]:
    """The journal as step names, consecutive repeats folded."""
    names = {
        "dlq": "dead_letters",
        "alerts": "events",
        "incidents": "events",
        "state": "line_state",
    }
    kinds: list[str] = []
    for call in journal.calls:
        kind = {"influx": "points", "flush": "producer_flush", "commit": "commit"}.get(call[0])
        kind = kind or names[call[1]]
        if not kinds or kinds[-1] != kind:
            kinds.append(kind)
    return kinds


def test_steps_run_in_the_documented_order_and_the_commit_comes_last() -> None:
    journal = Journal()
    sinks, _stats, _states, confirmed = _rig(journal)
    asyncio.run(deliver(_delivery(), sinks))
    assert _kinds(journal) == [
        "points",
        "dead_letters",
        "events",
        "line_state",
        "producer_flush",
        "commit",
    ]
    assert journal.calls[-1] == ("commit", {TP("telemetry", 0): 42})
    assert confirmed == [{TP("telemetry", 0): 42}]
    # The state record went to the line's partition, marking the batch's end.
    state_send = next(c for c in journal.calls if c[:2] == ("send", "state"))
    assert state_send[2] == b"press-1" and state_send[4] == 0
    assert decode_record(state_send[3]).at == 42


@pytest.mark.parametrize("step", ["dead_letters", "events", "line_state", "producer_flush"])
def test_a_failure_at_any_step_stops_there_and_nothing_is_committed(step: str) -> None:
    journal = Journal(fail=step)
    sinks, _stats, _states, confirmed = _rig(journal)
    with pytest.raises(DeliveryFailed) as caught:
        asyncio.run(deliver(_delivery(), sinks))
    assert caught.value.step == step
    assert isinstance(caught.value.__cause__, Boom)
    assert not any(c[0] == "commit" for c in journal.calls)
    assert confirmed == []
    # Nothing of a later step was attempted.
    later = STEPS[STEPS.index(step) + 1 :]
    assert not set(_kinds(journal)) & set(later), journal.calls


def test_influxdb_unreachable_holds_the_batch_at_the_points_step_uncommitted() -> None:
    journal = Journal(fail="points")
    sinks, stats, _states, confirmed = _rig(journal)

    async def run() -> None:
        # Retried with backoff for as long as it takes: cut off here, the
        # batch has done nothing past its points.
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(deliver(_delivery(), sinks), 0.5)

    asyncio.run(run())
    assert journal.calls == []
    assert confirmed == []
    assert stats.write_retries >= 1


def test_a_failed_commit_request_is_counted_and_left_to_the_next_batch() -> None:
    journal = Journal(fail="commit")
    sinks, stats, states, confirmed = _rig(journal)
    asyncio.run(deliver(_delivery(), sinks))  # does not raise: everything is stored
    assert stats.commit_failures == 1
    assert confirmed == []
    # The state written stays pending: the next record of the line still
    # carries no committed snapshot (prev_at -1), not this batch's.
    assert decode_record(states.record("press-1", 0, 50, b"{}")).previous is None


def test_a_batch_of_an_earlier_assignment_writes_no_state_and_commits_nothing() -> None:
    journal = Journal()
    sinks, _stats, _states, confirmed = _rig(journal)
    delivery = _delivery()
    delivery.still_current = lambda: False
    asyncio.run(deliver(delivery, sinks))
    assert _kinds(journal) == ["points", "dead_letters", "events", "producer_flush"]
    assert confirmed == []


def test_points_influxdb_refuses_become_dead_letters_of_the_batch_records() -> None:
    journal = Journal(fail="points")
    sinks, stats, _states, _confirmed = _rig(journal, status=400)
    delivery = _delivery()
    asyncio.run(deliver(delivery, sinks))
    letters = [c for c in journal.calls if c[:2] == ("send", "dlq")]
    # The decode dead letter, plus the one record that was scored (offset 40).
    assert [(d.stage, d.offset) for d in delivery.dead_letters] == [("decode", 41), ("sink", 40)]
    assert len(letters) == 2
    assert "InfluxDB refused" in delivery.dead_letters[1].reason
    assert stats.write_errors == 1
    assert journal.calls[-1][0] == "commit"  # the line is not blocked


def test_sinks_out_of_order_are_refused_before_any_step_runs() -> None:
    journal = Journal()
    sinks, *_ = _rig(journal)
    with pytest.raises(ValueError, match="in that order"):
        asyncio.run(deliver(_delivery(), [sinks[1], sinks[0], *sinks[2:]]))
    assert journal.calls == []
    with pytest.raises(ValueError, match="in that order"):
        check_order(sinks[:-1])  # no commit step
