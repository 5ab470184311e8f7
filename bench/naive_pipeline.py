"""The per-event pipeline as stream-processing tutorials build it, for comparison.

A Faust agent reads one JSON frame per Kafka record, calls the line's detector
on that one frame, and writes one InfluxDB point per result, awaiting each
write. Same models (the registry's active versions), same scoring function
(:func:`lineguard.detectors.scoring.score_batch`, with the line's state
carried between frames so the results equal LineGuard's) and same result
measurement as the real worker: only the batching differs.

``bench/pipeline.py`` runs it as a subprocess::

    python bench/naive_pipeline.py

configured by the usual ``LINEGUARD_*`` variables (broker, InfluxDB database,
registry, ``LINEGUARD_TOPIC_TELEMETRY`` for its input topic and
``LINEGUARD_WORKER_ID`` for its consumer group). :func:`frame_record` builds
its input records.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import orjson

__all__ = ["create_app", "frame_record", "main"]


def frame_record(line: str, time_us: int, sensors: list[str], values: np.ndarray) -> bytes:
    """One frame as a tutorial's JSON event: ``{"line", "time_us", "values": {name: v}}``."""
    return orjson.dumps(
        {
            "line": line,
            "time_us": int(time_us),
            "values": {
                name: (None if np.isnan(v) else float(v))
                for name, v in zip(sensors, values.tolist(), strict=True)
            },
        }
    )


def create_app() -> Any:
    """The naive Faust app (one agent, one event at a time)."""
    import faust

    from lineguard.detectors.scoring import score_batch
    from lineguard.influx import AsyncInfluxV1Client, encode_point
    from lineguard.models.registry import Registry
    from lineguard.settings import Settings
    from lineguard.stream.processor import RESULT_MEASUREMENT

    settings = Settings()
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        settings.worker_id,
        broker=[f"kafka://{hp}" for hp in settings.kafka.bootstrap_servers.split(",")],
        value_serializer="raw",
        key_serializer="raw",
        store="memory://",
        datadir=str(settings.state_dir / settings.worker_id),
        web_enabled=False,
        broker_session_timeout=6.0,
        broker_heartbeat_interval=1.0,
        consumer_auto_offset_reset="earliest",
        topic_partitions=settings.topics.partitions,
    )
    topic = app.topic(settings.topics.telemetry, key_serializer="raw", value_serializer="raw")
    registry = Registry(settings.registry_dir)
    sink = AsyncInfluxV1Client(settings.influx)
    models: dict[str, Any] = {}
    states: dict[str, Any] = {}

    @app.task
    async def prepare() -> None:
        await sink.create_database()

    @app.agent(topic)
    async def score(stream: Any) -> None:
        async for value in stream:
            event = orjson.loads(value)
            line = event["line"]
            bundle = models.get(line)
            if bundle is None:
                bundle = models[line] = registry.load(line)
            row = np.array(
                [[np.nan if (v := event["values"].get(s)) is None else v for s in bundle.sensors]]
            )
            k, n = bundle.debounce
            result, states[line] = score_batch(
                bundle.pipeline, row, states.get(line), bundle.threshold, k=k, n=n
            )
            top = ",".join(bundle.sensors[j] for j in result.top_sensors[0].tolist() if j >= 0)
            point = encode_point(
                RESULT_MEASUREMENT,
                {"site": settings.site, "line": line, "model_version": bundle.version},
                {
                    "score": float(result.score[0]),
                    "threshold": bundle.threshold,
                    "exceed": bool(result.raw_exceed[0]),
                    "anomaly": bool(result.anomaly[0]),
                    "historical": False,
                    "top_sensors": top,
                },
                event["time_us"] * 1000,
            )
            await sink.write(point, precision="ns")

    return app


def main() -> None:
    """Run the naive worker in the foreground (``faust worker``)."""
    import faust

    app = create_app()
    sys.argv = [sys.argv[0], "worker", "--loglevel", "WARNING"]
    worker = faust.Worker(app, loglevel="WARNING", quiet=True)
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()
