"""The consume loop: take a micro-batch, admit its records, score it, queue its store.

Pipelined: batch N is decoded and scored (in a thread) while batches N-1
and N-2 are stored; stores run one at a time, in batch order, each running
the delivery protocol (:mod:`lineguard.stream.protocol`) that ends with the
commit of its own offsets. Faust's acknowledgements commit nothing for
telemetry (the topic is subscribed with ``acks=False``): the worker commits
only contiguous, stored progress (:mod:`lineguard.detectors.offsets`).

On a newly assigned partition the first batch waits for the partition's
committed offset and the line state valid at it
(:mod:`lineguard.stream.state`); a batch taken in an earlier assignment
writes no state and commits nothing (its records are consumed again).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from lineguard.detectors.offsets import Admission, OffsetTracker
from lineguard.influx import encode_point
from lineguard.stream import kafka_internals
from lineguard.stream.batching import OrderedStores, batches_by_size
from lineguard.stream.limits import (
    BATCH_BYTES,
    BATCH_RECORDS,
    BATCH_WINDOW_S,
    STATE_RESTORE_TIMEOUT_S,
    STORES_PENDING,
)
from lineguard.stream.processor import RawRecord, archive_lines
from lineguard.stream.protocol import Delivery, deliver
from lineguard.stream.serving import ModelServing
from lineguard.stream.state import LineStates, restore
from lineguard.stream.stats import ASSIGNMENT_MEASUREMENT, WorkerStats

__all__ = ["ConsumeLoop", "records_of"]

log = logging.getLogger(__name__)


def records_of(events: Sequence[Any]) -> list[RawRecord]:
    """Faust events as the processor's records."""
    return [
        RawRecord(
            value=e.message.value,
            key=e.message.key,
            topic=e.message.topic,
            partition=e.message.partition,
            offset=e.message.offset,
        )
        for e in events
    ]


def _value_size(event: Any) -> int:
    return len(event.message.value or b"")


class ConsumeLoop:
    """One worker role's loop and its rebalance handling.

    Parameters
    ----------
    app : faust.App
        The worker's app (consumer, producer).
    role : str
        ``score`` or ``archive``.
    sinks : list of Sink
        The delivery protocol's sinks, in its order.
    stats : WorkerStats
    serving : ModelServing or None
        The scoring role's processor and model followers.
    state_topic : str or None
        The scoring role's state topic.
    state_consumer : callable or None
        Returns a group-less ``kafka.KafkaConsumer`` for reading the state
        topic (created on first use, in a thread).
    influx : AsyncInfluxV1Client
        For the per-assignment report point.
    on_stored : callable or None
        Called after each batch's delivery ran and its counters were added
        (the worker rewrites its stats file there).
    """

    def __init__(
        self,
        app: Any,
        role: str,
        sinks: list[Any],
        stats: WorkerStats,
        states: LineStates,
        serving: ModelServing | None = None,
        state_topic: str | None = None,
        state_consumer: Callable[[], Any] | None = None,
        influx: Any = None,
        worker_tag: str = "",
        on_stored: Callable[[], None] | None = None,
    ) -> None:
        self.app, self.role, self.sinks, self.stats = app, role, sinks, stats
        self.states, self.serving = states, serving
        self.state_topic, self._state_consumer_factory = state_topic, state_consumer
        self._state_consumer: Any = None
        self.influx, self.worker_tag = influx, worker_tag
        self.on_stored = on_stored
        self.offsets = OffsetTracker()
        # Bumped on every rebalance: a batch taken in an earlier assignment
        # commits nothing (its records are consumed again: duplicates, never loss).
        self.generation = 0
        self.inflight: dict[str, asyncio.Future[Any]] = {}
        # This assignment: when it came, restore figures, first stored batch.
        self.assignment: dict[str, Any] = {}
        # The telemetry partitions of the current assignment; empty from the
        # start of a revocation to the next assignment, when no batch starts
        # scoring.
        self.owned: set[int] = set()

    # -- rebalances ------------------------------------------------------------
    def assigned(self, partitions: set[int], total: int) -> None:
        """Partitions were assigned: a new generation; preload their models."""
        kafka_internals.shorten_fetch_wait(self.app)
        self._new_generation()
        self.stats.assignments += 1
        self.assignment = {"at": time.monotonic(), "partitions": sorted(partitions)}
        self.owned = set(partitions)
        if self.serving is not None:
            lines = self.serving.preload(partitions, total)
            log.info(
                "telemetry partitions assigned: %s of %d (%d lines with models)",
                sorted(partitions),
                total,
                len(lines),
            )

    async def revoked(self) -> None:
        """Let the batch being scored and those being stored finish, then forget.

        The last store queued ends after all before it, so waiting for it
        waits for every stored batch's commit; another worker may own these
        lines next, and our copy of their state would go stale.

        No batch starts scoring from the first line of this method on
        (it empties ``owned``, which :meth:`prepare` checks where it starts
        the thread):
        forgetting the lines' state under a batch being scored would score its
        remaining frames from a fresh state -- a stray incident inside a real
        one, written to InfluxDB by a batch that is never committed.
        """
        self.owned = set()
        while busy := [
            task
            for task in (self.inflight.get("compute"), self.inflight.get("deliver"))
            if task is not None and not task.done()
        ]:
            # A batch scored meanwhile queues its store: wait for that one too.
            for task in busy:
                with contextlib.suppress(Exception):
                    await asyncio.shield(task)
        if self.serving is not None:
            self.serving.processor.forget()
        self.states.forget()
        self._new_generation()

    def _new_generation(self) -> None:
        self.offsets.forget()
        self.generation += 1

    # -- the loop --------------------------------------------------------------
    async def consume(self, stream: Any) -> None:
        """The Faust agent's body."""
        stores = OrderedStores(STORES_PENDING)
        async for taken in stream.take_events(BATCH_RECORDS, within=BATCH_WINDOW_S):
            # A take of large records is scored and stored as several
            # batches, so that storing one overlaps scoring the next.
            for events in batches_by_size(taken, BATCH_BYTES, _value_size):
                await self.step(stream, events, stores)

    async def step(self, stream: Any, events: list[Any], stores: OrderedStores) -> None:
        """Admit and score one batch, then queue its store behind the batches before it."""
        started = time.perf_counter()
        generation = self.generation
        delivery: Delivery | None = None
        try:
            records, offsets = await self.admit(events)
            if records and generation == self.generation:
                delivery = await self.prepare(records, generation)
                if delivery is not None:
                    delivery.offsets = offsets
        except Exception:
            if self.left_at_shutdown():
                return
            self.crash()
        for event in events:
            await stream.ack(event)
        if delivery is not None:
            store = self.store(delivery, generation, started)
            # Waits only while STORES_PENDING stores are unfinished.
            self.inflight["deliver"] = await stores.queue(lambda: store)
        await self.seek_gaps()

    async def admit(self, events: list[Any]) -> tuple[list[RawRecord], dict[Any, int]]:
        """The batch's records in offset order from the committed ones, and its commit.

        A newly assigned partition first gets its committed offset and (for
        the scoring role) its lines' state. Returns no records when the
        assignment changed meanwhile: the batch is consumed again. Records
        of partitions outside the current assignment (fetched before a
        revocation) are left to their owner: scoring them here would write
        that owner's line state.
        """
        generation = self.generation
        events = [e for e in events if e.message.tp.partition in self.owned]
        unknown = {e.message.tp for e in events if not self.offsets.knows(e.message.tp)}
        committed = await kafka_internals.committed_offsets(
            self.app, unknown, on_retry=self._lookup_retried
        )
        if committed and self.serving is not None:
            await self.restore_state(committed, generation)
        if generation != self.generation:
            return [], {}
        for tp, offset in committed.items():
            self.offsets.start(tp, offset)
        taken = [
            e
            for e in events
            if self.offsets.admit(e.message.tp, e.message.offset) is Admission.TAKE
        ]
        # The unbroken progress up to this batch: committed once it is stored.
        return records_of(taken), self.offsets.committable()

    def _lookup_retried(self, _exc: BaseException, _delay: float) -> None:
        self.stats.offset_lookup_retries += 1

    async def restore_state(self, committed: dict[Any, int], generation: int) -> None:
        """Restore the lines of newly seen partitions, bounded; loud on the fallback."""
        assert self.serving is not None and self.state_topic is not None
        if self._state_consumer is None and self._state_consumer_factory is not None:
            self._state_consumer = await asyncio.to_thread(self._state_consumer_factory)
        by_partition = {tp.partition: offset for tp, offset in committed.items()}
        result = await restore(
            self.app.producer,
            self._state_consumer,
            self.state_topic,
            by_partition,
            STATE_RESTORE_TIMEOUT_S,
        )
        if generation != self.generation:
            return  # revoked while reading: the next assignment restores again
        self.stats.state_restores += 1
        if result.unfinished:
            self.stats.state_restore_timeouts += 1
            log.error(
                "line state of partitions %s not read within %.1f s; FALLBACK: their lines "
                "resume from the newest state read, or fresh",
                sorted(result.unfinished),
                STATE_RESTORE_TIMEOUT_S,
            )
        processor = self.serving.processor
        for line, (partition, snapshot, rule) in result.lines.items():
            if rule == "ahead":
                self.stats.state_ahead += 1
                log.error("line %s: no state valid at the committed offset; starts fresh", line)
            if snapshot is None:
                continue
            processor.restore_state(line, orjson.loads(snapshot))
            self.states.restored(line, partition, by_partition[partition], snapshot)
            self.stats.lines_restored += 1
        self.assignment.setdefault("restore_s", 0.0)
        self.assignment["restore_s"] += result.seconds
        self.assignment["lines_restored"] = self.assignment.get("lines_restored", 0) + sum(
            1 for _, s, _ in result.lines.values() if s is not None
        )
        log.info(
            "line state of partitions %s restored in %.2f s: %d lines",
            sorted(by_partition),
            result.seconds,
            len(result.lines),
        )

    async def prepare(self, records: list[RawRecord], generation: int) -> Delivery | None:
        """Score (or, archiving, encode) a batch off the event loop; nothing is sent yet.

        Returns None, scoring nothing, once a revocation has begun or the
        assignment ``generation`` has ended: the batch is consumed again.
        """
        if self.serving is None:
            lines = (await asyncio.to_thread(archive_lines, records))[0]
            return Delivery(records=records, points=lines)
        await self.serving.caught_up()
        if not self.owned or generation != self.generation:
            return None
        processor = self.serving.processor
        # Scoring is CPU-bound: off the event loop, so heartbeats keep flowing.
        computing = asyncio.ensure_future(asyncio.to_thread(processor.process, records))
        self.inflight["compute"] = computing
        outcome = await computing
        # Snapshot now: a rebalance can make the processor forget these lines
        # while the stores before this one run.
        partition_of = {r.key.decode("utf-8", "replace"): r.partition for r in records if r.key}
        states = {
            line: (partition_of[line], orjson.dumps(processor.export_state(line)))
            for line in outcome.lines
            if line in partition_of
        }
        return Delivery(
            records=records,
            points=outcome.influx_lines,
            dead_letters=list(outcome.dead_letters),
            alerts=outcome.alerts,
            incidents=outcome.incidents,
            states=states,
            imputed=dict(outcome.imputed),
            done={
                "frames": outcome.frames_scored,
                "duplicates": outcome.duplicates,
                "historical_alerts_suppressed": outcome.historical_alerts_suppressed,
            },
        )

    async def store(self, delivery: Delivery, generation: int, started: float) -> None:
        """Run the delivery protocol for one batch; a failure stops the worker uncommitted."""
        # Checked by the state and commit steps when they run, not now: the
        # points step can wait out an InfluxDB outage across a rebalance.
        delivery.still_current = lambda: generation == self.generation
        try:
            await deliver(delivery, self.sinks)
        except Exception:
            if self.left_at_shutdown():
                return
            self.crash()
        done = delivery.done
        if self.serving is None:
            done["frames"] = sum(block.count("\n") + 1 for block in delivery.points)
        self.stats.add(done, len(delivery.records), time.perf_counter() - started, delivery.imputed)
        if self.on_stored is not None:
            try:
                self.on_stored()
            except Exception as exc:  # reporting must never stop the worker
                log.debug("stats not written: %s", exc)
        if delivery.still_current() and "stored_s" not in self.assignment and done.get("frames"):
            await self.report_assignment()

    async def report_assignment(self) -> None:
        """One point per assignment: time from assignment to its first stored batch."""
        a = self.assignment
        a["stored_s"] = time.monotonic() - a.get("at", time.monotonic())
        fields = {
            "to_first_scored_s": a["stored_s"],
            "restore_s": a.get("restore_s", 0.0),
            "lines_restored": a.get("lines_restored", 0),
            "restore_timeouts": self.stats.state_restore_timeouts,
            "partitions": ",".join(map(str, a.get("partitions", []))),
        }
        log.info(
            "assignment %s: first batch stored after %.2f s", a.get("partitions"), a["stored_s"]
        )
        point = encode_point(
            ASSIGNMENT_MEASUREMENT,
            {"worker": self.worker_tag, "role": self.role},
            fields,
            time.time_ns(),
        )
        try:
            await self.influx.write(point)
        except Exception as exc:  # metrics must never stop the worker
            log.debug("assignment report not written: %s", exc)

    def left_at_shutdown(self) -> bool:
        """Whether a batch that just failed did so because the worker is stopping.

        On a graceful stop (SIGTERM, a scale-in) Faust stops the producer and
        the consumer while a batch may still be on its way through the
        delivery protocol; its next step then fails ("producer not started").
        That batch is simply left uncommitted -- its records are consumed
        again by the partitions' next owner, and its points are keyed, so
        nothing is lost or doubled -- and the process exits as asked (0), not
        as a crash (70). Any failure while the worker is not stopping is a
        crash.
        """
        if not getattr(self.app, "should_stop", False):
            return False
        log.warning(
            "%s batch left uncommitted: the worker is stopping (%s)",
            self.role,
            sys.exc_info()[1],
        )
        return True

    def crash(self) -> None:
        """Stop the process at once, uncommitted.

        A bug must not turn into silent loss, nor into a silent stall of a
        batch that is never committed. Nothing past the last stored batch was
        committed, so the supervisor's restart consumes the failed batch again.
        """
        log.exception("%s batch failed; stopping the worker uncommitted", self.role)
        for handler in logging.getLogger().handlers:
            handler.flush()
        os._exit(70)  # EX_SOFTWARE

    async def seek_gaps(self) -> None:
        """Re-seek partitions whose next offset did not arrive in order."""
        for tp, offset in self.offsets.seeks_due().items():
            first, above = self.offsets.gaps().get(tp, (offset, None))
            log.warning(
                "offsets %d..%s of %s were not delivered in order; re-fetching from %d",
                first,
                "?" if above is None else above - 1,
                tp,
                offset,
            )
            try:
                await self.app.consumer.seek(tp, offset)
            except Exception as exc:  # retried by the next call
                log.warning("seek of %s to %d failed: %s", tp, offset, exc)

    def on_committed(self, offsets: dict[Any, int]) -> None:
        """A commit succeeded: offsets tracker and line-state bookkeeping follow."""
        self.offsets.committed(offsets)
        self.states.committed({tp.partition: o for tp, o in offsets.items()})
