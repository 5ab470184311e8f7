"""The worker's QA-feedback consumer on the real broker and real InfluxDB:
a label that InfluxDB cannot take yet is retried until it is stored; one
InfluxDB refuses for good is dead-lettered with the reason."""

from __future__ import annotations

import logging
import time
import uuid

import orjson
import pytest
from kafka import KafkaConsumer, KafkaProducer

from lineguard.influx import InfluxV1Client
from lineguard.ingest.dead_letter import from_headers
from lineguard.models.feedback import FEEDBACK_SCHEMA, read_feedback
from lineguard.settings import InfluxSettings
from lineguard.stack import InfluxServer, free_port
from lineguard.stream.feedback import FeedbackConsumer
from lineguard.stream.worker import ensure_topics
from tests.pipeline_support import isolated_settings

pytestmark = pytest.mark.integration

START_US = 1_700_000_000_000_000


def _label(line: str, label: str = "real_defect") -> bytes:
    return orjson.dumps(
        {
            "schema": FEEDBACK_SCHEMA,
            "line": line,
            "label": label,
            "start_us": START_US,
            "end_us": START_US + 60_000_000,
            "author": "qa",
            "source": "mes",
        }
    )


def _send(settings, line: str, value: bytes) -> None:
    producer = KafkaProducer(**settings.kafka.kafka_python_config())
    producer.send(settings.topics.feedback, key=line.encode(), value=value).get(30)
    producer.close()


def _until(condition, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} never happened within {timeout:.0f} s")
        time.sleep(0.2)


def _settings(local_stack, tmp_path, influx_url: str | None = None):
    tag = uuid.uuid4().hex[:8]
    _, settings = isolated_settings(local_stack, tmp_path, tag, database_prefix="fb")
    if influx_url is not None:
        influx = InfluxSettings(url=influx_url, database=settings.influx.database)
        settings = settings.model_copy(update={"influx": influx})
    ensure_topics(settings)
    return settings


def test_a_label_is_retried_until_influxdb_takes_it(local_stack, tmp_path, caplog) -> None:
    port = free_port()
    settings = _settings(local_stack, tmp_path, influx_url=f"http://127.0.0.1:{port}")
    consumer = FeedbackConsumer(settings)
    with caplog.at_level(logging.WARNING, logger="lineguard.stream.feedback"):
        consumer.start()
        try:
            _send(settings, "line-r", _label("line-r"))
            # Nothing listens on the InfluxDB port yet: the write fails and is retried.
            _until(lambda: "feedback write failed" in caplog.text, "a failed, retried write")
            assert consumer.stored == 0
            with InfluxServer(workdir=tmp_path / "influx", port=port) as server:
                # Up, but without the database: refused with 404, retried again.
                with InfluxV1Client(settings.influx) as client:
                    _until(lambda: "database not found" in caplog.text, "a 404 from influxd")
                    client.create_database()
                    _until(lambda: consumer.stored == 1, "the label being stored")
                    stored = read_feedback(client, "line-r")
                assert server.running
        finally:
            consumer.stop()
    assert [(f.label, f.start_us, f.source) for f in stored] == [("real_defect", START_US, "mes")]
    assert consumer.dead_letters == 0


def test_a_label_influxdb_refuses_is_dead_lettered_with_the_reason(local_stack, tmp_path) -> None:
    settings = _settings(local_stack, tmp_path)
    with InfluxV1Client(settings.influx) as client:
        client.create_database()
        # end_us already stored as a string: an integer end_us is a field type
        # conflict, which InfluxDB will refuse (HTTP 400) however often it is sent.
        client.write(
            f'lineguard_feedback,line=line-x,label=maintenance end_us="soon" {START_US * 1000}'
        )
    consumer = FeedbackConsumer(settings).start()
    try:
        _send(settings, "line-x", _label("line-x", "false_alarm"))
        _until(lambda: consumer.dead_letters == 1, "the refused label being dead-lettered")
    finally:
        consumer.stop()
    assert consumer.stored == 0
    reader = KafkaConsumer(
        settings.topics.dead_letter,
        group_id=None,
        auto_offset_reset="earliest",
        consumer_timeout_ms=3000,
        **settings.kafka.kafka_python_config(),
    )
    letters = [from_headers(m.headers, m.key, m.value) for m in reader]
    reader.close()
    assert len(letters) == 1
    letter = letters[0]
    assert (letter.stage, letter.topic, letter.value) == (
        "feedback",
        settings.topics.feedback,
        _label("line-x", "false_alarm"),
    )
    assert "InfluxDB refused the label" in letter.reason and "conflict" in letter.reason
