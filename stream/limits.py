"""Micro-batch sizes, windows and retry bounds of the stream worker.

Offline code (``lineguard.models.evaluation`` replays a run the way the
worker batches it) needs the same numbers, and importing the worker loads
Faust: so they live here, in a module with no imports, and nowhere else.
"""

from __future__ import annotations

__all__ = [
    "BATCH_BYTES",
    "BATCH_RECORDS",
    "BATCH_WINDOW_S",
    "FETCH_MAX_WAIT_MS",
    "LOOKUP_ATTEMPT_S",
    "MAX_WRITE_BYTES",
    "RETRY_FIRST_S",
    "RETRY_MAX_S",
    "STATE_RESTORE_TIMEOUT_S",
    "STORES_PENDING",
]

#: Most records in one micro-batch.
BATCH_RECORDS = 200
#: Longest a take waits for more records: every record waits up to this long
#: when records trickle in (bench/pipeline.py latency at 91k frames/s: p99
#: 369-404 ms at 50 ms, 311-314 ms at 25 ms, same throughput).
BATCH_WINDOW_S = 0.025
#: Most telemetry bytes in one micro-batch: about 40k frames of 50 sensors in
#: wire format v3. Small enough that storing a batch overlaps scoring the
#: next one; large enough that the per-line and per-batch costs (state
#: snapshots, state records, commits) stay small (bench/pipeline.py, 800k
#: frames: 4 MB batches 118k-133k frames/s, 8 MB 152k-157k, 16 MB 158k-160k).
BATCH_BYTES = 16 * 1024 * 1024
#: Longest a fetch waits on the broker for new records. Faust hard-codes 1500
#: ms, and Tansu answers a waiting fetch only when that time is up, so every
#: record sat up to 1.5 s in the broker (measured p50 0.6 s at light load).
FETCH_MAX_WAIT_MS = 50
#: Scored batches waiting to be stored, at most: scoring the next batch goes
#: on while these are written, so a slow write does not idle the scorer.
STORES_PENDING = 2
#: Backoff of every retried I/O (InfluxDB writes, offset look-ups).
RETRY_FIRST_S = 0.2
RETRY_MAX_S = 10.0
#: Bound on one attempt of the committed-offset look-up. aiokafka waits out
#: an unreachable broker inside its own request for up to Faust's request
#: timeout (90 s), unlogged and uncounted; past this bound the attempt fails
#: and the worker's own retry (logged, counted in ``offset_lookup_retries``)
#: asks again.
LOOKUP_ATTEMPT_S = 5.0
#: Largest InfluxDB request body (see ``writes.write_bodies``): about 16k
#: score points.
MAX_WRITE_BYTES = 2 * 1024 * 1024
#: Bound on restoring the line state of newly assigned partitions. Past it
#: the worker logs an error, counts ``state_restore_timeouts`` and scores
#: from what it has read (see ``docs/reliability.md``, "Fallback").
STATE_RESTORE_TIMEOUT_S = 8.0
