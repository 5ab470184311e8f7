"""Model lifecycle on the real broker and the real InfluxDB, with a scoring
worker process: promotion during a live replay, shadow scoring, QA feedback
through Kafka, and the per-shift comparison.

Nothing is mocked: the servers are the ones :mod:`lineguard.stack` starts and
the worker is ``lineguard worker`` in its own process.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
import time
import uuid
from pathlib import Path

import jsonschema
import numpy as np
import orjson
import pytest
from kafka import KafkaConsumer, KafkaProducer

from lineguard.contracts import ALERT_SCHEMA, ANNOUNCEMENT_SCHEMA, INCIDENT_SCHEMA, message_schema
from lineguard.demo import WorkerProcess
from lineguard.influx import InfluxV1Client
from lineguard.ingest.csv_runs import read_run
from lineguard.ingest.dead_letter import from_headers
from lineguard.ingest.gateway import SequenceCounter, make_producer, replay
from lineguard.models.announce import activate_and_announce, shadow_and_announce
from lineguard.models.feedback import FEEDBACK_SCHEMA, read_feedback
from lineguard.models.lifecycle import compare_versions
from lineguard.models.registry import Registry
from lineguard.models.training import TrainingConfig, train_line_model
from lineguard.settings import InfluxSettings, KafkaSettings, Settings
from lineguard.stream.worker import ensure_topics
from tests.support.faults import stats_path, worker_stats
from tests.support.workers import own_topics

pytestmark = pytest.mark.integration

SAMPLES = Path(__file__).resolve().parents[2] / "examples" / "data" / "skab"


@pytest.fixture(scope="module")
def lifecycle(local_stack, tmp_path_factory):
    """Own topics, database and registry; one scoring worker process."""
    tag = uuid.uuid4().hex[:8]
    workdir = tmp_path_factory.mktemp("lifecycle")
    topics = own_topics(tag)
    settings = Settings(
        registry_dir=workdir / "registry",
        worker_id=f"worker-{tag}",
        kafka=KafkaSettings(bootstrap_servers=local_stack.kafka_bootstrap),
        influx=InfluxSettings(url=local_stack.influx_url, database=f"life_{tag}"),
        topics=topics,
    )
    env = {
        **os.environ,
        **local_stack.env(),
        "LINEGUARD_REGISTRY_DIR": str(settings.registry_dir),
        "LINEGUARD_INFLUX_DATABASE": settings.influx.database,
        "LINEGUARD_WORKER_ID": settings.worker_id,
        **{f"LINEGUARD_TOPIC_{k.upper()}": str(v) for k, v in topics.model_dump().items()},
    }
    registry = Registry(settings.registry_dir)
    ensure_topics(settings)
    # Its counters (announcements taken in, models served) come from its stats file.
    env["LINEGUARD_STATS_FILE"] = str(stats_path(workdir / "score.log"))
    worker = WorkerProcess("score", env, workdir / "score.log")
    client = InfluxV1Client(settings.influx)
    yield settings, registry, worker, client
    client.close()
    worker.stop()


def _count(client, query: str) -> int:
    try:
        rows = client.query(query)
    except Exception:
        return -1  # database not created yet
    return int(rows[0]["count"]) if rows else 0


def _wait(client, query: str, expected: int, worker, timeout: float = 120.0) -> int:
    deadline = time.monotonic() + timeout
    count = -1
    while time.monotonic() < deadline:
        assert worker.alive(), f"worker died:\n{worker.log_tail()}"
        count = _count(client, query)
        if count >= expected:
            return count
        time.sleep(0.3)
    raise AssertionError(f"expected {expected} for {query!r}; have {count}\n{worker.log_tail(40)}")


def _wait_stats(worker, holds, what: str, timeout: float = 120.0) -> dict:
    """Poll the worker's stats file until ``holds(stats)``; fail naming what never happened."""
    deadline = time.monotonic() + timeout
    while not holds(stats := worker_stats(worker)):
        assert worker.alive(), f"worker died:\n{worker.log_tail()}"
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{what}: not in the worker's stats within {timeout:.0f} s "
                f"(announced {stats.get('announced')!r}, models {stats.get('models')!r})\n"
                f"{worker.log_tail(40)}"
            )
        time.sleep(0.2)
    return stats


def _announced(stats: dict) -> set[str]:
    return set(filter(None, str(stats.get("announced", "")).split(",")))


def _part(run, start: int, stop: int | None = None, shift_us: int = 0):
    """Frames ``start:stop`` of a run, their times moved by ``shift_us``."""
    sl = slice(start, stop)
    return dataclasses.replace(
        run,
        time_us=run.time_us[sl] + shift_us,
        values=run.values[sl],
        anomaly=run.anomaly[sl],
        changepoint=None if run.changepoint is None else run.changepoint[sl],
    )


def _scores(client, line: str, where: str = "") -> list[dict]:
    return client.query(
        'SELECT "score", "anomaly", "model_version", "role" FROM "lineguard_score" '
        f"WHERE \"line\" = '{line}' {where}",
        epoch="u",
    )


def _replay_in_thread(
    settings: Settings, run, line: str, speed: float, sequence: SequenceCounter | None = None
) -> threading.Thread:
    sequence = SequenceCounter() if sequence is None else sequence

    def go() -> None:
        producer = make_producer(settings.kafka)
        try:
            replay(
                run,
                producer=producer,
                topic=settings.topics.telemetry,
                site="site-1",
                line=line,
                gateway_id=f"gw-{line}",
                sequence=sequence,
                speed=speed,
                max_frames=20,
                flush_interval_s=0.1,
            )
        finally:
            producer.close()

    thread = threading.Thread(target=go, daemon=True)
    thread.start()
    return thread


def test_promotion_during_a_live_replay_switches_version_without_gap_or_duplicate(
    lifecycle,
) -> None:
    settings, registry, worker, client = lifecycle
    line = "valve1-0"
    run = read_run(SAMPLES / "valve1" / "0.csv")
    v1 = train_line_model(registry, run, line, rows=400)
    v2 = train_line_model(
        registry, run, line, rows=350, config=TrainingConfig(target_far=0.02), activate=False
    )
    assert (v1.version, v2.version) == ("v0001", "v0002")

    # Live traffic in two stretches with the promotion between them: the
    # switch must land exactly where the worker learnt of it, whatever the
    # machine's load, so the test waits on each state, never on the clock.
    half = len(run) // 2
    sequence = SequenceCounter()
    count_q = f'SELECT count("score") FROM "lineguard_score" WHERE "line" = \'{line}\''
    thread = _replay_in_thread(settings, _part(run, 0, half), line, 80.0, sequence)
    thread.join(120)
    assert not thread.is_alive(), "the first half's replay never finished"
    assert _wait(client, count_q, half, worker) == half
    previous, error = activate_and_announce(registry, settings, line, "v0002", "promote")
    assert (previous, error) == ("v0001", None)
    _wait_stats(
        worker,
        lambda st: f"{line}:active=v0002" in _announced(st),
        f"the worker taking in the promotion of {line} to v0002",
    )
    thread = _replay_in_thread(settings, _part(run, half), line, 80.0, sequence)
    thread.join(120)
    assert not thread.is_alive(), "the second half's replay never finished"
    assert _wait(client, count_q, len(run), worker) == len(run)
    # A sentinel frame after the run: the worker handles a partition in order,
    # so once its point is stored a duplicate of any earlier frame would be too.
    sentinel = _part(run, len(run) - 1, shift_us=1_000_000)
    thread = _replay_in_thread(settings, sentinel, line, 0, sequence)
    thread.join(120)
    assert _wait(client, count_q, len(run) + 1, worker) == len(run) + 1

    rows = _scores(client, line, f"AND time <= {int(run.time_us[-1])}u")
    times = np.array([r["time"] for r in rows], dtype=np.int64)
    versions = np.array([r["model_version"] for r in rows])
    order = np.argsort(times, kind="stable")
    times, versions = times[order], versions[order]
    # Every frame scored exactly once: no gap, no duplicate across versions.
    np.testing.assert_array_equal(times, run.time_us)
    assert set(versions.tolist()) == {"v0001", "v0002"}
    # One switch, between two micro-batches: v1 up to some frame, v2 after it.
    switch = int(np.argmax(versions == "v0002"))
    assert switch == half, f"switched at frame {switch}; the promotion came after {half}"
    assert (versions[:switch] == "v0001").all() and (versions[switch:] == "v0002").all()
    # The worker serves v0002 now (its own report, not its log).
    _wait_stats(
        worker,
        lambda st: f"{line}:v0002" in str(st.get("models", "")).split(","),
        f"the worker reporting v0002 as {line}'s active model",
    )


def test_shadow_scores_under_its_own_tag_never_alerts_and_compares_per_shift(lifecycle) -> None:
    settings, registry, worker, client = lifecycle
    line = "valve1-1"
    run = read_run(SAMPLES / "valve1" / "1.csv")
    train_line_model(registry, run, line, rows=400)
    # A deliberately jumpy candidate, so a leaked shadow alert could not hide.
    train_line_model(
        registry, run, line, rows=400, config=TrainingConfig(target_far=0.2), activate=False
    )
    assert shadow_and_announce(registry, settings, line, "v0002") is None
    _wait_stats(
        worker,
        lambda st: f"{line}:shadow=v0002" in _announced(st),
        f"the worker taking in v0002 as {line}'s shadow",
    )

    # QA labels the recorded fault as a real defect through the feedback topic,
    # plus one malformed record that must be dead-lettered, not crash anything.
    defect = np.flatnonzero(run.anomaly)
    label = {
        "schema": FEEDBACK_SCHEMA,
        "line": line,
        "label": "real_defect",
        "start_us": int(run.time_us[defect[0]]),
        "end_us": int(run.time_us[defect[-1]]),
        "author": "qa-test",
        "source": "test",
    }
    producer = KafkaProducer(**settings.kafka.kafka_python_config())
    producer.send(settings.topics.feedback, key=line.encode(), value=orjson.dumps(label)).get(30)
    producer.send(settings.topics.feedback, key=line.encode(), value=b'{"schema": 1}').get(30)
    producer.close()

    thread = _replay_in_thread(settings, run, line, speed=0)
    thread.join(120)
    active_q = (
        f'SELECT count("score") FROM "lineguard_score" WHERE "line" = \'{line}\' '
        "AND \"model_version\" = 'v0001'"
    )
    shadow_q = (
        f'SELECT count("score") FROM "lineguard_score" WHERE "line" = \'{line}\' '
        "AND \"model_version\" = 'v0002' AND \"role\" = 'shadow'"
    )
    assert _wait(client, active_q, len(run), worker) == len(run)
    assert _wait(client, shadow_q, len(run), worker) == len(run)
    rows = _scores(client, line)
    shadow = [r for r in rows if r["model_version"] == "v0002"]
    active = [r for r in rows if r["model_version"] == "v0001"]
    assert all(r["role"] == "shadow" for r in shadow)
    assert all(r["role"] is None for r in active)
    # The candidate would have alerted (more than the active one) ...
    assert sum(bool(r["anomaly"]) for r in shadow) > sum(bool(r["anomaly"]) for r in active)

    # ... but no alert and no incident of this line names the shadow version.
    consumer = KafkaConsumer(
        settings.topics.alerts,
        settings.topics.incidents,
        group_id=None,
        auto_offset_reset="earliest",
        consumer_timeout_ms=2000,
        **settings.kafka.kafka_python_config(),
    )
    messages = [json.loads(m.value) for m in consumer if m.key == line.encode()]
    consumer.close()
    assert messages, "the active version raised nothing on a run with a fault"
    assert {m["model_version"] for m in messages} == {"v0001"}
    # What went through the broker follows the published schemas.
    by_schema = {ALERT_SCHEMA: 0, INCIDENT_SCHEMA: 0}
    for message in messages:
        jsonschema.validate(message, message_schema(message["schema"]))
        by_schema[message["schema"]] += 1
    assert all(by_schema.values()), by_schema

    # The label arrived through Kafka and is in InfluxDB; the bad record was dead-lettered.
    deadline = time.monotonic() + 30
    while not read_feedback(client, line) and time.monotonic() < deadline:
        time.sleep(0.3)
    stored = read_feedback(client, line)
    assert [(f.label, f.start_us, f.end_us) for f in stored] == [
        ("real_defect", label["start_us"], label["end_us"])
    ]
    consumer = KafkaConsumer(
        settings.topics.dead_letter,
        group_id=None,
        auto_offset_reset="earliest",
        consumer_timeout_ms=2000,
        **settings.kafka.kafka_python_config(),
    )
    letters = [
        from_headers(m.headers, m.key, m.value) for m in consumer if m.value == b'{"schema": 1}'
    ]
    consumer.close()
    assert [(d.stage, d.topic) for d in letters] == [("feedback", settings.topics.feedback)]
    assert "lineguard.feedback.v1" in letters[0].reason

    report = compare_versions(client, line, "v0001", "v0002", shift_hours=8.0)
    total = report["total"]
    assert total["frames"] == len(run)
    assert report["labels"]["defect_frames"] == len(defect)
    assert total["v0002"]["alert_rate_pct"] > total["v0001"]["alert_rate_pct"]
    assert total["v0002"]["far_pct"] > total["v0001"]["far_pct"]
    assert 0 < total["agreement_pct"] < 100
    assert sum(s["frames"] for s in report["shifts"]) == len(run)

    # Every announcement on the models topic follows its schema.
    consumer = KafkaConsumer(
        settings.topics.models,
        group_id=None,
        auto_offset_reset="earliest",
        consumer_timeout_ms=2000,
        **settings.kafka.kafka_python_config(),
    )
    announcements = [json.loads(m.value) for m in consumer]
    consumer.close()
    assert any(a["action"] == "shadow" for a in announcements), announcements
    for announcement in announcements:
        jsonschema.validate(announcement, message_schema(ANNOUNCEMENT_SCHEMA))

    # Stopping the shadow stops its points: new frames get only the active one.
    assert shadow_and_announce(registry, settings, line, None) is None
    assert registry.shadow_version(line) is None
    _wait_stats(
        worker,
        lambda st: not any(a.startswith(f"{line}:shadow=") for a in _announced(st)),
        f"the worker dropping {line}'s shadow",
    )
    later = _part(run, len(run) - 5, shift_us=60_000_000)
    thread = _replay_in_thread(settings, later, line, 0)
    thread.join(120)
    assert _wait(client, active_q, len(run) + 5, worker) == len(run) + 5
    after = f"AND time >= {int(later.time_us[0])}u"
    new_rows = _scores(client, line, after)
    assert len(new_rows) == 5, new_rows
    assert {(r["model_version"], r["role"]) for r in new_rows} == {("v0001", None)}
