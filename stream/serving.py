"""Model serving in the worker: preload on assignment, hot reload and shadows.

Hot reload and shadows are followed from the compacted models topic by
:class:`~lineguard.stream.model_updates.ModelUpdates` (a thread of its
own) and applied between micro-batches by the processor. This module
starts those followers, loads the models of newly assigned lines off the
scoring path, and keeps start-up objects out of garbage collection.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from typing import Any

from lineguard.models.registry import Registry
from lineguard.settings import Settings
from lineguard.stream.feedback import FeedbackConsumer
from lineguard.stream.model_updates import ModelUpdates
from lineguard.stream.processor import TelemetryProcessor

__all__ = ["ModelServing", "freeze_long_lived_objects", "lines_on_partitions"]

log = logging.getLogger(__name__)


def lines_on_partitions(lines: list[str], partitions: set[int], total: int) -> list[str]:
    """The lines whose telemetry lands on ``partitions``.

    Gateways key records by line and use Kafka's default partitioner
    (murmur2 of the key, as the Java client and kafka-python do), so a
    line's partition is known without reading its records.
    """
    from kafka.partitioner.default import murmur2

    return [
        line
        for line in lines
        if (murmur2(line.encode("utf-8")) & 0x7FFFFFFF) % max(total, 1) in partitions
    ]


def freeze_long_lived_objects() -> None:
    """Keep the objects alive now out of every later garbage collection.

    After start-up a worker holds some 200k objects that live as long as it
    does (Faust, aiokafka, the lines' models), and each full collection
    walked all of them: about 0.1 s with the scoring thread stopped, several
    times a minute under load (measured with ``gc.callbacks``: 0.26 s of a
    5 s backlog run). Frozen, a collection only visits what was allocated
    since. Unfreezing first lets the collection free what a rebalance or a
    model reload let go.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()


class ModelServing:
    """The processor, its model followers, and preloading on assignment.

    Parameters
    ----------
    settings : Settings
        Registry, topics and broker.
    follow : bool
        Follow the models topic (promote, rollback, shadow) and store QA
        feedback: the scoring role does, tests of the calculation do not.
    """

    def __init__(self, settings: Settings, follow: bool = True) -> None:
        self.updates = ModelUpdates(settings) if follow else None
        self.feedback = FeedbackConsumer(settings) if follow else None
        self.processor = TelemetryProcessor(Registry(settings.registry_dir), updates=self.updates)
        self._background: set[asyncio.Future[Any]] = set()

    def start(self) -> None:
        """Start following model announcements and feedback (threads)."""
        if self.updates is not None:
            self.updates.start()
        if self.feedback is not None:
            self.feedback.start()

    async def caught_up(self, timeout_s: float = 15.0) -> None:
        """After a start, know every line's announced version before scoring."""
        if self.updates is not None and not self.updates.caught_up():
            await asyncio.to_thread(self.updates.wait_caught_up, timeout_s)

    def preload(self, partitions: set[int], total: int) -> list[str]:
        """Load the models of the lines on ``partitions`` in the background; returns the lines.

        Loading while the group settles keeps the first records of a newly
        assigned partition from waiting on skops and hash checks.
        """
        lines = lines_on_partitions(self.processor.registry.lines(), partitions, total)
        task = asyncio.ensure_future(asyncio.to_thread(self.processor.preload, lines))
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        task.add_done_callback(lambda _: freeze_long_lived_objects())
        return lines
