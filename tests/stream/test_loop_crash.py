"""The loop's crash path: a batch whose delivery fails stops the process, uncommitted.

Run in a child process, since the path ends in ``os._exit(70)``: the
process must exit with EX_SOFTWARE, after the failing step and before the
commit, and say why in its log.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from lineguard.stream.protocol import STEPS

CHILD = """
import asyncio, logging, sys
from lineguard.stream.loop import ConsumeLoop
from lineguard.stream.protocol import STEPS, Delivery
from lineguard.stream.state import LineStates
from lineguard.stream.stats import WorkerStats

logging.basicConfig(level=logging.INFO)


class Step:
    def __init__(self, name, fail):
        self.name, self.fail = name, fail

    async def setup(self):
        pass

    def add(self, delivery):
        pass

    async def flush(self):
        print(self.name, flush=True)
        if self.fail:
            raise RuntimeError("disk full")


sinks = [Step(name, name == sys.argv[1]) for name in STEPS]
loop = ConsumeLoop(None, "score", sinks, WorkerStats(), LineStates())
asyncio.run(loop.store(Delivery(records=[object()]), loop.generation, 0.0))
print("stored", loop.stats.batches, flush=True)
"""


def _run(step: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", CHILD, step], capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize("step", ["points", "events", "producer_flush"])
def test_a_failed_delivery_step_stops_the_worker_before_its_commit(step: str) -> None:
    child = _run(step)
    assert child.returncode == 70, child.stderr
    ran = child.stdout.split()
    assert ran == list(STEPS[: STEPS.index(step) + 1])  # nothing after the failure
    assert "commit" not in ran
    assert "stopping the worker uncommitted" in child.stderr
    assert "disk full" in child.stderr


def test_a_delivery_that_succeeds_runs_every_step_and_counts_the_batch() -> None:
    child = _run("none")
    assert child.returncode == 0, child.stderr
    assert child.stdout.split() == [*STEPS, "stored", "1"]
