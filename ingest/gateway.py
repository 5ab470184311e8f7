"""Edge gateway: publish a line's telemetry to Kafka, many frames per record.

The gateway runs on an edge box at the site, so it uses kafka-python (pure
Python, nothing to compile). It replays a recorded run (SKAB layout) as the
line's live telemetry: frames are sent when their sampling time comes, scaled
by ``speed``, and frames that fall due within ``flush_interval_s`` of each
other share one record. That keeps latency bounded while the broker and the
worker pay their per-record cost once per hundreds of frames.

The Kafka key is the line id, so one line's frames stay in one partition, in
order. Each record carries the gateway's sequence number, persisted on disk so
it keeps increasing across gateway restarts.

Store-and-forward (:class:`StoreAndForward`): with a :class:`DiskBuffer`, every
record is appended to the disk buffer first and removed only once the broker
acknowledged it. While the broker is unreachable records pile up on disk
(bounded, with a drop policy that is counted and logged); when it is back the
buffer drains oldest first, before any newer record, because newer records
simply sit behind it in the same queue. A record that reaches the broker late
(resent after a failure, or older than ``historical_after_s``) is marked
``historical``: the worker scores and stores it but raises no live alert for
it. A record resent after a failure may reach the broker twice; the worker
drops the second copy by its ``(gateway, seq)``.

The live gateway (:mod:`lineguard.ingest.live`) uses the sequence counter,
the producer and store-and-forward but not the replay, so numpy, the numpy
encoder and the CSV reader are imported by the replay functions only: the
live gateway's process never loads numpy (docs/gateway.md, "Memory").
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from lineguard.contracts import TELEMETRY_V3
from lineguard.ingest.buffer import BufferedRecord, BufferFull, DiskBuffer
from lineguard.ingest.wire_v3 import BINARY_MAGIC
from lineguard.retry import Backoff
from lineguard.settings import KafkaSettings

if TYPE_CHECKING:
    import numpy as np

    from lineguard.ingest.csv_runs import RecordedRun

__all__ = [
    "ReplayStats",
    "SequenceCounter",
    "StoreAndForward",
    "close_now",
    "make_producer",
    "mark_historical",
    "plan_records",
    "replay",
]

log = logging.getLogger(__name__)


class SequenceCounter:
    """A per-gateway record sequence number that survives restarts.

    Parameters
    ----------
    path : Path or None
        File holding the next number. ``None`` keeps it in memory only,
        starting from the current time in microseconds, which still
        increases across restarts of a gateway whose clock is sane.
    """

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        if path is not None and path.exists():
            self._next = int(path.read_text().strip() or 0)
        elif path is not None:
            self._next = 0
        else:
            self._next = time.time_ns() // 1000

    def take(self) -> int:
        """Return the next sequence number and persist the one after it."""
        value = self._next
        self._next += 1
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(str(self._next))
            os.replace(tmp, self.path)  # atomic: a crash never leaves half a number
        return value


@dataclass
class ReplayStats:
    """What one replay sent."""

    records: int = 0
    frames: int = 0
    bytes: int = 0
    seconds: float = 0.0
    #: With store-and-forward: records still buffered on disk at the end
    #: (sent on the next start), sent as historical, dropped by a full buffer.
    buffered: int = 0
    historical: int = 0
    dropped: int = 0


def plan_records(
    due_s: np.ndarray, *, max_frames: int, flush_interval_s: float
) -> list[tuple[int, int, float]]:
    """Group frames into records by when they fall due.

    Parameters
    ----------
    due_s : ndarray, shape (n,)
        Non-decreasing wall-clock offset (seconds from replay start) at which
        each frame is sampled.
    max_frames : int
        Most frames in one record.
    flush_interval_s : float
        A record holds frames due within this long of its first frame, so no
        frame waits longer than this in the gateway.

    Returns
    -------
    list of (start, stop, send_at_s)
        Frame index ranges and when to send each record (the due time of its
        last frame).
    """
    import numpy as np

    if max_frames < 1:
        raise ValueError(f"max_frames must be >= 1; got {max_frames}")
    n = len(due_s)
    plan: list[tuple[int, int, float]] = []
    start = 0
    while start < n:
        # Last frame due within the flush interval of the first one.
        stop = int(np.searchsorted(due_s, due_s[start] + flush_interval_s, side="right"))
        stop = min(max(stop, start + 1), start + max_frames, n)
        plan.append((start, stop, float(due_s[stop - 1])))
        start = stop
    return plan


def make_producer(settings: KafkaSettings, **overrides: Any) -> Any:
    """A kafka-python producer tuned for ordered, durable telemetry.

    One request in flight per connection keeps a line's records in order even
    when a send is retried; ``acks="all"`` waits until the broker stored it.
    """
    from kafka import KafkaProducer  # imported lazily: only the gateway needs it

    config: dict[str, Any] = {
        "acks": "all",
        "linger_ms": 20,
        "retries": 2147483647,
        "max_in_flight_requests_per_connection": 1,
        "max_request_size": 8 * 1024 * 1024,
        "request_timeout_ms": 10_000,
        # A record not stored within this long fails, and store-and-forward
        # takes over (the record is still in the disk buffer); never block a
        # send for a minute waiting for metadata of an unreachable broker.
        "delivery_timeout_ms": 30_000,
        "max_block_ms": 10_000,
        # A fixed protocol level skips the version probe at construction, so
        # a gateway (re)starting during a broker outage comes up and buffers.
        # Kafka >= 2.5 (and Tansu) serve it.
        "api_version": (2, 5),
        **settings.kafka_python_config(),
    }
    config.update(overrides)
    return KafkaProducer(**config)


def close_now(producer: Any, wait_s: float = 2.0) -> None:
    """Close a kafka-python producer at once, dropping what it has not sent.

    ``close(timeout=0)`` is not that in kafka-python 3: it flushes first and
    raises ``KafkaTimeoutError`` while records are pending, before it stops
    the client's I/O thread, which then sends them whenever the broker is
    back. So the I/O thread is force-closed first (it fails every pending
    record's future), then the client is closed. ``wait_s`` bounds the wait
    for the thread to end.
    """
    sender = getattr(producer, "_sender", None)
    if sender is not None:
        sender.force_close()
        sender.join(wait_s)
    with contextlib.suppress(Exception):
        producer.close(timeout=0)


def mark_historical(payload: bytes) -> bytes:
    """The same record (any wire-format version) flagged historical.

    v3 keeps the flag in a fixed byte. In JSON records
    :func:`lineguard.ingest.contract.encode` always writes it right after
    ``seq`` and before any free text (identifiers cannot hold quotes), so
    the first occurrence is the top-level key; anything else is parsed and
    re-serialized.
    """
    if payload[:4] == BINARY_MAGIC and len(payload) > 4:
        return payload[:4] + bytes([payload[4] | 0x01]) + payload[5:]
    live = b'"historical":false'
    if live in payload:
        return payload.replace(live, b'"historical":true', 1)
    if b'"historical":true' in payload:
        return payload
    doc = orjson.loads(payload)
    doc["historical"] = True
    return orjson.dumps(doc)


@dataclass
class _InFlight:
    record: BufferedRecord
    future: Any
    historical: bool
    sent_at: float  # time.monotonic()


class StoreAndForward:
    """Send records through a disk buffer, so a broker outage loses nothing.

    Every record is appended to ``buffer`` and sent from there, oldest
    first; it leaves the buffer once the broker acknowledged it (and every
    record before it). When a send fails (broker unreachable, delivery
    timeout), the sender rewinds to the oldest unacknowledged record and
    retries with bounded exponential backoff (``retry_first_s`` doubling to
    ``retry_max_s``), while new records keep being appended behind. Until the
    buffer has drained, everything sent is marked historical.

    Parameters
    ----------
    producer
        A kafka-python ``KafkaProducer`` (see :func:`make_producer`).
    topic : str
        Telemetry topic.
    buffer : DiskBuffer
        The gateway's disk buffer; records left in it from a previous run
        are sent first (as historical when older than ``historical_after_s``).
    max_in_flight : int
        Most records sent but not yet acknowledged (bounds memory).
    historical_after_s : float
        A record sent later than this after it was produced is marked
        historical even without a failure (e.g. left over from a restart).
    retry_first_s, retry_max_s : float
        Backoff between attempts while the broker is unreachable.
    stuck_after_s : float
        A send neither acknowledged nor failed after this long means the
        client is wedged (its own delivery timeout, 30 s in
        :func:`make_producer`, should have failed it): measured here, a
        kafka-python 3.0 producer kept one future pending for minutes after a
        network cut healed. The sender then rewinds and resends, through a
        new producer when ``producer_factory`` is given.
    producer_factory : callable, optional
        Builds a replacement producer (e.g. ``lambda: make_producer(kafka)``).
    """

    def __init__(
        self,
        producer: Any,
        topic: str,
        buffer: DiskBuffer,
        *,
        max_in_flight: int = 1000,
        historical_after_s: float = 10.0,
        retry_first_s: float = 0.5,
        retry_max_s: float = 30.0,
        stuck_after_s: float = 60.0,
        producer_factory: Callable[[], Any] | None = None,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1; got {max_in_flight}")
        self.producer = producer
        self.topic = topic
        self.buffer = buffer
        self.max_in_flight = max_in_flight
        self.historical_after_s = historical_after_s
        self.retry_first_s = retry_first_s
        self.retry_max_s = retry_max_s
        self.stuck_after_s = stuck_after_s
        self.producer_factory = producer_factory
        self.producers_replaced = 0
        self._in_flight: deque[_InFlight] = deque()
        self._recovering = False
        self._down_since: float | None = None
        self._retry_at = 0.0
        # Failed attempts in the current outage: the next wait is the house
        # backoff's delay for that attempt (lineguard.retry). The sender does
        # not block on a retry loop: pump() sends again once it is due.
        self._backoff = Backoff(retry_first_s, max(retry_first_s, retry_max_s))
        self._attempts = 0
        self.sent = 0
        self.sent_historical = 0
        self.failures = 0
        self.outages = 0
        self.dropped_newest = 0

    def __repr__(self) -> str:
        return f"StoreAndForward(topic={self.topic!r}, buffer={self.buffer!r})"

    @property
    def online(self) -> bool:
        """False from a failed send until the broker acknowledges again."""
        return self._down_since is None

    def pending(self) -> int:
        """Records not yet acknowledged by the broker (on disk)."""
        return len(self.buffer)

    def send(self, key: bytes, payload: bytes) -> None:
        """Append a record to the buffer, then send what can be sent.

        Never raises for a broker problem: the record is on disk. A full
        buffer with ``drop_newest`` drops this record (counted and logged
        by the buffer).
        """
        # Acknowledgements first: a drained buffer ends recovery, so this
        # record goes out live instead of queued behind stale state.
        self._reap()
        try:
            self.buffer.append(key, payload)
        except BufferFull:
            self.dropped_newest += 1
        self.pump()

    def pump(self) -> None:
        """Collect acknowledgements and send more records; never blocks long."""
        self._reap()
        if self._down_since is not None and time.monotonic() < self._retry_at:
            return
        self._dispatch()

    def drain(self, timeout_s: float | None = None) -> bool:
        """Send until the buffer is empty or ``timeout_s`` passed.

        Returns
        -------
        bool
            Whether everything was acknowledged; what is left stays on disk
            and is sent by the next :class:`StoreAndForward` on this buffer.
        """
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            self.pump()
            if not self._in_flight and len(self.buffer) == 0:
                return True
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                return False
            step = 1.0 if deadline is None else min(1.0, deadline - now)
            if self._in_flight:
                with contextlib.suppress(Exception):  # failures are seen by _reap
                    self._in_flight[-1].future.get(timeout=step)
            else:
                time.sleep(max(min(self._retry_at - now, step), 0.01))

    def stats(self) -> dict[str, int]:
        """Sender and buffer counters (for logs and metrics)."""
        return {
            "sent": self.sent,
            "sent_historical": self.sent_historical,
            "send_failures": self.failures,
            "outages": self.outages,
            "producers_replaced": self.producers_replaced,
            "in_flight": len(self._in_flight),
            **{f"buffer_{k}": v for k, v in self.buffer.stats().as_dict().items()},
        }

    def _reap(self) -> None:
        self._check_stuck()
        last = None
        failed: Exception | None = None
        while self._in_flight and self._in_flight[0].future.is_done:
            item = self._in_flight.popleft()
            if item.future.failed():
                failed = item.future.exception
                break
            last = item.record.end
            self.sent += 1
            self.sent_historical += item.historical
        if last is not None:
            self.buffer.commit(last)
            if self._down_since is not None:
                log.warning(
                    "broker reachable again after %.1f s; draining %d buffered records",
                    time.monotonic() - self._down_since,
                    len(self.buffer),
                )
                self._down_since = None
                self._attempts = 0
        if failed is not None:
            self._failed(failed)
        elif self._recovering and not self._in_flight and len(self.buffer) == 0:
            self._recovering = False
            log.warning("gateway buffer drained; back to live sending (%s)", self.stats())

    def _check_stuck(self) -> None:
        if not self._in_flight or self._in_flight[0].future.is_done:
            return
        waited = time.monotonic() - self._in_flight[0].sent_at
        if waited < self.stuck_after_s:
            return
        log.warning(
            "no acknowledgement or error for a send after %.0f s: the Kafka client is "
            "wedged; resending %d buffered records%s",
            waited,
            len(self.buffer),
            " through a new producer" if self.producer_factory else "",
        )
        if self.producer_factory is not None:
            self.producers_replaced += 1  # replaced by _failed's fence
        self._failed(TimeoutError(f"send not acknowledged after {waited:.0f} s"))

    def _failed(self, error: BaseException | None) -> None:
        now = time.monotonic()
        self.failures += 1
        if self._down_since is None:
            self._down_since = now
            self._attempts = 1
            self.outages += 1
            log.warning(
                "broker unreachable (%s): buffering on disk in %s, %d records pending",
                error,
                self.buffer.directory,
                len(self.buffer),
            )
        else:
            self._attempts += 1
        delay = self._backoff.delay(self._attempts)
        if self._attempts > 1:
            log.info("broker still unreachable (%s); next attempt in %.1f s", error, delay)
        self._retry_at = now + delay
        self._recovering = True
        # Records after the failed one may or may not have been stored; all
        # are sent again and the worker drops copies by (gateway, seq).
        self._in_flight.clear()
        self.buffer.rewind()
        self._fence()

    def _fence(self) -> None:
        """Stop the producer from storing anything queued behind a failed record.

        A record that failed (delivery timeout) is sent again; records queued
        behind it in the client would otherwise still go out once the broker
        is back, ahead of the resend, and the line's frames would reach the
        worker out of order (measured: incidents differing from an
        uninterrupted run after an 8 s cut). Closing the client at once
        aborts what it has not sent; a new one sends from the failed record on.
        """
        if self.producer_factory is None:
            return
        old, self.producer = self.producer, self.producer_factory()
        close_now(old)

    def _dispatch(self) -> None:
        room = self.max_in_flight - len(self._in_flight)
        if room <= 0:
            return
        now_us = time.time_ns() // 1000
        late_us = self.historical_after_s * 1e6
        for record in self.buffer.read(room):
            historical = self._recovering or now_us - record.appended_at_us > late_us
            value = mark_historical(record.value) if historical else record.value
            try:
                future = self.producer.send(self.topic, key=record.key, value=value)
            except Exception as exc:  # metadata unavailable, producer closed, ...
                self._failed(exc)
                return
            self._in_flight.append(_InFlight(record, future, historical, time.monotonic()))


def replay(
    run: RecordedRun,
    *,
    producer: Any,
    topic: str,
    site: str,
    line: str,
    gateway_id: str,
    sequence: SequenceCounter,
    speed: float = 1.0,
    max_frames: int = 500,
    flush_interval_s: float = 0.5,
    retime: bool = False,
    should_stop: Callable[[], bool] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    forward: StoreAndForward | None = None,
    drain_timeout_s: float | None = 60.0,
    schema: str = TELEMETRY_V3,
) -> ReplayStats:
    """Replay a recorded run as one line's live telemetry.

    Parameters
    ----------
    run : RecordedRun
        The frames to send.
    producer
        A kafka-python ``KafkaProducer`` (see :func:`make_producer`).
    topic, site, line, gateway_id : str
        Where to send, and the record's identity.
    sequence : SequenceCounter
        The gateway's record sequence numbers.
    speed : float
        How many times faster than recorded to replay; ``0`` or less sends as
        fast as the broker takes it.
    max_frames, flush_interval_s
        Record size limits, see :func:`plan_records`.
    retime : bool
        Shift timestamps so the first frame is stamped now, as a live line
        would; otherwise keep the recorded times (so results line up with the
        file's labels).
    should_stop : callable, optional
        Polled between records to end early.
    sleep : callable
        Injected for tests.
    forward : StoreAndForward, optional
        Send through this disk buffer (store-and-forward): a broker outage
        delays records instead of failing the replay. Without it a failed
        send raises at the end.
    drain_timeout_s : float or None
        With ``forward``: how long to keep draining at the end; records not
        acknowledged by then stay on disk for the next start (see
        ``ReplayStats.buffered``). ``None`` waits until drained.
    schema : str
        Wire-format version to send: the binary ``lineguard.telemetry.v3`` by
        default (read in place by the worker; the smallest records);
        ``lineguard.telemetry.v2`` or ``v1`` for consumers that only read JSON.
    """
    import numpy as np

    from lineguard.ingest.contract import TelemetryBatch, encode

    stats = ReplayStats()
    n = len(run)
    if n == 0:
        return stats
    offsets_s = (run.time_us - run.time_us[0]) / 1e6
    due_s = offsets_s / speed if speed > 0 else np.zeros(n)
    time_us = run.time_us
    if retime:
        time_us = time_us - time_us[0] + time.time_ns() // 1000
    key = line.encode("utf-8")
    futures = []
    started = time.monotonic()
    for start, stop, send_at in plan_records(
        due_s, max_frames=max_frames, flush_interval_s=flush_interval_s
    ):
        if should_stop is not None and should_stop():
            break
        wait = send_at - (time.monotonic() - started)
        if wait > 0:
            sleep(wait)
        batch = TelemetryBatch(
            site=site,
            line=line,
            gateway=gateway_id,
            seq=sequence.take(),
            sensors=run.sensors,
            time_us=time_us[start:stop],
            values=run.values[start:stop],
            sent_at_us=time.time_ns() // 1000,
        )
        payload = encode(batch, schema)
        if forward is not None:
            forward.send(key, payload)
        else:
            futures.append(producer.send(topic, key=key, value=payload))
        stats.records += 1
        stats.frames += stop - start
        stats.bytes += len(payload)
    if forward is not None:
        drained = forward.drain(drain_timeout_s)
        stats.buffered = forward.pending()
        stats.historical = forward.sent_historical
        stats.dropped = forward.buffer.stats().dropped
        stats.seconds = time.monotonic() - started
        log.log(
            logging.INFO if drained else logging.WARNING,
            "replayed %d frames of %s in %d records (%.1f s); %s; %s",
            stats.frames,
            line,
            stats.records,
            stats.seconds,
            "all acknowledged" if drained else f"{stats.buffered} records still buffered on disk",
            forward.stats(),
        )
        return stats
    producer.flush()
    failed = [f for f in futures if f.failed()]
    if failed:
        raise RuntimeError(
            f"expected the broker to store all {len(futures)} records of {line}; "
            f"{len(failed)} failed, first: {failed[0].exception!r}"
        ) from failed[0].exception
    stats.seconds = time.monotonic() - started
    log.info(
        "replayed %d frames of %s in %d records (%.1f s)",
        stats.frames,
        line,
        stats.records,
        stats.seconds,
    )
    return stats
