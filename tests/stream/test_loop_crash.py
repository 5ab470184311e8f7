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


class App:  # what the loop asks of the Faust app here: is it stopping?
    should_stop = len(sys.argv) > 2 and sys.argv[2] == "stopping"


sinks = [Step(name, name == sys.argv[1]) for name in STEPS]
loop = ConsumeLoop(App(), "score", sinks, WorkerStats(), LineStates())
asyncio.run(loop.store(Delivery(records=[object()]), loop.generation, 0.0))
print("stored", loop.stats.batches, flush=True)
"""


def _run(step: str, *state: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", CHILD, step, *state], capture_output=True, text=True, timeout=120
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


def test_a_delivery_failing_because_the_worker_is_stopping_is_left_uncommitted_not_a_crash() -> (
    None
):
    """A graceful stop stops Faust's producer under a batch still being delivered
    (seen in the scale-out test: exit 70 on SIGTERM). The batch stays
    uncommitted -- the next owner consumes it again -- and the process goes on
    stopping instead of reporting a crash."""
    child = _run("events", "stopping")
    assert child.returncode == 0, child.stderr
    ran = child.stdout.split()
    assert ran[: ran.index("events") + 1] == list(STEPS[: STEPS.index("events") + 1])
    assert "commit" not in ran
    assert "left uncommitted: the worker is stopping" in child.stderr
