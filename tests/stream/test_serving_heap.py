"""The worker's heap: start-up objects frozen out of garbage collection."""

from __future__ import annotations

import gc
import weakref

from lineguard.stream.serving import freeze_long_lived_objects


class _Node:
    """A cyclic object: only the collector can free it."""

    def __init__(self) -> None:
        self.me = self


def test_frozen_objects_leave_collections_and_new_garbage_is_still_freed() -> None:
    kept = [_Node() for _ in range(1000)]
    try:
        freeze_long_lived_objects()
        # Everything alive at the call, these nodes included, is frozen.
        assert gc.get_freeze_count() >= len(kept)
        assert not any(gc.is_tracked(n) and n in gc.get_objects(2) for n in kept[:5])
        garbage = _Node()
        gone = weakref.ref(garbage)
        del garbage
        gc.collect()
        assert gone() is None  # a cycle made after freezing is still collected
    finally:
        gc.unfreeze()


def test_freezing_again_frees_cycles_dropped_since_the_last_freeze() -> None:
    node = _Node()
    gone = weakref.ref(node)
    try:
        freeze_long_lived_objects()
        del node  # a model replaced after a rebalance, say
        freeze_long_lived_objects()
        assert gone() is None
    finally:
        gc.unfreeze()
