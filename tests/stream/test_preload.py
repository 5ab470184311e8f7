"""Models are loaded when partitions are assigned, for exactly the lines on them."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from lineguard.ingest.csv_runs import read_run
from lineguard.ingest.gateway import make_producer
from lineguard.models.registry import Registry
from lineguard.models.training import fit_from_rows, train_from_rows
from lineguard.settings import KafkaSettings, Settings, TopicSettings
from lineguard.stream.processor import TelemetryProcessor
from lineguard.stream.serving import lines_on_partitions
from lineguard.stream.worker import ensure_topics

SAMPLES = Path(__file__).resolve().parents[2] / "examples" / "data" / "skab"
LINES = [f"press-{i}" for i in range(12)]


@pytest.mark.integration
def test_line_partitions_match_where_the_gateway_producer_puts_records(local_stack) -> None:
    tag = uuid.uuid4().hex[:8]
    settings = Settings(
        kafka=KafkaSettings(bootstrap_servers=local_stack.kafka_bootstrap),
        topics=TopicSettings(telemetry=f"telemetry-{tag}", partitions=4),
    )
    ensure_topics(settings)
    producer = make_producer(settings.kafka)
    try:
        placed = {
            line: producer.send(settings.topics.telemetry, key=line.encode(), value=b"{}")
            .get(timeout=30)
            .partition
            for line in LINES
        }
    finally:
        producer.close(timeout=10)
    for partition in range(4):
        expected = [line for line in LINES if placed[line] == partition]
        assert lines_on_partitions(LINES, {partition}, 4) == expected
    assert len(set(placed.values())) > 1  # the check above is not vacuous


def test_preload_loads_verified_bundles_that_scoring_then_serves(tmp_path) -> None:
    run = read_run(SAMPLES / "valve1" / "0.csv")
    registry = Registry(tmp_path / "registry")
    fitted = fit_from_rows(list(run.sensors), run.values[:400])
    for line in ("a", "b", "c"):
        train_from_rows(
            registry,
            line,
            sensors=list(run.sensors),
            time_us=run.time_us[:400],
            X=run.values[:400],
            source="0.csv",
            fitted=fitted,
        )
    processor = TelemetryProcessor(registry)
    assert processor.preload(["a", "b"]) == 2
    assert processor.preload(["a", "b"]) == 0  # already loaded
    assert processor.preload(["b"]) == 0 and set(processor._preloaded) == {("b", "v0001")}
    served = processor._model_for("b", now=0.0)
    assert served is not None and served.bundle.version == "v0001"
    assert not processor._preloaded  # handed over to serving, not kept twice
    assert processor.preload(["b"]) == 0  # served already
