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
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lineguard.ingest.contract import TelemetryBatch, encode
from lineguard.ingest.csv_runs import RecordedRun
from lineguard.settings import KafkaSettings

__all__ = [
    "ReplayStats",
    "SequenceCounter",
    "make_producer",
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
        "request_timeout_ms": 30_000,
        **settings.kafka_python_config(),
    }
    config.update(overrides)
    return KafkaProducer(**config)


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
    """
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
        payload = encode(batch)
        futures.append(producer.send(topic, key=key, value=payload))
        stats.records += 1
        stats.frames += stop - start
        stats.bytes += len(payload)
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
