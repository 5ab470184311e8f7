"""The delivery/commit protocol: what happens, in which order, before an offset is committed.

A micro-batch's offsets may be committed only once everything the batch
produced is durable, because a Kafka commit says "never read these again".
The steps, in this order and nowhere else:

1. ``points``: score points to InfluxDB (retried while it is unreachable;
   data it refuses with HTTP 400 becomes dead letters, stage ``sink``);
2. ``dead_letters``: bad records to the dead-letter topic, acknowledged;
3. ``events``: alert edges and incident messages, acknowledged;
4. ``line_state``: each line's state after this batch, to the state topic,
   acknowledged (skipped for a batch of an earlier assignment: the new owner
   replays it from the state before it);
5. ``producer_flush``: nothing the producer still buffers is left behind;
6. ``commit``: the batch's offsets (skipped for a batch of an earlier
   assignment).

A failure at any step raises :class:`DeliveryFailed` naming the step, and no
later step runs: the batch is not committed, so it is consumed again (by this
worker after a restart, or by the partition's next owner). Points rewrite the
same InfluxDB points and copies of records are dropped by sequence, so a
replayed batch changes nothing.

Every step is a :class:`Sink` with one lifecycle, like quix-streams' sinks:
``setup()`` once, then per batch ``add(delivery)`` to stage what the batch
carries and ``await flush()`` to make it durable (or raise). The unit tests
drive :func:`deliver` with in-memory sinks; the worker with the real ones
(:mod:`lineguard.stream.sinks`).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "STEPS",
    "Delivery",
    "DeliveryFailed",
    "Sink",
    "check_order",
    "deliver",
]

#: The protocol's steps, in order. :func:`deliver` refuses sinks in any other.
STEPS = ("points", "dead_letters", "events", "line_state", "producer_flush", "commit")


class DeliveryFailed(RuntimeError):
    """A step of the delivery protocol failed; nothing after it ran.

    Attributes
    ----------
    step : str
        The step that failed (one of :data:`STEPS`).
    """

    def __init__(self, step: str, message: str) -> None:
        super().__init__(message)
        self.step = step


@dataclass
class Delivery:
    """Everything one scored micro-batch must make durable before its commit.

    Attributes
    ----------
    records : list
        The batch's telemetry records (``RawRecord``), for dead-lettering a
        batch InfluxDB refuses.
    points : list of str
        Line-protocol blocks for InfluxDB.
    dead_letters : list
        ``DeadLetter`` objects; the ``points`` step may add to it.
    alerts, incidents : list of (bytes, dict)
        Keyed messages for the alerts and incidents topics.
    states : dict
        Line -> (partition, snapshot bytes): each line's state after the batch.
    offsets : dict
        Topic-partition -> offset to commit (the next offset to read).
    still_current : callable
        False once the assignment the batch was taken in has ended: its
        state and offsets must not be written then (the partition may have
        a new owner). Asked by those steps when they run.
    """

    records: list[Any] = field(default_factory=list)
    points: list[str] = field(default_factory=list)
    dead_letters: list[Any] = field(default_factory=list)
    alerts: list[tuple[bytes, dict[str, Any]]] = field(default_factory=list)
    incidents: list[tuple[bytes, dict[str, Any]]] = field(default_factory=list)
    states: dict[str, tuple[int, bytes]] = field(default_factory=dict)
    offsets: dict[Hashable, int] = field(default_factory=dict)
    still_current: Callable[[], bool] = field(default=lambda: True)
    #: Filled by the steps: what they did, for the worker's counters.
    done: dict[str, int] = field(default_factory=dict)
    #: (line, sensor) -> frames scored with that reading imputed.
    imputed: dict[tuple[str, str], int] = field(default_factory=dict)


@runtime_checkable
class Sink(Protocol):
    """One step of the protocol. ``name`` is its entry in :data:`STEPS`."""

    name: str

    async def setup(self) -> None:
        """Prepare once, before the first batch (create a database, a topic...)."""

    def add(self, delivery: Delivery) -> None:
        """Stage what ``delivery`` carries for this step; no I/O that can be lost."""

    async def flush(self) -> None:
        """Make what was staged durable, or raise; then forget it."""


def check_order(sinks: Sequence[Sink]) -> None:
    """Raise ``ValueError`` unless ``sinks`` are exactly the :data:`STEPS`, in order."""
    names = tuple(s.name for s in sinks)
    if names != STEPS:
        raise ValueError(f"expected sinks for the steps {STEPS}, in that order; got {names}")


async def deliver(delivery: Delivery, sinks: Sequence[Sink]) -> None:
    """Run the protocol's steps for one batch, in order; stop at the first failure.

    Parameters
    ----------
    delivery : Delivery
        The batch's outputs and offsets.
    sinks : sequence of Sink
        One per step of :data:`STEPS`, in that order (checked).

    Raises
    ------
    DeliveryFailed
        From the first step that fails, chained to its error; later steps,
        the commit among them, did not run.
    """
    check_order(sinks)
    for sink in sinks:
        try:
            sink.add(delivery)
            await sink.flush()
        except Exception as exc:
            raise DeliveryFailed(
                sink.name,
                f"delivery step {sink.name!r} failed ({type(exc).__name__}: {exc}); "
                f"expected it to complete before {_after(sink.name)}; batch left uncommitted",
            ) from exc


def _after(step: str) -> str:
    later = STEPS[STEPS.index(step) + 1 :]
    return ", ".join(later) if later else "the next batch"
