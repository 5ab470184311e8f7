"""A real pipeline run for the dashboard tests.

Two lines, on two sites, replayed from the bundled SKAB runs through the
real broker to a real scoring worker and archive worker, into a real
InfluxDB. Frame times are shifted to end just now, as live lines would:

* ``valve1-0`` (site-1): the whole run, ending a minute ago; its fault opens
  an incident that closes during the quiet frames after it;
* ``valve1-1`` (site-2): cut off in the middle of its fault, at a frame
  where the line is in alert, so it ends with an incident still open.

Two malformed records make dead letters. Nothing is mocked.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from kafka import KafkaProducer

from lineguard.demo import WorkerProcess
from lineguard.detectors.incidents import IncidentState, track_incidents
from lineguard.detectors.scoring import score_batch
from lineguard.influx import InfluxV1Client
from lineguard.ingest.csv_runs import RecordedRun, read_run
from lineguard.ingest.gateway import SequenceCounter, make_producer, replay
from lineguard.models.registry import ModelBundle, Registry
from lineguard.models.training import train_line_model
from lineguard.settings import Settings
from lineguard.stream.worker import ensure_topics
from tests.pipeline_support import isolated_settings, wait_for_count

SAMPLES = Path(__file__).resolve().parents[2] / "examples" / "data" / "skab"
TRAIN_ROWS = 400


@dataclass
class DashboardRun:
    """What the run produced and where."""

    settings: Settings
    client: InfluxV1Client
    lines: dict[str, str]  # line -> site
    closed_line: str  # has a closed incident
    open_line: str  # ends in alert with an open incident
    frames: dict[str, int]
    lines_in_alert: int  # expected, from the offline scoring of the same frames
    open_incidents: int
    incidents: dict[str, int]
    workdir: Path


def _shift(run: RecordedRun, end_us: int) -> RecordedRun:
    """The run with its frame times moved so the last frame is at ``end_us``."""
    return dataclasses.replace(run, time_us=run.time_us - run.time_us[-1] + end_us)


def _offline(run: RecordedRun, bundle: ModelBundle) -> tuple[np.ndarray, list]:
    """Alert flags and incident events of a run, computed with the same pure
    functions the worker uses (an independent expectation for the tests)."""
    k, n = bundle.debounce
    columns = [run.sensors.index(s) for s in bundle.sensors]
    result, _ = score_batch(
        bundle.pipeline, run.values[:, columns], None, threshold=bundle.threshold, k=k, n=n
    )
    _, events = track_incidents(
        IncidentState(),
        line="offline",
        time_us=run.time_us,
        anomaly=result.anomaly,
        score=result.score,
        threshold=bundle.threshold,
        top_sensors=[""] * len(run),
        model_version=bundle.version,
    )
    return np.asarray(result.anomaly, dtype=bool), events


def _cut_in_alert(run: RecordedRun, bundle: ModelBundle) -> RecordedRun:
    """The run cut inside its fault, at a frame where the line has been in
    alert for 10 frames."""
    flags, _ = _offline(run, bundle)
    labelled = np.flatnonzero(run.anomaly)
    for end in range(int(labelled[len(labelled) // 2]), int(labelled[0]) + 10, -1):
        if flags[end - 10 : end].all():
            return dataclasses.replace(
                run,
                time_us=run.time_us[:end],
                values=run.values[:end],
                anomaly=run.anomaly[:end],
                changepoint=None if run.changepoint is None else run.changepoint[:end],
            )
    raise AssertionError("the fault of the sample run never alerts for 10 frames")


@pytest.fixture(scope="session")
def dashboard_run(local_stack, tmp_path_factory):
    tag = uuid.uuid4().hex[:8]
    workdir = tmp_path_factory.mktemp("dashboards")
    env, settings = isolated_settings(local_stack, workdir, tag, database_prefix="dash")
    registry = Registry(settings.registry_dir)
    # valve1-1 in full: an incident that closes, then another one at its end;
    # valve1-0 cut in the middle of its fault, in alert.
    run_a = read_run(SAMPLES / "valve1" / "1.csv")
    bundle_a = train_line_model(registry, run_a, "valve1-1", rows=TRAIN_ROWS)
    run_b = read_run(SAMPLES / "valve1" / "0.csv")
    bundle_b = train_line_model(registry, run_b, "valve1-0", rows=TRAIN_ROWS)
    run_b = _cut_in_alert(run_b, bundle_b)
    expected = {"valve1-1": _offline(run_a, bundle_a), "valve1-0": _offline(run_b, bundle_b)}
    ensure_topics(settings)
    workers = [
        WorkerProcess("score", env, workdir / "score.log"),
        WorkerProcess("archive", env, workdir / "archive.log"),
    ]
    client = InfluxV1Client(settings.influx)
    try:
        now_us = time.time_ns() // 1000
        plan = {
            "valve1-1": ("site-1", _shift(run_a, now_us - 60_000_000)),
            "valve1-0": ("site-2", _shift(run_b, now_us - 1_000_000)),
        }
        producer = make_producer(settings.kafka)
        for line, (site, run) in plan.items():
            replay(
                run,
                producer=producer,
                topic=settings.topics.telemetry,
                site=site,
                line=line,
                gateway_id=f"gw-{line}",
                sequence=SequenceCounter(),
                speed=0,
            )
        producer.close()
        raw = KafkaProducer(**settings.kafka.kafka_python_config())
        for value in (b"{not json", b'{"schema": "lineguard.telemetry.v1"}'):
            raw.send(settings.topics.telemetry, key=b"valve1-1", value=value)
        raw.flush()
        raw.close()

        for line, (_, run) in plan.items():
            for measurement, field in (
                ("lineguard_score", "score"),
                ("lineguard_telemetry", "Pressure"),
            ):
                wait_for_count(
                    client,
                    f'SELECT count("{field}") FROM "{measurement}" WHERE "line" = \'{line}\'',
                    len(run),
                    workers,
                )
        wait_for_count(
            client,
            'SELECT count("incident_id") FROM "lineguard_incident" WHERE "state" = \'closed\'',
            1,
            workers,
        )
        # Worker reports every 5 s: wait for several of each role, the last
        # ones counting every frame and the dead letters.
        for role in ("score", "archive"):
            wait_for_count(
                client,
                f'SELECT count("frames") FROM "lineguard_worker" WHERE "role" = \'{role}\' '
                f'AND "frames" > 0',
                3,
                workers,
            )
        wait_for_count(
            client,
            'SELECT count("dead_letters") FROM "lineguard_worker" WHERE "dead_letters" > 0',
            2,
            workers,
        )
        yield DashboardRun(
            settings=settings,
            client=client,
            lines={line: site for line, (site, _) in plan.items()},
            closed_line="valve1-1",
            open_line="valve1-0",
            lines_in_alert=sum(bool(flags[-1]) for flags, _ in expected.values()),
            open_incidents=sum(
                1 for _, events in expected.values() if events and events[-1].state == "open"
            ),
            incidents={
                line: len({e.incident_id for e in events}) for line, (_, events) in expected.items()
            },
            frames={line: len(run) for line, (_, run) in plan.items()},
            workdir=workdir,
        )
    finally:
        client.close()
        for worker in workers:
            worker.stop()
