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
VIEW_AFTER_DATA_MS = 180_000


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
    latest_view_ms: int  # data end + VIEW_AFTER_DATA_MS

    def view_end_ms(self) -> int:
        """The end of the range a test views the dashboards at: now, but never
        later than 3 minutes after the last frames.

        The frames carry data times (1-60 s before the fixture's start) while
        the worker reports carry wall-clock times and go on while the workers
        run. Capped, "the last 5 minutes" always covers the last frames however
        long the fixture and the earlier tests took, and "the last minute"
        always holds worker reports: the workers ran through that minute.
        """
        return min(time.time_ns() // 1_000_000, self.latest_view_ms)

    open_incidents: int
    incidents: dict[str, int]
    workdir: Path
    runs: dict[str, RecordedRun]  # line -> the frames it was sent (times as sent)


def _shift(run: RecordedRun, end_us: int) -> RecordedRun:
    """The run with its frame times moved so the last frame is at ``end_us``."""
    return dataclasses.replace(run, time_us=run.time_us - run.time_us[-1] + end_us)


# The alert rules as documented, written out here frame by frame so the
# expectation does not come from the worker's own functions: a frame exceeds
# when its score is above the line's threshold, except the first
# ``window - 1`` frames of a stream (a partial trailing window); it is in
# alert when >= k of the last n frames (itself included) exceed; an incident
# closes once the line has been quiet for 60 s of data time.
CLOSE_AFTER_US = 60_000_000


@dataclass
class Offline:
    """A line's alert flags and incidents, computed by the reference."""

    alert: np.ndarray  # per frame
    incidents: int
    last_open: bool  # the last incident was not closed by quiet data


def _offline(run: RecordedRun, bundle: ModelBundle) -> Offline:
    """The reference: the model's scores (its public transform and
    decision_function, on the whole run at once), then threshold, warm-up,
    k-of-n debounce and incident hysteresis one frame at a time."""
    k, n = bundle.debounce
    columns = [run.sensors.index(s) for s in bundle.sensors]
    features, _ = bundle.pipeline.transform(run.values[:, columns], None)
    score = bundle.pipeline.detector_.decision_function(features)
    exceed = [i >= bundle.pipeline.window - 1 and s > bundle.threshold for i, s in enumerate(score)]
    alert = np.array([sum(exceed[max(0, i - n + 1) : i + 1]) >= k for i in range(len(exceed))])
    incidents, last_alert_us, is_open = 0, None, False
    for t, flag in zip(run.time_us.tolist(), alert.tolist(), strict=True):
        if is_open and t - last_alert_us > CLOSE_AFTER_US:
            is_open = False
        if flag:
            if not is_open:
                incidents += 1
                is_open = True
            last_alert_us = t
    return Offline(alert=alert, incidents=incidents, last_open=is_open)


def _cut_in_alert(run: RecordedRun, bundle: ModelBundle) -> RecordedRun:
    """The run cut inside its fault, at a frame where the line has been in
    alert for 10 frames."""
    flags = _offline(run, bundle).alert
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
        # The latest instant the tests view the dashboards at (see
        # DashboardRun.view_end_ms); the worker reports needed are waited
        # for inside that range.
        view_end_ms = now_us // 1000 + VIEW_AFTER_DATA_MS
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
                f'AND "frames" > 0 AND time <= {view_end_ms}ms',
                3,
                workers,
            )
        wait_for_count(
            client,
            'SELECT count("dead_letters") FROM "lineguard_worker" WHERE "dead_letters" > 0 '
            f"AND time <= {view_end_ms}ms",
            2,
            workers,
        )
        yield DashboardRun(
            settings=settings,
            client=client,
            lines={line: site for line, (site, _) in plan.items()},
            closed_line="valve1-1",
            open_line="valve1-0",
            lines_in_alert=sum(bool(o.alert[-1]) for o in expected.values()),
            open_incidents=sum(o.last_open for o in expected.values()),
            incidents={line: o.incidents for line, o in expected.items()},
            latest_view_ms=view_end_ms,
            frames={line: len(run) for line, (_, run) in plan.items()},
            workdir=workdir,
            runs={line: run for line, (_, run) in plan.items()},
        )
    finally:
        client.close()
        for worker in workers:
            worker.stop()
