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
