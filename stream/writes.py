"""InfluxDB writes of the worker: bounded request bodies, bounded retries."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from lineguard.influx import AsyncInfluxV1Client, InfluxWriteError, failure_text
from lineguard.retry import Backoff, async_retrying
from lineguard.stream.limits import MAX_WRITE_BYTES, RETRY_FIRST_S, RETRY_MAX_S
from lineguard.stream.stats import WorkerStats

__all__ = ["write_bodies", "write_until_accepted"]

log = logging.getLogger(__name__)

_BACKOFF = Backoff(RETRY_FIRST_S, RETRY_MAX_S)


def write_bodies(lines: Sequence[str], max_bytes: int = MAX_WRITE_BYTES) -> list[str]:
    """Group line-protocol blocks into request bodies of at most ``max_bytes``.

    InfluxDB 1.x refuses a body over its ``max-body-size`` (25 MB by default)
    by closing the connection, so one unbounded body per micro-batch would
    be retried forever once a backlog made batches large (measured: 200k
    score points, or far fewer raw-telemetry points with 50 fields each).
    Blocks stay whole unless one alone is too large; then it is cut at line
    boundaries. A single line longer than ``max_bytes`` gets a body of its own.
    """
    pieces: list[str] = []
    for block in lines:
        if len(block) <= max_bytes:
            pieces.append(block)
        else:
            pieces.extend(block.split("\n"))
    bodies: list[str] = []
    current: list[str] = []
    size = 0
    for piece in pieces:
        if not piece:
            continue
        if current and size + len(piece) + 1 > max_bytes:
            bodies.append("\n".join(current))
            current, size = [], 0
        current.append(piece)
        size += len(piece) + 1
    if current:
        bodies.append("\n".join(current))
    return bodies


async def write_until_accepted(
    sink: AsyncInfluxV1Client,
    lines: Sequence[str],
    stats: WorkerStats,
    max_bytes: int = MAX_WRITE_BYTES,
) -> InfluxWriteError | None:
    """Write to InfluxDB, retrying with bounded backoff while it is unreachable.

    The batch goes as bodies of at most ``max_bytes`` (:func:`write_bodies`),
    one request at a time: a fleet's workers already keep InfluxDB's cores
    busy with their own requests, and on the benchmark's host two requests
    in flight per worker gave no measurable gain. Returns the first error
    where InfluxDB refuses the data itself (HTTP 400): such a body will never
    be accepted, so the caller dead-letters the batch instead of blocking the
    line forever; the batch's other bodies are still written (a point
    written twice is simply overwritten).
    """
    refused: InfluxWriteError | None = None
    for body in write_bodies(lines, max_bytes):
        error = await _write_body_until_accepted(sink, body, stats)
        refused = refused or error
    return refused


async def _write_body_until_accepted(
    sink: AsyncInfluxV1Client, body: str, stats: WorkerStats
) -> InfluxWriteError | None:
    def down(exc: BaseException, _delay: float) -> None:
        stats.write_retries += 1
        stats.sink_down, stats.sink_error = True, failure_text(exc)

    # Never gives up while InfluxDB is unreachable: the batch is not
    # committed until its points are in, so nothing is dropped.
    async for attempt in async_retrying(
        f"InfluxDB write of {len(body)} bytes at {sink.endpoint}",
        _BACKOFF,
        describe=failure_text,
        on_retry=down,
        logger=log,
    ):
        with attempt:
            try:
                await sink.write(body, precision="ns")
            except InfluxWriteError as exc:
                if exc.status != 400:
                    raise
                # Refused data is never accepted: reported, not retried.
                stats.write_errors += 1
                return exc
            stats.sink_down = False
            return None
    raise AssertionError("unreachable: the write policy retries until InfluxDB answers")
