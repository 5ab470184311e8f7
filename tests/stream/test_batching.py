"""The worker's store queue: stores (each ending in a commit) run one at a time, in order."""

from __future__ import annotations

import asyncio

import pytest

from lineguard.stream.batching import OrderedStores


def test_stores_run_one_at_a_time_in_the_order_queued() -> None:
    events: list[str] = []

    def store(name: str, seconds: float):
        async def run() -> None:
            events.append(f"start {name}")
            await asyncio.sleep(seconds)
            events.append(f"end {name}")

        return run

    async def main() -> None:
        stores = OrderedStores(pending=3)
        # The first store is the slowest: a later one must still wait for it,
        # or its commit would cover offsets not yet stored.
        await stores.queue(store("a", 0.05))
        await stores.queue(store("b", 0.0))
        last = await stores.queue(store("c", 0.01))
        await last

    asyncio.run(main())
    assert events == ["start a", "end a", "start b", "end b", "start c", "end c"]


def test_queueing_waits_while_pending_stores_are_unfinished() -> None:
    async def main() -> list[str]:
        seen: list[str] = []
        gate = asyncio.Event()

        async def blocked() -> None:
            await gate.wait()
            seen.append("first stored")

        async def quick() -> None:
            seen.append("stored")

        stores = OrderedStores(pending=2)
        await stores.queue(blocked)
        await stores.queue(quick)  # room for two: returns at once
        third = asyncio.ensure_future(stores.queue(quick))
        await asyncio.sleep(0.02)
        seen.append("third queued" if third.done() else "third waiting")
        gate.set()
        await (await third)
        return seen

    seen = asyncio.run(main())
    assert seen == ["third waiting", "first stored", "stored", "stored"]


def test_pending_must_be_positive() -> None:
    with pytest.raises(ValueError, match="pending"):
        OrderedStores(pending=0)
