"""A scoring worker process on the real servers, for the worker's failure-path tests.

Test support, not shipped. Each scenario gets its own topics, consumer
group and database, a registry of trained lines, and ``lineguard worker``
processes whose counters are read from their stats file
(``LINEGUARD_STATS_FILE``), never from their log text.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lineguard.demo import WorkerProcess, default_data_dir
from lineguard.influx import InfluxV1Client
from lineguard.ingest.contract import TelemetryBatch, encode
from lineguard.ingest.csv_runs import RecordedRun, read_run
from lineguard.models.registry import Registry
from lineguard.models.training import fit_from_rows, train_from_rows
from lineguard.settings import InfluxSettings, KafkaSettings, Settings, TopicSettings
from lineguard.stream.processor import RESULT_MEASUREMENT
from tests.support.faults import stats_path, wait_for, worker_stats

__all__ = [
    "Scenario",
    "read_topic",
    "sample_run",
    "scored_times",
    "telemetry_records",
    "train_lines",
]

TRAIN_ROWS = 400


def sample_run() -> RecordedRun:
    """The in-repo SKAB run every scenario replays (valve1/0.csv)."""
    return read_run(default_data_dir() / "valve1" / "0.csv")


def own_topics(tag: str, **overrides: object) -> TopicSettings:
    """Topic names of one test's own, tagged so that tests never share a topic."""
    return TopicSettings(
        telemetry=f"telemetry-{tag}",
        dead_letter=f"dlq-{tag}",
        alerts=f"alerts-{tag}",
        incidents=f"incidents-{tag}",
        models=f"models-{tag}",
        feedback=f"feedback-{tag}",
        **overrides,
    )


def train_lines(registry_dir: Path, run: RecordedRun, lines: Iterable[str]) -> dict[str, Any]:
    """One active model per line (one fit, stored per line: these tests are about routing)."""
    fitted = fit_from_rows(list(run.sensors), run.values[:TRAIN_ROWS])
    registry = Registry(registry_dir)
    return {
        line: train_from_rows(
            registry,
            line,
            sensors=list(run.sensors),
            time_us=run.time_us[:TRAIN_ROWS],
            X=run.values[:TRAIN_ROWS],
            source="valve1/0.csv",
            fitted=fitted,
        )
        for line in lines
    }


def telemetry_records(
    run: RecordedRun, line: str, frames: int, per_record: int = 20, first_seq: int = 0
) -> list[tuple[bytes, bytes]]:
    """(key, value) records of a line's first ``frames`` frames, ``per_record`` each."""
    return [
        (
            line.encode(),
            encode(
                TelemetryBatch(
                    "site-1",
                    line,
                    f"gw-{line}",
                    first_seq + i,
                    run.sensors,
                    run.time_us[start : min(start + per_record, frames)],
                    run.values[start : min(start + per_record, frames)],
                )
            ),
        )
        for i, start in enumerate(range(0, frames, per_record))
    ]


def read_topic(settings: Settings, topic: str, quiet_ms: int = 3000) -> list[Any]:
    """Every record of ``topic``, read from its start until it is quiet for ``quiet_ms``."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        topic,
        group_id=None,
        auto_offset_reset="earliest",
        consumer_timeout_ms=quiet_ms,
        **settings.kafka.kafka_python_config(),
    )
    try:
        return list(consumer)
    finally:
        consumer.close()


def scored_times(client: InfluxV1Client, line: str) -> np.ndarray:
    """Frame times (us) of a line's score points, sorted; empty before the database exists."""
    try:
        rows = client.query(
            f'SELECT "score" FROM "{RESULT_MEASUREMENT}" WHERE "line" = \'{line}\'', epoch="u"
        )
    except Exception:  # the database is created by the worker
        return np.zeros(0, dtype=np.int64)
    return np.sort(np.array([r["time"] for r in rows], dtype=np.int64))


@dataclass
class Scenario:
    """One scenario's settings, worker environment and processes.

    Parameters
    ----------
    kafka_bootstrap, influx_url : str
        Where the workers connect (``influx_url`` may point where no
        InfluxDB answers yet).
    workdir : Path
        Registry, worker logs and stats files.
    name : str
        Prefix of the topics, group and database.
    partitions : int
        Telemetry partitions.
    """

    kafka_bootstrap: str
    influx_url: str
    workdir: Path
    name: str = "failpaths"
    partitions: int = 2

    def __post_init__(self) -> None:
        tag = f"{self.name}-{uuid.uuid4().hex[:8]}"
        self.settings = Settings(
            registry_dir=self.workdir / "registry",
            worker_id=f"worker-{tag}",
            state_dir=self.workdir / "state",
            kafka=KafkaSettings(bootstrap_servers=self.kafka_bootstrap),
            influx=InfluxSettings(url=self.influx_url, database=tag.replace("-", "_")),
            topics=own_topics(tag, partitions=self.partitions),
        )
        s, t = self.settings, self.settings.topics
        self.env = {
            **os.environ,
            "LINEGUARD_KAFKA_BOOTSTRAP_SERVERS": self.kafka_bootstrap,
            "LINEGUARD_INFLUX_URL": self.influx_url,
            "LINEGUARD_STATE_DIR": str(s.state_dir),
            "LINEGUARD_REGISTRY_DIR": str(s.registry_dir),
            "LINEGUARD_WORKER_ID": s.worker_id,
            "LINEGUARD_INFLUX_DATABASE": s.influx.database,
            "LINEGUARD_TOPIC_TELEMETRY": t.telemetry,
            "LINEGUARD_TOPIC_DEAD_LETTER": t.dead_letter,
            "LINEGUARD_TOPIC_ALERTS": t.alerts,
            "LINEGUARD_TOPIC_INCIDENTS": t.incidents,
            "LINEGUARD_TOPIC_MODELS": t.models,
            "LINEGUARD_TOPIC_FEEDBACK": t.feedback,
            "LINEGUARD_TOPIC_PARTITIONS": str(self.partitions),
        }
        self.workers: list[WorkerProcess] = []

    def start_worker(self) -> WorkerProcess:
        """A ``lineguard worker`` process with its log and stats file in the work directory."""
        log_path = self.workdir / f"worker-{len(self.workers)}.log"
        env = {**self.env, "LINEGUARD_STATS_FILE": str(stats_path(log_path))}
        worker = WorkerProcess("score", env, log_path)
        self.workers.append(worker)
        return worker

    def produce(self, records: list[tuple[bytes, bytes]]) -> None:
        """Send (key, value) telemetry records and wait until the broker stored them all."""
        from kafka import KafkaProducer

        producer = KafkaProducer(acks="all", **self.settings.kafka.kafka_python_config())
        try:
            sends = [
                producer.send(self.settings.topics.telemetry, key=k, value=v) for k, v in records
            ]
            for send in sends:
                send.get(30)
        finally:
            producer.close(timeout=10)

    def wait(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        """Poll ``condition`` until it holds; fail naming ``what``, or the worker that died."""
        wait_for(condition, self.workers, timeout, what)

    def stats(self, worker: WorkerProcess) -> dict[str, Any]:
        """A worker's counters from its stats file."""
        return worker_stats(worker)

    def stop(self) -> None:
        """Stop every worker (SIGTERM, then SIGKILL)."""
        for worker in self.workers:
            worker.stop()


def poll(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``condition`` every 0.1 s; raise naming ``what`` when ``timeout`` passes first."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: did not happen within {timeout:.0f} s")
        time.sleep(0.1)
