"""Scale-out on the real broker and InfluxDB: workers join and leave one group mid-replay.

``lineguard worker`` processes share one consumer group. The gateways keep
replaying while, three times, a worker joins (the group rebalances and the
partitions are split) and then the oldest one leaves (they move to the
newcomer). Every frame must still have exactly one ``lineguard_score``
point, and the incidents must be those of an uninterrupted run of the same
frames. Nothing is mocked.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from lineguard.demo import WorkerProcess
from lineguard.influx import InfluxV1Client
from lineguard.ingest.csv_runs import read_run
from lineguard.ingest.gateway import SequenceCounter, make_producer, replay
from lineguard.settings import InfluxSettings, KafkaSettings, Settings, TopicSettings
from lineguard.stream.processor import RESULT_MEASUREMENT
from lineguard.stream.worker import ensure_topics
from tests.support.faults import (
    assignments_counted,
    reference_incidents,
    stats_path,
    stored_incidents,
)
from tests.support.workers import train_lines

pytestmark = pytest.mark.integration

SAMPLES = Path(__file__).resolve().parents[2] / "examples" / "data" / "skab"
LINES = [f"press-{i}" for i in range(8)]
# Join/leave cycles during the replay: each one a worker joining and the
# oldest leaving, so partitions move twice per cycle.
CYCLES = 3


def _count_by_line(client: InfluxV1Client) -> dict[str, int]:
    try:
        rows = client.query(
            f'SELECT count("score") FROM "{RESULT_MEASUREMENT}" GROUP BY "line"', epoch=None
        )
    except Exception:  # the database is created by the first worker
        return {}
    return {r["line"]: int(r["count"]) for r in rows}


def _wait(predicate, workers, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        for worker in workers:
            assert worker.alive() or worker.process.returncode == 0, worker.log_tail(30)
        time.sleep(0.25)
    tails = "\n---\n".join(w.log_tail(20) for w in workers)
    raise AssertionError(f"timed out waiting for {what}\n{tails}")


def test_workers_joining_and_leaving_mid_replay_lose_nothing(local_stack, tmp_path) -> None:
    tag = uuid.uuid4().hex[:8]
    settings = Settings(
        registry_dir=tmp_path / "registry",
        worker_id=f"scale-{tag}",
        kafka=KafkaSettings(bootstrap_servers=local_stack.kafka_bootstrap),
        influx=InfluxSettings(url=local_stack.influx_url, database=f"scale_{tag}"),
        topics=TopicSettings(
            telemetry=f"telemetry-{tag}",
            dead_letter=f"dlq-{tag}",
            alerts=f"alerts-{tag}",
            incidents=f"incidents-{tag}",
            partitions=4,
        ),
    )
    env = {
        **os.environ,
        **local_stack.env(),
        "LINEGUARD_REGISTRY_DIR": str(settings.registry_dir),
        "LINEGUARD_WORKER_ID": settings.worker_id,
        "LINEGUARD_INFLUX_DATABASE": settings.influx.database,
        "LINEGUARD_TOPIC_TELEMETRY": settings.topics.telemetry,
        "LINEGUARD_TOPIC_DEAD_LETTER": settings.topics.dead_letter,
        "LINEGUARD_TOPIC_ALERTS": settings.topics.alerts,
        "LINEGUARD_TOPIC_INCIDENTS": settings.topics.incidents,
        "LINEGUARD_TOPIC_PARTITIONS": "4",
    }
    run = read_run(SAMPLES / "valve1" / "0.csv")
    train_lines(settings.registry_dir, run, LINES)  # one model per line, the same fit
    ensure_topics(settings)

    producer = make_producer(settings.kafka)
    errors: list[BaseException] = []

    def gateway(line: str) -> None:
        try:
            # ~1150 one-second frames at 12x: about 95 s of live replay.
            replay(
                run,
                producer=producer,
                topic=settings.topics.telemetry,
                site="site-1",
                line=line,
                gateway_id=f"gw-{line}",
                sequence=SequenceCounter(),
                speed=12,
                flush_interval_s=0.25,
            )
        except BaseException as exc:  # surfaced in the main thread
            errors.append(exc)

    def start_worker(n: int) -> WorkerProcess:
        log_path = tmp_path / f"worker-{n}.log"
        return WorkerProcess(
            "score", {**env, "LINEGUARD_STATS_FILE": str(stats_path(log_path))}, log_path
        )

    workers = [start_worker(0)]
    client = InfluxV1Client(settings.influx)
    gateways = [threading.Thread(target=gateway, args=(line,)) for line in LINES]
    try:
        for thread in gateways:
            thread.start()
        _wait(lambda: sum(_count_by_line(client).values()) > 0, workers, 90, "first results")
        for cycle in range(1, CYCLES + 1):
            # A worker joins (the group rebalances and splits the partitions)...
            newcomer = start_worker(cycle)
            workers.append(newcomer)
            _wait(
                lambda w=newcomer: assignments_counted(w) >= 1,
                workers,
                60,
                f"worker {cycle} assigned",
            )
            before = sum(_count_by_line(client).values())
            _wait(
                lambda b=before: sum(_count_by_line(client).values()) > b,
                workers,
                60,
                f"scoring going on with worker {cycle} in the group",
            )
            assert all(thread.is_alive() for thread in gateways), f"replay ended in cycle {cycle}"
            # ...and the oldest leaves: its partitions move to the newcomer.
            leaving = workers.pop(0)
            reassigned = assignments_counted(newcomer)
            assert leaving.stop() == 0, leaving.log_tail(30)
            _wait(
                lambda w=newcomer, n=reassigned: assignments_counted(w) > n,
                workers,
                60,
                f"worker {cycle} reassigned after the oldest left",
            )
        for thread in gateways:
            thread.join(180)
        assert not errors, errors
        assert not any(thread.is_alive() for thread in gateways)

        try:
            _wait(
                lambda: _count_by_line(client) == dict.fromkeys(LINES, len(run)),
                workers,
                120,
                f"{len(run)} points per line",
            )
        except AssertionError as exc:
            raise AssertionError(f"{_missing_frames(client, run.time_us)}\n{exc}") from None
        # Exactly one point per frame time on every line: nothing lost, and a
        # batch scored twice around a rebalance rewrote its points.
        for line in LINES:
            rows = client.query(
                f'SELECT "score" FROM "{RESULT_MEASUREMENT}" WHERE "line" = \'{line}\'',
                epoch="u",
            )
            times = np.sort(np.array([r["time"] for r in rows], dtype=np.int64))
            np.testing.assert_array_equal(times, run.time_us)
        # The incidents are those of one uninterrupted offline run of the frames.
        reference = reference_incidents(settings.registry_dir, dict.fromkeys(LINES, run))
        assert reference, "the run has labelled faults: incidents expected"
        stored = stored_incidents(client)
        assert stored == reference, (sorted(stored - reference), sorted(reference - stored))
    finally:
        for worker in workers:
            worker.stop()
        producer.close()
        client.close()


def _missing_frames(client: InfluxV1Client, expected_us: np.ndarray) -> str:
    """Per line: how many points are missing, and the first missing frame indices."""
    report = []
    for line in LINES:
        rows = client.query(
            f'SELECT "score" FROM "{RESULT_MEASUREMENT}" WHERE "line" = \'{line}\'', epoch="u"
        )
        have = np.array([r["time"] for r in rows], dtype=np.int64)
        missing = np.flatnonzero(~np.isin(expected_us, have))
        report.append(f"{line}: {len(have)} points, missing frames {missing[:20].tolist()}")
    return "\n".join(report)
