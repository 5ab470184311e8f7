"""Worker failure paths on the real broker and InfluxDB, through ``lineguard worker`` processes.

* One line's model raises while scoring: that line's records go to the
  dead-letter topic with the reason, every other line's frames are stored,
  and the worker keeps running.
* InfluxDB is not there when the worker starts: the worker retries
  ``CREATE DATABASE`` until an ``influxd`` answers on that address, then
  creates its database and stores every frame.

Counters come from the worker's stats file, never from its log text; every
wait polls for a state with a deadline that names what never happened.
"""

from __future__ import annotations

import json
import os
import signal
import struct

import numpy as np
import pytest

from lineguard.influx import InfluxV1Client
from lineguard.stack import InfluxServer, free_port
from lineguard.stream.worker import ensure_topics
from tests.support.workers import (
    Scenario,
    read_topic,
    sample_run,
    scored_times,
    telemetry_records,
    train_lines,
)

pytestmark = pytest.mark.integration

FRAMES = 200  # per line: 10 records of 20 frames


def test_one_lines_scoring_error_dead_letters_its_records_and_spares_the_others(
    local_stack, tmp_path
) -> None:
    scenario = Scenario(local_stack.kafka_bootstrap, local_stack.influx_url, tmp_path, "isolate")
    settings = scenario.settings
    run = sample_run()
    bundles = train_lines(settings.registry_dir, run, ["press-a", "press-b", "press-bad"])
    # The bad line's manifest names a ninth sensor its pipeline never saw:
    # the artifact still verifies, but every score call raises ValueError
    # ("Expected rows of 8 sensors ..."). A hand-edited envelope, for real.
    manifest = settings.registry_dir / "press-bad" / bundles["press-bad"].version / "manifest.json"
    doc = json.loads(manifest.read_text())
    doc["sensors"] = [*doc["sensors"], "GhostSensor"]
    manifest.write_text(json.dumps(doc))
    ensure_topics(settings)

    records = {line: telemetry_records(run, line, FRAMES) for line in ("press-a", "press-b")}
    bad = telemetry_records(run, "press-bad", FRAMES)
    # Interleaved, so the bad line's records share micro-batches with the others.
    mixed = [
        r for trio in zip(records["press-a"], bad, records["press-b"], strict=True) for r in trio
    ]
    client = InfluxV1Client(settings.influx)
    worker = scenario.start_worker()
    try:
        scenario.produce(mixed)
        want = run.time_us[:FRAMES]
        scenario.wait(
            lambda: all(len(scored_times(client, line)) == FRAMES for line in records),
            120,
            f"{FRAMES} score points on each good line",
        )
        scenario.wait(
            lambda: scenario.stats(worker).get("dead_letters", 0) >= len(bad),
            60,
            f"{len(bad)} dead letters counted by the worker",
        )
        for line in records:
            np.testing.assert_array_equal(scored_times(client, line), want)
        assert len(scored_times(client, "press-bad")) == 0
        letters = read_topic(settings, settings.topics.dead_letter)
        # Exactly the bad line's records, unchanged, each with its reason.
        assert sorted(m.value for m in letters) == sorted(v for _, v in bad)
        for message in letters:
            headers = dict(message.headers)
            assert message.key == b"press-bad"
            assert headers["lineguard.dlq.stage"] == b"score"
            reason = headers["lineguard.dlq.reason"].decode()
            assert "scoring line 'press-bad'" in reason, reason
            assert "Expected rows of 8 sensors" in reason, reason
        assert worker.alive(), worker.log_tail()
    finally:
        scenario.stop()
        client.close()


def test_a_worker_started_before_influxdb_creates_its_database_once_it_answers(
    local_stack, tmp_path
) -> None:
    port = free_port()
    influx = InfluxServer(tmp_path / "influx-late", port=port)
    scenario = Scenario(
        local_stack.kafka_bootstrap, f"http://127.0.0.1:{port}", tmp_path, "lateinflux"
    )
    settings = scenario.settings
    run = sample_run()
    train_lines(settings.registry_dir, run, ["press-a"])
    ensure_topics(settings)
    worker = scenario.start_worker()
    client = InfluxV1Client(settings.influx)
    try:
        # No telemetry yet: only the start-up's CREATE DATABASE can have
        # found InfluxDB missing. The report says so (sink_down).
        scenario.wait(
            lambda: scenario.stats(worker).get("sink_down") == 1,
            90,
            "the worker reporting InfluxDB unreachable at start-up",
        )
        influx.start()
        scenario.produce(telemetry_records(run, "press-a", FRAMES))
        scenario.wait(
            lambda: len(scored_times(client, "press-a")) == FRAMES,
            120,
            f"{FRAMES} score points after InfluxDB came up",
        )
        databases = {row["name"] for row in client.query("SHOW DATABASES", epoch=None)}
        assert settings.influx.database in databases
        np.testing.assert_array_equal(scored_times(client, "press-a"), run.time_us[:FRAMES])
        scenario.wait(
            lambda: scenario.stats(worker).get("sink_down") == 0,
            30,
            "the worker reporting InfluxDB reachable again",
        )
        assert worker.alive(), worker.log_tail()
    finally:
        scenario.stop()
        client.close()
        influx.stop()


def _committed(settings, partitions: int) -> dict[int, int | None]:
    """The worker group's committed offset per telemetry partition, as the broker has it."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        group_id=settings.worker_id,
        enable_auto_commit=False,
        **settings.kafka.kafka_python_config(),
    )
    try:
        return {
            p: consumer.committed(TopicPartition(settings.topics.telemetry, p))
            for p in range(partitions)
        }
    finally:
        consumer.close()


def test_a_commit_the_broker_refuses_leaves_the_batch_to_the_new_owner(
    local_stack, tmp_path
) -> None:
    """A stalled member's commit is refused by the group coordinator (Kafka's
    zombie fencing by generation), and the batch is the new owner's.

    The first worker holds the second batch in its points step (InfluxDB is
    down) and is then frozen (SIGSTOP) for longer than its session timeout:
    the broker drops it from the group and the second worker takes every
    partition and re-reads the batch from the committed offset. Once
    InfluxDB is back and the second worker has stored and committed it, the
    first worker is thawed; its points step completes and it commits with the
    generation it had, which the broker refuses (aiokafka's
    ``CommitFailedError`` chained to the broker's error). The refusal is
    counted, the worker keeps running, and nothing is lost or doubled.
    """
    port = free_port()
    influx = InfluxServer(tmp_path / "influx-own", port=port).start()
    url = f"http://127.0.0.1:{port}"
    scenario = Scenario(local_stack.kafka_bootstrap, url, tmp_path, "refused")
    settings = scenario.settings
    run = sample_run()
    train_lines(settings.registry_dir, run, ["press-a"])
    ensure_topics(settings)
    records = telemetry_records(run, "press-a", 2 * FRAMES)
    first, second = records[: len(records) // 2], records[len(records) // 2 :]
    client = InfluxV1Client(settings.influx)
    old = scenario.start_worker()
    frozen = False
    try:
        scenario.produce(first)
        scenario.wait(
            lambda: (
                len(scored_times(client, "press-a")) == FRAMES
                and scenario.stats(old).get("records") == len(first)
                and scenario.stats(old).get("uncommitted") == 0
            ),
            120,
            f"the first {len(first)} records stored and committed by the first worker",
        )
        influx.stop()
        scenario.produce(second)
        scenario.wait(
            lambda: (
                scenario.stats(old).get("sink_down") == 1
                and scenario.stats(old).get("uncommitted", 0) >= len(second)
            ),
            60,
            "the first worker holding the second batch, its points step waiting for InfluxDB",
        )
        os.kill(old.process.pid, signal.SIGSTOP)
        frozen = True
        new = scenario.start_worker()
        scenario.wait(
            lambda: (
                scenario.stats(new).get("assignments", 0) >= 1
                and scenario.stats(new).get("uncommitted", 0) >= len(second)
            ),
            180,
            "the second worker owning the partitions and holding the second batch",
        )
        influx.start()
        scenario.wait(
            lambda: (
                sum(o or 0 for o in _committed(settings, scenario.partitions).values())
                == len(records)
            ),
            120,
            f"all {len(records)} records committed by the second worker",
        )
        assert scenario.stats(new).get("records", 0) >= len(second)
        os.kill(old.process.pid, signal.SIGCONT)
        frozen = False
        scenario.wait(
            lambda: scenario.stats(old).get("commit_failures", 0) >= 1,
            120,
            "the first worker's commit of the second batch refused by the broker",
        )
        error = scenario.stats(old)["commit_error"]
        assert error.split(" <- ")[:2] in (
            ["CommitFailedError", "UnknownMemberIdError"],
            ["CommitFailedError", "IllegalGenerationError"],
            ["CommitFailedError", "RebalanceInProgressError"],
        ), error
        # Refused, so nothing of the first worker's moved the group's offsets.
        assert sum(o or 0 for o in _committed(settings, scenario.partitions).values()) == len(
            records
        )
        np.testing.assert_array_equal(scored_times(client, "press-a"), run.time_us[: 2 * FRAMES])
        assert old.alive(), old.log_tail()
        assert new.alive(), new.log_tail()
    finally:
        if frozen:
            os.kill(old.process.pid, signal.SIGCONT)
        scenario.stop()
        client.close()
        influx.stop()


#: Kafka API key of the committed-offset request (OffsetFetch; aiokafka sends
#: versions 1-3: the topic as an int16-sized string, then an int32-counted
#: array of int32 partitions).
OFFSET_FETCH = 9


def _produce_to(settings, partition: int, records: list[tuple[bytes, bytes]]) -> None:
    """Send (key, value) records to one telemetry partition; wait until all are stored."""
    from kafka import KafkaProducer

    producer = KafkaProducer(acks="all", **settings.kafka.kafka_python_config())
    try:
        sends = [
            producer.send(settings.topics.telemetry, key=k, value=v, partition=partition)
            for k, v in records
        ]
        for send in sends:
            send.get(30)
    finally:
        producer.close(timeout=10)


def test_the_committed_offset_lookup_is_retried_in_a_worker_while_the_broker_is_cut(
    proxied_stack, tmp_path
) -> None:
    """The look-up of a newly seen partition's committed offset, in a running
    worker, while the broker's network path is cut at that very request.

    Partition 1 has a committed offset before the worker starts (0, set by
    the test), so the look-up is the committed-offset request itself, whose
    retry aiokafka would otherwise do silently inside one request. The
    path is cut when the worker sends that request (the proxy holds it back)
    and restored only once the worker has counted two failed attempts. Then
    every frame of both lines is stored once, both partitions are committed
    to their end, and the worker is still running.
    """
    from kafka import KafkaConsumer, TopicPartition
    from kafka.structs import OffsetAndMetadata

    proxy = proxied_stack.proxy
    scenario = Scenario(proxied_stack.kafka_bootstrap, proxied_stack.influx_url, tmp_path, "lookup")
    settings = scenario.settings
    run = sample_run()
    train_lines(settings.registry_dir, run, ["press-a", "press-b"])
    ensure_topics(settings)
    seeded = KafkaConsumer(
        group_id=settings.worker_id,
        enable_auto_commit=False,
        **settings.kafka.kafka_python_config(),
    )
    try:
        seeded.commit({TopicPartition(settings.topics.telemetry, 1): OffsetAndMetadata(0, "", -1)})
    finally:
        seeded.close()
    assert _committed(settings, 2) == {0: None, 1: 0}
    records = {line: telemetry_records(run, line, FRAMES) for line in ("press-a", "press-b")}
    client = InfluxV1Client(settings.influx)
    worker = scenario.start_worker()
    try:
        _produce_to(settings, 0, records["press-a"])
        scenario.wait(
            lambda: (
                len(scored_times(client, "press-a")) == FRAMES
                and scenario.stats(worker).get("uncommitted") == 0
            ),
            120,
            f"press-a's {FRAMES} frames stored and committed (partition 0)",
        )
        assert scenario.stats(worker).get("offset_lookup_retries") == 0
        # The request naming partition 1 alone: the worker's look-up (Faust's
        # own seek at assignment, and any later refresh, name both).
        topic = settings.topics.telemetry.encode()
        proxy.cut_on_request(
            OFFSET_FETCH, struct.pack(">h", len(topic)) + topic + struct.pack(">ii", 1, 1)
        )
        _produce_to(settings, 1, records["press-b"])
        scenario.wait(
            proxy.cut_by_request.is_set,
            120,
            "the path cut at the worker's committed-offset request",
        )
        scenario.wait(
            lambda: scenario.stats(worker).get("offset_lookup_retries", 0) >= 2,
            120,
            "two committed-offset look-up attempts failed and counted while the path was cut",
        )
        proxy.resume()
        scenario.wait(
            lambda: (
                len(scored_times(client, "press-b")) == FRAMES
                and _committed(settings, 2)
                == {0: len(records["press-a"]), 1: len(records["press-b"])}
            ),
            180,
            f"press-b's {FRAMES} frames stored and both partitions committed to their end",
        )
        for line in records:
            np.testing.assert_array_equal(scored_times(client, line), run.time_us[:FRAMES])
        assert scenario.stats(worker).get("dead_letters") == 0
        assert worker.alive(), worker.log_tail()
    finally:
        if proxy.paused:
            proxy.resume()
        scenario.stop()
        client.close()
