"""The worker's counters, reported in its log and to InfluxDB every few seconds."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from lineguard.contracts import ASSIGNMENT_MEASUREMENT, WORKER_MEASUREMENT

__all__ = ["ASSIGNMENT_MEASUREMENT", "WORKER_MEASUREMENT", "WorkerStats", "write_stats_file"]


class WorkerStats:
    """Counters a worker reports in its log and to InfluxDB."""

    def __init__(self) -> None:
        self.records = 0
        self.frames = 0
        self.dead_letters = 0
        self.alerts = 0
        self.incidents = 0
        self.write_retries = 0
        self.write_errors = 0
        # Resent copies dropped by (gateway, seq); alert edges at late frames.
        self.duplicates = 0
        self.historical_alerts_suppressed = 0
        self.batches = 0
        # Line state: restores on assignment, lines restored, restores that
        # hit their bound (the fallback ran), lines with no valid snapshot.
        self.state_restores = 0
        self.lines_restored = 0
        self.state_restore_timeouts = 0
        self.state_ahead = 0
        self.commit_failures = 0
        # The last failed commit's error and the broker's answer it chains to
        # ("CommitFailedError <- IllegalGenerationError"): a refusal by the
        # group coordinator reads differently from a request that never got through.
        self.commit_error = ""
        # Committed-offset look-ups of newly assigned partitions asked again
        # (the broker did not answer within the attempt's bound).
        self.offset_lookup_retries = 0
        # Partition assignments received (one per rebalance this worker took part in).
        self.assignments = 0
        self.batch_ms = 0.0
        # The InfluxDB sink: unreachable since its last failed request, and why.
        self.sink_down = False
        self.sink_error = ""
        # Frames whose reading was missing and imputed, per (line, sensor).
        self.imputed: dict[tuple[str, str], int] = {}
        self.started = time.monotonic()
        self._last_frames = 0
        self._last_at = time.monotonic()

    def add(
        self,
        done: dict[str, int],
        records: int,
        seconds: float,
        imputed: Mapping[tuple[str, str], int] | None = None,
    ) -> None:
        """Count a stored batch: what its delivery steps did, its records and time."""
        for key, frames in (imputed or {}).items():
            self.imputed[key] = self.imputed.get(key, 0) + frames
        self.records += records
        self.batches += 1
        self.batch_ms = 1e3 * seconds
        self.frames += done.get("frames", 0)
        self.dead_letters += done.get("dead_letters", 0)
        self.alerts += done.get("alerts", 0)
        self.incidents += done.get("incidents", 0)
        self.duplicates += done.get("duplicates", 0)
        self.historical_alerts_suppressed += done.get("historical_alerts_suppressed", 0)

    def frames_per_s(self) -> float:
        """Scored (or archived) frames per second since the last call."""
        now = time.monotonic()
        rate = (self.frames - self._last_frames) / max(now - self._last_at, 1e-9)
        self._last_frames, self._last_at = self.frames, now
        return rate


def write_stats_file(path: Path, fields: Mapping[str, Any]) -> None:
    """Replace ``path`` with ``fields`` as one JSON object, atomically.

    The worker's counters must be readable while InfluxDB, where they are
    reported too, is the thing that is down (an outage's write retries and
    uncommitted records), and by a reader that never sees half a file: the
    object is written to a temporary file beside ``path`` and renamed over it
    (``os.replace`` is atomic on POSIX). ``pid`` and ``written_at_s``
    (Unix time) say which process wrote it and when.
    """
    body = orjson.dumps(
        {**fields, "pid": os.getpid(), "written_at_s": time.time()},
        option=orjson.OPT_NON_STR_KEYS,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(body)
    os.replace(tmp, path)
