"""The only module that reaches into Faust's or aiokafka's internals.

Faust offers no public way to read a partition's committed offset, to
commit chosen offsets synchronously, or to shorten the fetcher's wait; the
worker needs all three (``detectors/offsets.py`` explains why the worker
commits telemetry offsets itself). Each function here names the private
attribute it uses, so a Faust/aiokafka upgrade that moves one breaks here
and nowhere else.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Hashable
from typing import Any

from lineguard.errors import ServiceUnreachable
from lineguard.retry import Backoff, async_retrying
from lineguard.stream.limits import (
    FETCH_MAX_WAIT_MS,
    LOOKUP_ATTEMPT_S,
    RETRY_FIRST_S,
    RETRY_MAX_S,
)

__all__ = ["CommitOutcome", "commit", "committed_offsets", "shorten_fetch_wait"]

log = logging.getLogger(__name__)


def _consumer_thread(app: Any) -> tuple[Any, Any]:
    # Private: Faust runs aiokafka's consumer in a thread of its own
    # (app.consumer._thread); its consumer object is created lazily.
    thread = app.consumer._thread
    return thread, thread._ensure_consumer()


async def committed_offsets(
    app: Any,
    tps: set[Any],
    on_retry: Callable[[BaseException, float], None] | None = None,
    attempt_s: float = LOOKUP_ATTEMPT_S,
) -> dict[Any, int]:
    """Each partition's committed offset, or its earliest offset when none is committed.

    Retries with bounded backoff (0.2 s doubling to 10 s) while the broker
    does not answer, logging each failed attempt and calling ``on_retry``
    (the worker counts them): the batch waiting on it cannot be scored from
    a position the worker does not know. Each partition's requests are
    bounded by ``attempt_s``: aiokafka would otherwise wait out an
    unreachable broker inside one request for as long as its request timeout
    allows, where no log or counter shows it.
    """
    if not tps:
        return {}
    from aiokafka import TopicPartition

    thread, consumer = _consumer_thread(app)
    found: dict[Any, int] = {}

    async def one(tp: Any) -> int:
        committed = await thread.call_thread(
            consumer.committed, TopicPartition(tp.topic, tp.partition)
        )
        if committed is None or committed < 0:
            # Nothing committed yet: the group starts at the log start
            # (auto_offset_reset=earliest), which retention may have moved.
            earliest = await app.consumer.earliest_offsets(tp)
            committed = max(int(next(iter(earliest.values()), 0) or 0), 0)
        return int(committed)

    # One policy for the whole look-up: the partitions found stay found, and
    # the backoff keeps growing while the broker stays away.
    async for attempt in async_retrying(
        lambda: f"committed-offset look-up of {sorted(map(str, tps - found.keys()))}",
        Backoff(RETRY_FIRST_S, RETRY_MAX_S),
        on_retry=on_retry,
        logger=log,
    ):
        with attempt:
            for tp in tps - found.keys():
                # A read: abandoning it at the bound leaves nothing half done.
                try:
                    found[tp] = await asyncio.wait_for(one(tp), attempt_s)
                except TimeoutError as exc:
                    raise ServiceUnreachable(
                        f"expected the broker to answer the committed-offset request of "
                        f"{tp} within {attempt_s:g} s; no answer came"
                    ) from exc
    return found


class CommitOutcome:
    """What :func:`commit` did: offsets committed, and those no longer ours."""

    def __init__(self, committed: dict[Hashable, int], not_assigned: dict[Hashable, int]) -> None:
        self.committed = committed
        self.not_assigned = not_assigned


async def commit(app: Any, pending: dict[Any, int]) -> CommitOutcome:
    """Commit ``pending`` (partition -> next offset) for the partitions still assigned.

    Offsets of partitions this worker no longer owns are left out (their new
    owner consumes the batch again). A failed request raises: the caller
    decides (the delivery protocol leaves the batch uncommitted).
    """
    from aiokafka import TopicPartition
    from aiokafka.structs import OffsetAndMetadata

    thread, consumer = _consumer_thread(app)
    assigned = consumer.assignment()
    request: dict[Any, Any] = {}
    mine: dict[Hashable, int] = {}
    gone: dict[Hashable, int] = {}
    for tp, offset in pending.items():
        key = TopicPartition(tp.topic, tp.partition)
        if key in assigned:
            request[key] = OffsetAndMetadata(offset, "")
            mine[tp] = offset
        else:
            gone[tp] = offset
    if request:
        await thread.call_thread(consumer.commit, request)
    return CommitOutcome(mine, gone)


def shorten_fetch_wait(app: Any) -> None:
    """Set the aiokafka fetcher's max wait to :data:`FETCH_MAX_WAIT_MS`.

    Faust passes ``fetch_max_wait_ms=1500`` with no setting to change it, so
    the running consumer's fetcher is adjusted in place (private
    ``_fetcher._fetch_max_wait_ms``: skipped with a debug line if an upgrade
    moves it).
    """
    try:
        _, consumer = _consumer_thread(app)
        consumer._fetcher._fetch_max_wait_ms = FETCH_MAX_WAIT_MS
    except AttributeError as exc:
        log.debug("fetch wait left at Faust's default: %s", exc)
