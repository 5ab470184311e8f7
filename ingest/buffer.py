"""The gateway's disk buffer: store-and-forward that survives restarts.

An edge gateway must not lose a line's telemetry because the broker, the
network or the gateway itself went down for a while (Sparkplug B calls this
store-and-forward; AVEVA PI buffers *always*, not only during outages). So
every record the gateway produces is first appended to this buffer, and is
removed from it only once the broker acknowledged it: what is in the buffer
is exactly what the broker may not have yet.

Layout on disk, in one directory:

* ``seg-<id>.log`` segment files, append-only. Each record is framed as a
  fixed header (value length, key length, append time, CRC32 of
  header+key+value) followed by the key and value bytes. A torn write at the
  tail (power loss mid-append) fails its length or CRC check and is cut off
  at the next open; a corrupt record inside a sealed segment ends that
  segment's readable part and is counted, never silently skipped over.
* ``cursor.json``: the position of the first record the broker has not
  acknowledged yet, replaced atomically (write + rename).

The buffer is bounded by ``max_bytes``. When an append would exceed it the
``when_full`` policy applies: ``drop_oldest`` deletes the oldest whole
segment (the least useful data in a long outage: newest readings matter
most for a running line), ``drop_newest`` refuses the new record. Either way
the dropped records are counted in :class:`BufferStats` and logged at
WARNING level: a drop is never silent.

``fsync`` chooses durability against speed: ``always`` syncs every append
(survives power loss), ``segment`` syncs when a segment is sealed and on
close (survives a crash of the gateway process, since the OS page cache
outlives it; the default), ``never`` leaves it to the OS.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from lineguard.errors import LineGuardError

__all__ = [
    "BufferFull",
    "BufferStats",
    "BufferedRecord",
    "DiskBuffer",
    "Position",
]

log = logging.getLogger(__name__)

# value length, key length, append time (epoch µs), CRC32 of the rest.
_HEADER = struct.Struct("<IHqI")
_SEGMENT_PREFIX = "seg-"
_SEGMENT_SUFFIX = ".log"
_CURSOR = "cursor.json"
#: Largest key a record may carry (the key length field is 16 bits).
MAX_KEY_BYTES = 0xFFFF

Position = tuple[int, int]
"""(segment id, byte offset): a point in the buffer, ordered like the data."""


class BufferFull(LineGuardError, RuntimeError):
    """A record was refused because the buffer is full (``drop_newest`` policy)."""


@dataclass(frozen=True)
class BufferedRecord:
    """One record read back from the buffer.

    Attributes
    ----------
    key, value : bytes
        As appended.
    appended_at_us : int
        Wall clock at append time (epoch microseconds); tells how late a
        record is when it is finally sent.
    end : Position
        Position just after this record; :meth:`DiskBuffer.commit` with it
        removes the record and everything before it.
    """

    key: bytes
    value: bytes
    appended_at_us: int
    end: Position


@dataclass
class BufferStats:
    """Buffer counters, since this process opened the buffer (``pending*``: now).

    Attributes
    ----------
    pending_records, pending_bytes : int
        Records not yet acknowledged by the broker, and the bytes on disk.
    appended, committed : int
        Records appended and acknowledged (removed).
    dropped : int
        Records dropped because the buffer was full.
    corrupt : int
        Records found corrupt on disk (torn tail writes, bad CRC).
    segments : int
        Segment files on disk.
    """

    pending_records: int = 0
    pending_bytes: int = 0
    appended: int = 0
    committed: int = 0
    dropped: int = 0
    corrupt: int = 0
    segments: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counters as a plain dict (for logs and metrics)."""
        return asdict(self)


@dataclass
class _Segment:
    id: int
    path: Path
    # Byte offset of the end of each record, in order: positions of records.
    ends: list[int]

    @property
    def size(self) -> int:
        return self.ends[-1] if self.ends else 0


def _frame(key: bytes, value: bytes, appended_at_us: int) -> bytes:
    header_wo_crc = struct.pack("<IHq", len(value), len(key), appended_at_us)
    crc = zlib.crc32(value, zlib.crc32(key, zlib.crc32(header_wo_crc)))
    return _HEADER.pack(len(value), len(key), appended_at_us, crc) + key + value


def _scan(data: bytes) -> tuple[list[int], bool]:
    """Record end offsets of the valid prefix of a segment, and whether the
    rest (if any) was damaged."""
    ends: list[int] = []
    pos = 0
    n = len(data)
    while pos < n:
        if n - pos < _HEADER.size:
            return ends, True
        vlen, klen, at_us, crc = _HEADER.unpack_from(data, pos)
        end = pos + _HEADER.size + klen + vlen
        if end > n:
            return ends, True
        body = data[pos + _HEADER.size : end]
        head = struct.pack("<IHq", vlen, klen, at_us)
        if zlib.crc32(body, zlib.crc32(head)) != crc:
            return ends, True
        ends.append(end)
        pos = end
    return ends, False


class DiskBuffer:
    """A bounded, append-only, crash-safe record queue in a directory.

    Parameters
    ----------
    directory : Path or str
        Where the segments and the cursor live; created if missing. One
        buffer per directory: the gateway takes it over as a whole.
    max_bytes : int
        Bound on the segment bytes on disk (acknowledged records still in a
        partly consumed segment count until that segment is deleted).
    segment_bytes : int
        A segment is sealed and a new one started once it reaches this size;
        ``drop_oldest`` frees space one segment at a time, so keep it well
        below ``max_bytes`` (at most half of it).
    when_full : {"drop_oldest", "drop_newest"}
        What to do when an append would exceed ``max_bytes``.
    fsync : {"always", "segment", "never"}
        When to force data to disk, see the module docstring.

    Notes
    -----
    Reads go through an in-memory read position ahead of the durable cursor,
    so records can be in flight to the broker while new ones are appended;
    :meth:`rewind` moves the read position back to the cursor after a failed
    send, and the same records are read again.
    """

    def __init__(
        self,
        directory: Path | str,
        *,
        max_bytes: int = 256 * 1024 * 1024,
        segment_bytes: int = 8 * 1024 * 1024,
        when_full: Literal["drop_oldest", "drop_newest"] = "drop_oldest",
        fsync: Literal["always", "segment", "never"] = "segment",
    ) -> None:
        if when_full not in ("drop_oldest", "drop_newest"):
            raise ValueError(f"when_full must be 'drop_oldest' or 'drop_newest'; got {when_full!r}")
        if fsync not in ("always", "segment", "never"):
            raise ValueError(f"fsync must be 'always', 'segment' or 'never'; got {fsync!r}")
        if segment_bytes < 1024 or max_bytes < 2 * segment_bytes:
            raise ValueError(
                "expected segment_bytes >= 1024 and max_bytes >= 2 * segment_bytes; "
                f"got segment_bytes={segment_bytes}, max_bytes={max_bytes}"
            )
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.when_full = when_full
        self.fsync = fsync
        self._lock = threading.Lock()
        self._stats = BufferStats()
        self.directory.mkdir(parents=True, exist_ok=True)
        # One writer per buffer: two gateways interleaving appends and
        # cursor updates in one directory would lose records.
        self._lock_file = (self.directory / "lock").open("a")
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            self._lock_file.close()
            raise RuntimeError(
                f"expected exclusive use of gateway buffer {self.directory}; "
                "another process or DiskBuffer has it open"
            ) from exc
        self._segments: list[_Segment] = []
        self._writer = None
        self._open()

    def __repr__(self) -> str:
        return (
            f"DiskBuffer({str(self.directory)!r}, pending_records={self._stats.pending_records}, "
            f"max_bytes={self.max_bytes}, when_full={self.when_full!r})"
        )

    # -- opening and recovery ----------------------------------------------
    def _open(self) -> None:
        for path in sorted(self.directory.glob(f"{_SEGMENT_PREFIX}*{_SEGMENT_SUFFIX}")):
            try:
                seg_id = int(path.name[len(_SEGMENT_PREFIX) : -len(_SEGMENT_SUFFIX)])
            except ValueError:
                continue
            self._segments.append(_Segment(seg_id, path, []))
        self._segments.sort(key=lambda s: s.id)
        for i, seg in enumerate(self._segments):
            data = seg.path.read_bytes()
            seg.ends, damaged = _scan(data)
            if damaged:
                lost = len(data) - seg.size
                self._stats.corrupt += 1
                last = i == len(self._segments) - 1
                log.warning(
                    "gateway buffer %s: %d damaged bytes after %d good records in %s (%s); "
                    "cutting them off",
                    self.directory,
                    lost,
                    len(seg.ends),
                    seg.path.name,
                    "torn write at the tail" if last else "corruption in a sealed segment",
                )
                with seg.path.open("r+b") as f:
                    f.truncate(seg.size)
        self._cursor = self._read_cursor()
        # Segments wholly before the cursor were acknowledged: remove them.
        while self._segments and self._segments[0].id < self._cursor[0]:
            self._delete(self._segments.pop(0))
        if self._segments and self._cursor[0] < self._segments[0].id:
            self._cursor = (self._segments[0].id, 0)
        if not self._segments:
            self._segments.append(self._new_segment(max(self._cursor[0], 0)))
            self._cursor = (self._segments[0].id, 0)
        head = self._segments[0]
        if self._cursor[0] == head.id and self._cursor[1] > head.size:
            # The acknowledged position lies in bytes cut off as damaged.
            self._cursor = (head.id, head.size)
        self._read_pos = self._cursor
        self._recount()
        tail = self._segments[-1]
        self._writer = tail.path.open("ab")
        if self._stats.pending_records:
            log.info(
                "gateway buffer %s: %d records (%d bytes) waiting from before the restart",
                self.directory,
                self._stats.pending_records,
                self._stats.pending_bytes,
            )

    def _read_cursor(self) -> Position:
        path = self.directory / _CURSOR
        try:
            doc = json.loads(path.read_text())
            return int(doc["segment"]), int(doc["offset"])
        except FileNotFoundError:
            first = self._segments[0].id if self._segments else 0
            return first, 0
        except (ValueError, KeyError, TypeError) as exc:
            # Resending is safe (the worker drops duplicates by sequence
            # number); skipping is not. So start from the oldest record.
            log.warning("gateway buffer cursor %s unreadable (%s); resending from start", path, exc)
            first = self._segments[0].id if self._segments else 0
            return first, 0

    def _new_segment(self, seg_id: int) -> _Segment:
        path = self.directory / f"{_SEGMENT_PREFIX}{seg_id:012d}{_SEGMENT_SUFFIX}"
        path.touch()
        return _Segment(seg_id, path, [])

    def _delete(self, seg: _Segment) -> None:
        with contextlib.suppress(FileNotFoundError):
            seg.path.unlink()

    def _pending_in(self, seg: _Segment, after: Position) -> int:
        if seg.id < after[0]:
            return 0
        if seg.id > after[0]:
            return len(seg.ends)
        return sum(1 for e in seg.ends if e > after[1])

    def _recount(self) -> None:
        records = 0
        size = 0
        for seg in self._segments:
            records += self._pending_in(seg, self._cursor)
            size += seg.size
        self._stats.pending_records = records
        self._stats.pending_bytes = size
        self._stats.segments = len(self._segments)

    # -- writing -------------------------------------------------------------
    def append(self, key: bytes, value: bytes, appended_at_us: int | None = None) -> None:
        """Append one record durably (per the ``fsync`` policy).

        Raises
        ------
        BufferFull
            With ``when_full="drop_newest"``, when there is no room; the
            record is counted as dropped.
        ValueError
            If the record alone is larger than a segment may grow.
        """
        if len(key) > MAX_KEY_BYTES:
            raise ValueError(f"expected a key of at most {MAX_KEY_BYTES} bytes; got {len(key)}")
        at_us = time.time_ns() // 1000 if appended_at_us is None else appended_at_us
        frame = _frame(key, value, at_us)
        if len(frame) > self.max_bytes - self.segment_bytes:
            raise ValueError(
                f"expected a record of at most {self.max_bytes - self.segment_bytes} bytes "
                f"framed; got {len(frame)}"
            )
        with self._lock:
            if self._stats.pending_bytes + len(frame) > self.max_bytes:
                self._make_room(len(frame))
            tail = self._segments[-1]
            if tail.size and tail.size + len(frame) > self.segment_bytes:
                tail = self._roll()
            assert self._writer is not None
            self._writer.write(frame)
            self._writer.flush()  # in the OS page cache: survives our crash
            if self.fsync == "always":
                os.fsync(self._writer.fileno())
            tail.ends.append(tail.size + len(frame))
            self._stats.appended += 1
            self._stats.pending_records += 1
            self._stats.pending_bytes += len(frame)

    def _roll(self) -> _Segment:
        assert self._writer is not None
        if self.fsync in ("always", "segment"):
            os.fsync(self._writer.fileno())
        self._writer.close()
        seg = self._new_segment(self._segments[-1].id + 1)
        self._segments.append(seg)
        self._stats.segments = len(self._segments)
        self._writer = seg.path.open("ab")
        return seg

    def _make_room(self, needed: int) -> None:
        if self.when_full == "drop_newest":
            self._stats.dropped += 1
            log.warning(
                "gateway buffer %s full (%d of %d bytes): dropping the NEWEST record "
                "(%d dropped so far)",
                self.directory,
                self._stats.pending_bytes,
                self.max_bytes,
                self._stats.dropped,
            )
            raise BufferFull(
                f"expected room for {needed} bytes in the gateway buffer; it holds "
                f"{self._stats.pending_bytes} of {self.max_bytes} bytes"
            )
        while self._stats.pending_bytes + needed > self.max_bytes and len(self._segments) > 1:
            oldest = self._segments.pop(0)
            lost = self._pending_in(oldest, self._cursor)
            self._delete(oldest)
            self._stats.dropped += lost
            if self._cursor[0] <= oldest.id:
                self._cursor = (self._segments[0].id, 0)
                self._write_cursor()
            if self._read_pos[0] <= oldest.id:
                self._read_pos = (self._segments[0].id, 0)
            self._recount()
            log.warning(
                "gateway buffer %s full (max %d bytes): dropped the OLDEST %d unsent records "
                "(%d dropped so far)",
                self.directory,
                self.max_bytes,
                lost,
                self._stats.dropped,
            )
        if self._stats.pending_bytes + needed > self.max_bytes:
            # Only the tail segment is left: seal it so the next round can drop it.
            self._roll()

    # -- reading and acknowledging -----------------------------------------
    def read(self, max_records: int) -> list[BufferedRecord]:
        """The next records after the read position, advancing it.

        Records read are still pending until :meth:`commit` is called with a
        position at or after their ``end``.
        """
        out: list[BufferedRecord] = []
        with self._lock:
            for seg in self._segments:
                if len(out) >= max_records:
                    break
                if seg.id < self._read_pos[0]:
                    continue
                start = self._read_pos[1] if seg.id == self._read_pos[0] else 0
                ends = [e for e in seg.ends if e > start]
                if not ends:
                    continue
                ends = ends[: max_records - len(out)]
                with seg.path.open("rb") as f:
                    f.seek(start)
                    data = f.read(ends[-1] - start)
                pos = 0
                for end in ends:
                    vlen, klen, at_us, _crc = _HEADER.unpack_from(data, pos)
                    body = pos + _HEADER.size
                    key = data[body : body + klen]
                    value = data[body + klen : body + klen + vlen]
                    out.append(BufferedRecord(key, value, at_us, (seg.id, end)))
                    pos = end - start
                self._read_pos = (seg.id, ends[-1])
        return out

    def rewind(self) -> None:
        """Move the read position back to the oldest unacknowledged record."""
        with self._lock:
            self._read_pos = self._cursor

    def commit(self, position: Position) -> None:
        """Acknowledge every record up to ``position`` (a record's ``end``).

        Fully acknowledged segments other than the one being written are
        deleted. A position at or before the cursor (records already
        dropped or acknowledged) is ignored.
        """
        with self._lock:
            if position <= self._cursor:
                return
            done = sum(
                self._pending_in(seg, self._cursor) - self._pending_in(seg, position)
                for seg in self._segments
            )
            self._cursor = position
            if self._read_pos < position:
                self._read_pos = position
            while len(self._segments) > 1:
                head = self._segments[0]
                if head.id < position[0] or (head.id == position[0] and head.size <= position[1]):
                    self._segments.pop(0)
                    self._delete(head)
                    if self._cursor[0] == head.id:
                        self._cursor = (self._segments[0].id, 0)
                else:
                    break
            self._write_cursor()
            self._stats.committed += done
            self._recount()

    def _write_cursor(self) -> None:
        path = self.directory / _CURSOR
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"segment": self._cursor[0], "offset": self._cursor[1]}))
        os.replace(tmp, path)  # atomic: a crash leaves the old or the new cursor

    # -- inspection and lifecycle --------------------------------------------
    def __len__(self) -> int:
        return self._stats.pending_records

    def stats(self) -> BufferStats:
        """A snapshot of the counters."""
        with self._lock:
            return BufferStats(**asdict(self._stats))

    def __iter__(self) -> Iterator[BufferedRecord]:
        """Iterate over pending records without moving the read position."""
        with self._lock:
            saved = self._read_pos
            self._read_pos = self._cursor
        try:
            while True:
                batch = self.read(256)
                if not batch:
                    return
                yield from batch
        finally:
            with self._lock:
                self._read_pos = saved

    def close(self) -> None:
        """Flush (and sync unless ``fsync="never"``) and close the tail segment."""
        with self._lock:
            if self._writer is not None:
                self._writer.flush()
                if self.fsync != "never":
                    os.fsync(self._writer.fileno())
                self._writer.close()
                self._writer = None
            if not self._lock_file.closed:
                self._lock_file.close()  # releases the flock

    def __enter__(self) -> DiskBuffer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
