"""End to end on the real broker and the real InfluxDB: gateway -> Kafka ->
Faust worker (a separate process) -> InfluxDB, plus the dead-letter path.

Nothing is mocked: the servers are the ones :mod:`lineguard.stack` starts.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import numpy as np
import pytest
from kafka import KafkaProducer

from lineguard.demo import WorkerProcess
from lineguard.influx import InfluxV1Client
from lineguard.ingest.contract import TelemetryBatch, encode
from lineguard.ingest.csv_runs import read_run
from lineguard.ingest.dead_letter import from_headers
from lineguard.ingest.gateway import SequenceCounter, make_producer, replay
from lineguard.models.metrics import score_alerts
from lineguard.models.registry import Registry
from lineguard.models.training import train_line_model
from lineguard.settings import InfluxSettings, KafkaSettings, Settings, TopicSettings
from lineguard.stream.processor import RESULT_MEASUREMENT, TELEMETRY_MEASUREMENT
from lineguard.stream.worker import ensure_topics
from tests.pipeline_support import consume_all, wait_for_count

pytestmark = pytest.mark.integration

SAMPLES = Path(__file__).resolve().parents[1] / "examples" / "data" / "skab"
TRAIN_ROWS = 400


@pytest.fixture(scope="module")
def pipeline(local_stack, tmp_path_factory):
    """Fresh topics, database and registry; a scoring and an archiving worker."""
    tag = uuid.uuid4().hex[:8]
    workdir = tmp_path_factory.mktemp("pipeline")
    env = {
        **os.environ,
        **local_stack.env(),
        "LINEGUARD_REGISTRY_DIR": str(workdir / "registry"),
        "LINEGUARD_INFLUX_DATABASE": f"e2e_{tag}",
        "LINEGUARD_TOPIC_TELEMETRY": f"telemetry-{tag}",
        "LINEGUARD_TOPIC_DEAD_LETTER": f"dlq-{tag}",
        "LINEGUARD_TOPIC_ALERTS": f"alerts-{tag}",
        "LINEGUARD_WORKER_ID": f"worker-{tag}",
    }
    settings = Settings(
        registry_dir=workdir / "registry",
        worker_id=f"worker-{tag}",
        kafka=KafkaSettings(bootstrap_servers=local_stack.kafka_bootstrap),
        influx=InfluxSettings(url=local_stack.influx_url, database=f"e2e_{tag}"),
        topics=TopicSettings(
            telemetry=f"telemetry-{tag}", dead_letter=f"dlq-{tag}", alerts=f"alerts-{tag}"
        ),
    )
    run = read_run(SAMPLES / "valve1" / "0.csv")
    train_line_model(Registry(settings.registry_dir), run, "valve1-0", rows=TRAIN_ROWS)
    ensure_topics(settings)
    workers = [
        WorkerProcess("score", env, workdir / "score.log"),
        WorkerProcess("archive", env, workdir / "archive.log"),
    ]
    client = InfluxV1Client(settings.influx)
    yield settings, run, workers, client
    client.close()
    for worker in workers:
        worker.stop()


def test_replayed_run_is_scored_once_per_frame_alerts_on_the_fault_and_is_archived(
    pipeline,
) -> None:
    settings, run, workers, client = pipeline
    producer = make_producer(settings.kafka)
    stats = replay(
        run,
        producer=producer,
        topic=settings.topics.telemetry,
        site="site-1",
        line="valve1-0",
        gateway_id="gw-test",
        sequence=SequenceCounter(),
        speed=0,
        max_frames=100,
    )
    assert stats.frames == len(run) and stats.records == 12

    count_q = f'SELECT count("score") FROM "{RESULT_MEASUREMENT}" WHERE "line" = \'valve1-0\''
    assert wait_for_count(client, count_q, len(run), workers) == len(run)
    rows = client.query(
        f'SELECT "score", "threshold", "anomaly", "top_sensors", "model_version" '
        f'FROM "{RESULT_MEASUREMENT}" WHERE "line" = \'valve1-0\'',
        epoch="u",
    )
    times = np.array([r["time"] for r in rows], dtype=np.int64)
    # Every frame scored exactly once: one point per frame time, no extras.
    np.testing.assert_array_equal(np.sort(times), run.time_us)
    assert {r["model_version"] for r in rows} == {"v0001"}
    by_time = {r["time"]: r for r in rows}
    flags = np.array([bool(by_time[t]["anomaly"]) for t in run.time_us.tolist()])
    test = slice(TRAIN_ROWS, len(run))
    labels = run.anomaly.astype(bool)
    score = score_alerts(labels[test], flags[test])
    # The labelled fault raised alerts ...
    assert score.events_detected == score.events == 1
    assert flags[labels].mean() > 0.5, flags[labels].mean()
    # ... and the normal part stayed mostly quiet.
    assert flags[~labels].mean() < 0.25, flags[~labels].mean()
    alerted = [by_time[t] for t in run.time_us[flags].tolist()]
    assert all(r["top_sensors"] for r in alerted)

    alerts = [m for m in consume_all(settings, settings.topics.alerts, 1)]
    raised = [m for m in alerts if b'"raised"' in m.value]
    assert raised, "no alert was published"
    fault_start = int(run.time_us[np.flatnonzero(labels)[0]])
    fault_end = int(run.time_us[np.flatnonzero(labels)[-1]])
    assert any(fault_start <= int(json.loads(m.value)["time_us"]) <= fault_end for m in raised)

    raw_q = f'SELECT count("Pressure") FROM "{TELEMETRY_MEASUREMENT}" WHERE "line" = \'valve1-0\''
    assert wait_for_count(client, raw_q, len(run), workers) == len(run)

    # Replaying the same frames rewrites the same points: still one per frame.
    replay(
        run,
        producer=producer,
        topic=settings.topics.telemetry,
        site="site-1",
        line="valve1-0",
        gateway_id="gw-test",
        sequence=SequenceCounter(),
        speed=0,
    )
    producer.close()
    marker = _send_marker(settings)
    wait_for_count(
        client,
        f'SELECT count("score") FROM "{RESULT_MEASUREMENT}" '
        f"WHERE \"line\" = 'valve1-0' AND time >= {marker}u",
        1,
        workers,
    )
    replayed_q = count_q + f" AND time <= {int(run.time_us[-1])}u"
    assert int(client.query(replayed_q)[0]["count"]) == len(run)


def _send_marker(settings: Settings) -> int:
    """One extra frame after the replay; once it is scored, the replay was too
    (same partition, in order)."""
    run = read_run(SAMPLES / "valve1" / "0.csv")
    t = int(run.time_us[-1]) + 3_600_000_000
    batch = TelemetryBatch(
        "site-1", "valve1-0", "gw-marker", 0, run.sensors, np.array([t]), run.values[:1]
    )
    producer = KafkaProducer(**settings.kafka.kafka_python_config())
    producer.send(settings.topics.telemetry, key=b"valve1-0", value=encode(batch)).get(30)
    producer.close()
    return t


def test_malformed_records_go_to_the_dead_letter_topic_and_the_worker_keeps_going(
    pipeline,
) -> None:
    settings, run, workers, client = pipeline
    producer = KafkaProducer(**settings.kafka.kafka_python_config())
    bad = [
        (b"valve1-0", b"{this is not json"),
        (b"valve1-0", b'{"schema": "lineguard.telemetry.v1", "line": "valve1-0"}'),
        (
            b"line-unknown",
            encode(
                TelemetryBatch(
                    "site-1",
                    "line-unknown",
                    "gw",
                    1,
                    ("a",),
                    np.array([1_600_000_000_000_000]),
                    np.array([[1.0]]),
                )
            ),
        ),
    ]
    for key, value in bad:
        producer.send(settings.topics.telemetry, key=key, value=value)
    # Valid frames after the bad ones, at new times, must still be scored.
    t0 = int(run.time_us[-1]) + 7_200_000_000
    good = TelemetryBatch(
        "site-1",
        "valve1-0",
        "gw",
        2,
        run.sensors,
        t0 + np.arange(10, dtype=np.int64) * 1_000_000,
        run.values[:10],
    )
    producer.send(settings.topics.telemetry, key=b"valve1-0", value=encode(good))
    producer.flush()
    producer.close()

    q = (
        f'SELECT count("score") FROM "{RESULT_MEASUREMENT}" '
        f"WHERE \"line\" = 'valve1-0' AND time >= {t0}u"
    )
    assert wait_for_count(client, q, 10, workers) == 10

    letters = [
        from_headers(m.headers, m.key, m.value)
        for m in consume_all(settings, settings.topics.dead_letter, 3)
    ]
    assert sorted(d.value for d in letters) == sorted(v for _, v in bad)
    reasons = {d.value: d for d in letters}
    assert "parse" in reasons[bad[0][1]].reason and reasons[bad[0][1]].stage == "decode"
    assert "does not match" in reasons[bad[1][1]].reason
    assert "no active model" in reasons[bad[2][1]].reason
    assert reasons[bad[2][1]].stage == "route" and reasons[bad[2][1]].key == b"line-unknown"
    assert all(d.topic == settings.topics.telemetry and d.offset >= 0 for d in letters)
    assert all(w.alive() for w in workers)
