"""Micro-batches bounded by bytes, and stores that run in batch order."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

__all__ = ["OrderedStores", "batches_by_size"]

T = TypeVar("T")


def batches_by_size(items: Sequence[T], max_bytes: int, size: Callable[[T], int]) -> list[list[T]]:
    """Split ``items``, in order, into runs of at most ``max_bytes`` each.

    An item larger than ``max_bytes`` makes a run of its own: it is never
    split or dropped. The worker uses this to bound a micro-batch by the
    bytes of telemetry it holds rather than by its record count alone, since
    a record carries anything from one frame to thousands.
    """
    runs: list[list[T]] = []
    run: list[T] = []
    held = 0
    for item in items:
        n = size(item)
        if run and held + n > max_bytes:
            runs.append(run)
            run, held = [], 0
        run.append(item)
        held += n
    if run:
        runs.append(run)
    return runs


class OrderedStores:
    """Stores that run one at a time, in the order they were queued.

    A micro-batch's store ends with the commit of its offsets, and a Kafka
    commit covers every offset before it: so store N+1 may start only once
    store N is done, whatever finishes first. Scoring queues a store and goes
    on with the next batch; :meth:`queue` waits only while ``pending``
    stores are still unfinished, which bounds the memory of scored batches
    waiting to be stored.
    """

    def __init__(self, pending: int) -> None:
        if pending < 1:
            raise ValueError(f"pending must be >= 1; got {pending!r}")
        self.pending = pending
        self._queued: deque[asyncio.Future[None]] = deque()

    async def queue(self, store: Callable[[], Awaitable[None]]) -> asyncio.Future[None]:
        """Queue ``store()`` behind the stores before it; returns its future (the last to end)."""
        while self._queued and (self._queued[0].done() or len(self._queued) >= self.pending):
            await self._queued.popleft()
        before = self._queued[-1] if self._queued else None

        async def in_turn() -> None:
            if before is not None:
                await before
            await store()

        future = asyncio.ensure_future(in_turn())
        self._queued.append(future)
        return future
