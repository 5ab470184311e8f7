"""Helpers for end-to-end tests on the real broker and InfluxDB.

Shared by ``tests/test_pipeline.py`` and ``tests/dashboards``: fresh topic,
database and registry names per test module, worker environments, and
waiting for what the workers wrote.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from kafka import KafkaConsumer

from lineguard.settings import InfluxSettings, KafkaSettings, Settings, TopicSettings

__all__ = ["consume_all", "isolated_settings", "wait_for_count"]


def isolated_settings(
    local_stack, workdir: Path, tag: str, database_prefix: str = "e2e"
) -> tuple[dict[str, str], Settings]:
    """Environment for worker processes and the matching :class:`Settings`,
    with topics, database, worker id and registry of their own."""
    database = f"{database_prefix}_{tag}"
    topics = {
        "telemetry": f"telemetry-{tag}",
        "dead_letter": f"dlq-{tag}",
        "alerts": f"alerts-{tag}",
        "incidents": f"incidents-{tag}",
        "models": f"models-{tag}",
        "feedback": f"feedback-{tag}",
    }
    env = {
        **os.environ,
        **local_stack.env(),
        "LINEGUARD_REGISTRY_DIR": str(workdir / "registry"),
        "LINEGUARD_INFLUX_DATABASE": database,
        "LINEGUARD_WORKER_ID": f"worker-{tag}",
        **{f"LINEGUARD_TOPIC_{k.upper()}": v for k, v in topics.items()},
    }
    settings = Settings(
        registry_dir=workdir / "registry",
        worker_id=f"worker-{tag}",
        kafka=KafkaSettings(bootstrap_servers=local_stack.kafka_bootstrap),
        influx=InfluxSettings(url=local_stack.influx_url, database=database),
        topics=TopicSettings(**topics),
    )
    return env, settings


def wait_for_count(client, query: str, expected: int, workers, timeout: float = 120.0) -> int:
    """Poll an InfluxQL ``count`` query until it reaches ``expected``.

    Fails at once with the log tail when a worker died.
    """
    deadline = time.monotonic() + timeout
    count = -1
    while time.monotonic() < deadline:
        for worker in workers:
            assert worker.alive(), f"{worker.role} worker died:\n{worker.log_tail()}"
        try:
            rows = client.query(query)
            count = int(rows[0]["count"]) if rows else 0
        except Exception:
            count = -1  # database not created yet
        if count >= expected:
            return count
        time.sleep(0.5)
    raise AssertionError(
        f"expected {expected} points for {query!r}; have {count}\n{workers[0].log_tail()}"
    )


def consume_all(settings: Settings, topic: str, expected: int, timeout: float = 30.0) -> list:
    """Read a topic from the start until ``expected`` records or the timeout."""
    consumer = KafkaConsumer(
        topic,
        group_id=None,
        auto_offset_reset="earliest",
        consumer_timeout_ms=1000,
        **settings.kafka.kafka_python_config(),
    )
    found: list = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and len(found) < expected:
            found.extend(consumer)
    finally:
        consumer.close()
    return found
