"""The worker's InfluxDB writes: bounded bodies, all stored or a clear refusal."""

from __future__ import annotations

import asyncio
import uuid

import numpy as np
import pytest

from lineguard.influx import AsyncInfluxV1Client, InfluxV1Client, encode_points
from lineguard.settings import InfluxSettings
from lineguard.stream.batching import batches_by_size
from lineguard.stream.stats import WorkerStats
from lineguard.stream.writes import write_bodies, write_until_accepted


def blocks(n_blocks: int, points: int, line: str = "l") -> list[str]:
    return [
        encode_points(
            "m",
            {"line": f"{line}{b}"},
            {"score": np.arange(points, dtype=float) + 0.5},
            1_700_000_000_000_000_000 + np.arange(points, dtype=np.int64) * 1_000_000_000,
        )
        for b in range(n_blocks)
    ]


def test_bodies_respect_the_size_limit_and_keep_every_line_in_order() -> None:
    lines = [*blocks(7, 40), ""]
    bodies = write_bodies(lines, max_bytes=3000)
    assert len(bodies) > 1
    assert all(len(b) <= 3000 for b in bodies)
    # Every point once, in the original order; empty blocks vanish.
    assert "\n".join(bodies).split("\n") == "\n".join(lines[:-1]).split("\n")
    # Blocks small enough to fit are never cut.
    assert write_bodies(lines[:2], max_bytes=10**6) == ["\n".join(lines[:2])]


def test_a_line_longer_than_the_limit_gets_a_body_of_its_own() -> None:
    long = 'm,line=x text="' + "a" * 100 + '" 1'
    bodies = write_bodies(["m v=1 1\nm v=2 2", long, "m v=3 3"], max_bytes=30)
    assert bodies == ["m v=1 1\nm v=2 2", long, "m v=3 3"]
    assert write_bodies([]) == []


def test_micro_batches_are_bounded_by_bytes_and_keep_record_order() -> None:
    records = [b"x" * n for n in (300, 300, 300, 900, 50, 50, 2000, 10)]
    batches = batches_by_size(records, 1000, len)
    # Every record once, in order; a batch passes the bound only when it
    # is one record larger than the bound on its own.
    assert [r for b in batches for r in b] == records
    assert all(sum(map(len, b)) <= 1000 or len(b) == 1 for b in batches)
    assert [len(b) for b in batches] == [3, 3, 1, 1]
    assert batches_by_size([], 1000, len) == []


@pytest.fixture()
def settings(local_stack) -> InfluxSettings:
    settings = InfluxSettings(url=local_stack.influx_url, database=f"w_{uuid.uuid4().hex[:8]}")
    with InfluxV1Client(settings) as client:
        client.create_database()
    return settings


def _count(settings: InfluxSettings) -> int:
    with InfluxV1Client(settings) as client:
        rows = client.query('SELECT count("score") FROM "m"', epoch=None)
    return int(rows[0]["count"]) if rows else 0


def _write(settings: InfluxSettings, lines: list[str], stats: WorkerStats, max_bytes: int):
    async def write() -> object:
        sink = AsyncInfluxV1Client(settings)
        try:
            return await write_until_accepted(sink, lines, stats, max_bytes=max_bytes)
        finally:
            await sink.close()

    return asyncio.run(write())


@pytest.mark.integration
def test_a_batch_larger_than_one_body_is_stored_whole(settings: InfluxSettings) -> None:
    lines = blocks(12, 250)
    stats = WorkerStats()
    assert len(write_bodies(lines, 20_000)) > 4  # several bodies
    assert _write(settings, lines, stats, 20_000) is None
    assert _count(settings) == 12 * 250
    assert stats.write_retries == stats.write_errors == 0


@pytest.mark.integration
def test_a_refused_body_is_reported_and_the_others_are_stored(settings: InfluxSettings) -> None:
    lines = [*blocks(4, 100), "m,line=bad score=not-a-number 1"]
    stats = WorkerStats()
    refused = _write(settings, lines, stats, 5_000)
    assert refused is not None and refused.status == 400
    assert stats.write_errors == 1
    assert _count(settings) == 400  # the valid bodies are in


def test_an_unreachable_sink_is_logged_with_its_url_and_reported(caplog) -> None:
    import logging
    import socket

    with socket.socket() as s:  # bound then closed: connections are refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://writer:s3cret@127.0.0.1:{port}"
    stats = WorkerStats()

    async def until_first_retry() -> None:
        sink = AsyncInfluxV1Client(InfluxSettings(url=url))
        task = asyncio.ensure_future(write_until_accepted(sink, ["m f=1 1"], stats))
        while stats.write_retries == 0:  # the retry loop never gives up by itself
            await asyncio.sleep(0.01)
        task.cancel()
        await sink.close()

    with caplog.at_level(logging.WARNING, logger="lineguard.stream.writes"):
        asyncio.run(until_first_retry())
    assert stats.sink_down
    assert "refused" in stats.sink_error
    assert f"InfluxDB write of 7 bytes at http://127.0.0.1:{port} failed (" in caplog.text
    assert "s3cret" not in caplog.text and "s3cret" not in stats.sink_error
