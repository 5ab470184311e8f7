"""The worker's stats file: one JSON object, replaced whole."""

from __future__ import annotations

import os

import orjson

from lineguard.stream.stats import write_stats_file


def test_the_stats_file_is_replaced_whole_and_says_who_wrote_it(tmp_path) -> None:
    path = tmp_path / "run" / "worker.json"
    write_stats_file(path, {"frames": 10, "sink_down": 1})
    write_stats_file(path, {"frames": 25, "sink_down": 0})
    doc = orjson.loads(path.read_bytes())
    assert doc["frames"] == 25 and doc["sink_down"] == 0
    assert doc["pid"] == os.getpid()
    assert doc["written_at_s"] > 0
    # Nothing left beside it: the temporary file was renamed over it.
    assert sorted(p.name for p in path.parent.iterdir()) == ["worker.json"]
