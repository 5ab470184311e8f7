"""Line state: snapshots on a state topic, restored on assignment in bounded time.

What a line's state is
----------------------
Everything the scoring of a line's next frame depends on besides the frame:
the trailing scoring window, the debounce (alert) state, the open incident
and the sequences already seen per gateway. ``TelemetryProcessor`` exports
it as a dict (``export_state``) and resumes from one (``restore_state``).

The mechanism
-------------
After each micro-batch, in the delivery protocol's ``line_state`` step
(before the offset commit), the worker writes one record per line it scored
to a compacted *state topic* (``<worker_id>.line-state``), keyed by line, in
the partition numbered like the line's telemetry partition. Each record
carries

* ``at``: the telemetry offset its partition's commit reaches once this
  batch is committed (the batch's end);
* the snapshot after the batch;
* ``prev_at`` and the *last committed* snapshot of the line before this batch.

On assignment the new owner knows each partition's committed offset ``C``.
It appends a barrier record to each of those state partitions, waits for the
broker's acknowledgement (which gives the barrier's offset), and reads the
partition from the start up to the barrier: by Kafka's per-partition order,
that is every state record written before the assignment. It does not rely
on the high-water mark (Tansu reports the base offset of the last stored
batch there, which ended Faust's changelog recovery one record early). For
each line, the last record decides (:func:`choose`):

* ``at <= C``: its batch was committed; the snapshot is the state at ``C``;
* else ``prev_at <= C``: the batch was written but never committed (a kill
  between the two steps); the previous committed snapshot is the state at
  ``C``, and the batch will be consumed again from it;
* else: no snapshot is known to be valid at ``C`` (cannot happen while
  commits fail only one batch at a time; counted and logged if it does),
  and the line starts fresh.

So a restored line resumes from exactly the state an uninterrupted run had
at the committed offset, and re-scoring the uncommitted records reproduces
the same points, alerts and incidents.

Fallback
--------
Restoring is bounded by ``STATE_RESTORE_TIMEOUT_S``. If the barrier is not
acknowledged or the read does not reach it in time, the worker logs an
ERROR, counts ``state_restore_timeouts``, and goes on with what it has read:
lines whose last record was read resume from it as above, lines not reached
start fresh (a fresh window, no open incident, no remembered sequences).
"""

from __future__ import annotations

import logging
import struct
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "BARRIER_KEY",
    "LineStates",
    "RestoreResult",
    "StateRecord",
    "choose",
    "decode_record",
    "encode_record",
    "read_state_partitions",
    "restore",
    "state_topic_name",
]

log = logging.getLogger(__name__)

_MAGIC = b"LGS1"
# magic, at, prev_at, length of the snapshot; then snapshot, then previous.
_HEADER = struct.Struct("<4sqqI")
#: Key of the barrier records a new owner appends before reading.
BARRIER_KEY = b"\x00lineguard.state.barrier"


def state_topic_name(worker_id: str) -> str:
    """The state topic of a consumer group: one per group, like Faust's changelogs."""
    return f"{worker_id}.line-state"


class StateRecordError(ValueError):
    """A state-topic value that is not a LineGuard state record."""


@dataclass(frozen=True)
class StateRecord:
    """One line's state as written after a batch (see the module docstring)."""

    at: int
    snapshot: bytes
    prev_at: int
    previous: bytes | None


def encode_record(at: int, snapshot: bytes, prev_at: int, previous: bytes | None) -> bytes:
    """The state-topic value; ``prev_at`` -1 and ``previous`` None: no committed state yet."""
    return (
        _HEADER.pack(_MAGIC, at, prev_at if previous is not None else -1, len(snapshot))
        + snapshot
        + (previous or b"")
    )


def decode_record(value: bytes) -> StateRecord:
    """Parse :func:`encode_record` output; raises :class:`StateRecordError`."""
    if len(value) < _HEADER.size:
        raise StateRecordError(
            f"expected a state record of at least {_HEADER.size} bytes; got {len(value)}"
        )
    magic, at, prev_at, n = _HEADER.unpack_from(value)
    if magic != _MAGIC or _HEADER.size + n > len(value):
        raise StateRecordError(
            f"expected magic {_MAGIC!r} and a {n}-byte snapshot; got {magic!r}, {len(value)} bytes"
        )
    snapshot = value[_HEADER.size : _HEADER.size + n]
    rest = value[_HEADER.size + n :]
    return StateRecord(at, snapshot, prev_at, rest if prev_at >= 0 else None)


def choose(record: StateRecord, committed: int) -> tuple[bytes | None, str]:
    """The snapshot valid at the committed offset, and which rule chose it.

    Returns ``(snapshot, "committed")``, ``(previous, "previous")`` (None
    when the line had no committed state: it starts fresh) or
    ``(None, "ahead")`` when neither is known to be valid at ``committed``.
    """
    if record.at <= committed:
        return record.snapshot, "committed"
    if record.prev_at <= committed:
        return record.previous, "previous"
    return None, "ahead"


class LineStates:
    """Which snapshot of each line is committed, for the ``previous`` half of a record.

    The worker calls :meth:`record` when it writes a line's state after a
    batch, :meth:`committed` when a commit succeeded, :meth:`restored` when a
    line was restored on assignment, and :meth:`forget` on revocation.
    """

    def __init__(self) -> None:
        # line -> (partition, at, snapshot) of the last committed snapshot.
        self._committed: dict[str, tuple[int, int, bytes]] = {}
        # line -> snapshots written but not yet committed, oldest first.
        self._pending: dict[str, list[tuple[int, int, bytes]]] = {}

    def record(self, line: str, partition: int, at: int, snapshot: bytes) -> bytes:
        """The state-topic value for ``line`` after a batch ending at ``at``."""
        last = self._committed.get(line)
        value = encode_record(at, snapshot, *((last[1], last[2]) if last else (-1, None)))
        self._pending.setdefault(line, []).append((partition, at, snapshot))
        return value

    def committed(self, offsets: dict[int, int]) -> None:
        """Commits reached ``offsets`` (partition -> offset): promote what they cover."""
        for line, pending in list(self._pending.items()):
            covered = [p for p in pending if p[0] in offsets and p[1] <= offsets[p[0]]]
            if covered:
                self._committed[line] = covered[-1]
                left = [p for p in pending if p not in covered]
                if left:
                    self._pending[line] = left
                else:
                    del self._pending[line]

    def restored(self, line: str, partition: int, at: int, snapshot: bytes) -> None:
        """``line`` resumed from ``snapshot``, valid at committed offset ``at``."""
        self._committed[line] = (partition, at, snapshot)
        self._pending.pop(line, None)

    def forget(self, partitions: Iterable[int] | None = None) -> None:
        """Drop the bookkeeping of every line (or of the lines on ``partitions``)."""
        if partitions is None:
            self._committed.clear()
            self._pending.clear()
            return
        gone = set(partitions)
        for table in (self._committed, self._pending):
            for line in [k for k, v in table.items() if _partition_of(v) in gone]:
                del table[line]


def _partition_of(entry: Any) -> int:
    return entry[0] if isinstance(entry, tuple) else entry[0][0]


def read_state_partitions(
    consumer: Any, topic: str, barriers: dict[int, int], deadline: float
) -> tuple[dict[bytes, tuple[int, StateRecord]], set[int]]:
    """Read state partitions from their start up to their barrier offsets.

    Parameters
    ----------
    consumer : kafka.KafkaConsumer
        Without a group; reassigned here.
    topic : str
        The state topic.
    barriers : dict
        Partition -> offset of the barrier record appended at assignment.
    deadline : float
        ``time.monotonic()`` value to stop at, read or not.

    Returns
    -------
    records : dict
        Line key -> (partition, its last state record before the barrier).
    unfinished : set of int
        Partitions not read up to their barrier by the deadline.
    """
    from kafka import TopicPartition

    tps = [TopicPartition(topic, p) for p in sorted(barriers)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    last: dict[bytes, tuple[int, StateRecord]] = {}
    left = set(barriers)
    while left and time.monotonic() < deadline:
        remaining_ms = max(int(1000 * (deadline - time.monotonic())), 1)
        for tp, messages in consumer.poll(timeout_ms=min(200, remaining_ms)).items():
            for m in messages:
                if m.offset >= barriers[tp.partition]:
                    left.discard(tp.partition)
                    break
                if m.key is None or m.key == BARRIER_KEY or m.value is None:
                    continue
                try:
                    last[m.key] = (tp.partition, decode_record(m.value))
                except StateRecordError as exc:  # not ours: say so, keep reading
                    log.error("state topic %s[%d]@%d: %s", topic, tp.partition, m.offset, exc)
    return last, left


@dataclass
class RestoreResult:
    """What :func:`restore` found for newly assigned partitions."""

    #: line -> (partition, snapshot valid at the committed offset, rule);
    #: snapshot None: start the line fresh.
    lines: dict[str, tuple[int, bytes | None, str]]
    #: Partitions whose state could not be read in time (the fallback).
    unfinished: set[int]
    seconds: float


async def restore(
    producer: Any,
    consumer: Any,
    topic: str,
    committed: dict[int, int],
    timeout_s: float,
) -> RestoreResult:
    """Restore the line state of partitions (partition -> committed offset).

    ``producer`` is the worker's (Faust) producer, used for the barriers;
    ``consumer`` a group-less ``kafka.KafkaConsumer`` used from a thread.
    Never waits longer than ``timeout_s``: on the deadline, partitions not
    read to their barrier are reported in ``unfinished`` (see "Fallback").
    """
    import asyncio

    started = time.monotonic()
    deadline = started + timeout_s
    barriers: dict[int, int] = {}
    try:
        for partition in sorted(committed):
            ack = await producer.send(topic, BARRIER_KEY, b"barrier", partition, None, None)
            metadata = await asyncio.wait_for(ack, max(deadline - time.monotonic(), 0.01))
            barriers[partition] = int(metadata.offset)
    except Exception as exc:  # broker unreachable or slow: the fallback, loudly
        log.error("state barrier on %s not acknowledged (%s: %s)", topic, type(exc).__name__, exc)
    found: dict[bytes, tuple[int, StateRecord]] = {}
    unfinished = set(committed) - set(barriers)
    if barriers:
        found, left = await asyncio.to_thread(
            read_state_partitions, consumer, topic, barriers, deadline
        )
        unfinished |= left
    lines: dict[str, tuple[int, bytes | None, str]] = {}
    for key, (partition, record) in found.items():
        snapshot, rule = choose(record, committed[partition])
        lines[key.decode("utf-8", "replace")] = (partition, snapshot, rule)
    return RestoreResult(lines, unfinished, time.monotonic() - started)
