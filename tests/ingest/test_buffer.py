"""The gateway's disk buffer: order, restart, torn writes, bound and drop policy."""

from __future__ import annotations

import logging

import numpy as np
import orjson
import pytest

from lineguard.ingest.buffer import BufferFull, DiskBuffer
from lineguard.ingest.contract import TelemetryBatch, decode, encode
from lineguard.ingest.gateway import mark_historical


def _fill(buf: DiskBuffer, n: int, start: int = 0, size: int = 100) -> None:
    for i in range(start, start + n):
        buf.append(f"k{i % 3}".encode(), str(i).encode().ljust(size, b"."))


def _ids(records) -> list[int]:
    return [int(r.value.rstrip(b".")) for r in records]


def test_records_come_back_in_order_and_commit_removes_them(tmp_path) -> None:
    buf = DiskBuffer(tmp_path, segment_bytes=1024, max_bytes=64 * 1024)
    _fill(buf, 50)
    assert len(buf) == 50 and buf.stats().segments > 1
    first = buf.read(20)
    assert _ids(first) == list(range(20))
    assert [r.key for r in first[:3]] == [b"k0", b"k1", b"k2"]
    buf.commit(first[-1].end)
    assert len(buf) == 30
    rest = buf.read(100)
    assert _ids(rest) == list(range(20, 50))
    buf.commit(rest[-1].end)
    assert len(buf) == 0 and buf.stats().committed == 50
    # Acknowledged segments are deleted; only the one being written stays.
    assert len(list(tmp_path.glob("seg-*.log"))) == 1


def test_rewind_rereads_unacknowledged_records(tmp_path) -> None:
    buf = DiskBuffer(tmp_path, segment_bytes=1024, max_bytes=64 * 1024)
    _fill(buf, 10)
    batch = buf.read(4)
    buf.commit(batch[1].end)  # only two acknowledged, then a send failed
    buf.rewind()
    assert _ids(buf.read(100)) == list(range(2, 10))


def test_pending_records_survive_a_restart(tmp_path) -> None:
    buf = DiskBuffer(tmp_path, segment_bytes=1024, max_bytes=64 * 1024)
    _fill(buf, 30)
    buf.commit(buf.read(12)[-1].end)
    buf.close()
    again = DiskBuffer(tmp_path, segment_bytes=1024, max_bytes=64 * 1024)
    assert len(again) == 18
    assert _ids(again.read(100)) == list(range(12, 30))
    _fill(again, 5, start=30)
    again.rewind()
    assert _ids(again.read(100)) == list(range(12, 35))


@pytest.mark.parametrize(
    "cursor", [b"{not json", b'{"segment": 0}', b'{"segment": "a", "offset": 1}']
)
def test_an_unreadable_cursor_resends_everything_still_on_disk(tmp_path, caplog, cursor) -> None:
    """A damaged cursor file must never skip records: resending is safe (the
    worker drops duplicates by sequence number), losing them is not."""
    buf = DiskBuffer(tmp_path, segment_bytes=1024, max_bytes=64 * 1024)
    _fill(buf, 30)
    buf.commit(buf.read(12)[-1].end)  # 12 acknowledged
    buf.close()
    (tmp_path / "cursor.json").write_bytes(cursor)
    with caplog.at_level(logging.WARNING, logger="lineguard.ingest.buffer"):
        again = DiskBuffer(tmp_path, segment_bytes=1024, max_bytes=64 * 1024)
    assert "cursor" in caplog.text and "unreadable" in caplog.text and "resending" in caplog.text
    got = _ids(again.read(100))
    # Every record not yet acknowledged comes back, in order, and the resend
    # starts at the oldest segment still on disk (some acknowledged ones again).
    assert got[-18:] == list(range(12, 30))
    assert got == list(range(got[0], 30)) and got[0] <= 12


def test_a_torn_tail_write_is_cut_off_and_counted(tmp_path, caplog) -> None:
    buf = DiskBuffer(tmp_path, segment_bytes=4096, max_bytes=64 * 1024)
    _fill(buf, 5)
    buf.close()
    tail = sorted(tmp_path.glob("seg-*.log"))[-1]
    data = tail.read_bytes()
    tail.write_bytes(data[:-7])  # power loss in the middle of the last append
    with caplog.at_level(logging.WARNING):
        again = DiskBuffer(tmp_path, segment_bytes=4096, max_bytes=64 * 1024)
    assert _ids(again.read(100)) == [0, 1, 2, 3]
    assert again.stats().corrupt == 1
    assert "torn write" in caplog.text
    _fill(again, 1, start=9)  # appends continue after the good prefix
    again.rewind()
    assert _ids(again.read(100)) == [0, 1, 2, 3, 9]


def test_a_flipped_bit_fails_the_crc(tmp_path) -> None:
    buf = DiskBuffer(tmp_path, segment_bytes=4096, max_bytes=64 * 1024)
    _fill(buf, 3)
    buf.close()
    seg = sorted(tmp_path.glob("seg-*.log"))[0]
    data = bytearray(seg.read_bytes())
    data[len(data) // 2] ^= 0x01
    seg.write_bytes(bytes(data))
    again = DiskBuffer(tmp_path, segment_bytes=4096, max_bytes=64 * 1024)
    assert len(again) < 3 and again.stats().corrupt == 1


def test_full_buffer_drops_the_oldest_segment_with_a_count_and_a_log(tmp_path, caplog) -> None:
    buf = DiskBuffer(tmp_path, segment_bytes=1024, max_bytes=4096)
    with caplog.at_level(logging.WARNING):
        _fill(buf, 100)
    stats = buf.stats()
    assert stats.dropped > 0
    assert stats.pending_bytes <= 4096
    assert stats.dropped + stats.pending_records == 100
    assert "dropped the OLDEST" in caplog.text
    ids = _ids(buf.read(1000))
    # What is left is the newest data, still in order.
    assert ids == list(range(100 - len(ids), 100))


def test_full_buffer_with_drop_newest_refuses_and_counts(tmp_path, caplog) -> None:
    buf = DiskBuffer(tmp_path, segment_bytes=1024, max_bytes=2048, when_full="drop_newest")
    refused = 0
    with caplog.at_level(logging.WARNING):
        for i in range(40):
            try:
                buf.append(b"k", str(i).encode().ljust(100, b"."))
            except BufferFull:
                refused += 1
    assert refused > 0 and buf.stats().dropped == refused
    assert _ids(buf.read(1000)) == list(range(40 - refused))
    assert "dropping the NEWEST" in caplog.text


def test_invalid_settings_say_what_was_expected(tmp_path) -> None:
    with pytest.raises(ValueError, match="max_bytes >= 2"):
        DiskBuffer(tmp_path, segment_bytes=4096, max_bytes=4096)
    with pytest.raises(ValueError, match="when_full"):
        DiskBuffer(tmp_path, when_full="drop_all")  # type: ignore[arg-type]


def test_mark_historical_flips_only_the_flag() -> None:
    batch = TelemetryBatch(
        "site-1",
        "line-1",
        "gw-1",
        7,
        ("historical", "b"),  # a sensor named like the key must not be touched
        np.array([1_600_000_000_000_000]),
        np.array([[1.0, 2.0]]),
    )
    payload = encode(batch)
    flagged = decode(mark_historical(payload))
    assert flagged.historical and flagged.sensors == ("historical", "b") and flagged.seq == 7
    assert mark_historical(mark_historical(payload)) == mark_historical(payload)
    foreign = orjson.dumps({**orjson.loads(payload), "historical": None})
    assert orjson.loads(mark_historical(foreign))["historical"] is True


def test_one_buffer_directory_has_one_writer(tmp_path) -> None:
    buf = DiskBuffer(tmp_path)
    with pytest.raises(RuntimeError, match="exclusive use"):
        DiskBuffer(tmp_path)
    buf.close()
    DiskBuffer(tmp_path).close()  # free again once closed
