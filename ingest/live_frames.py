"""Frames from live tags, on plain Python lists: what ``lineguard gateway run`` uses.

The same rules, state and results as :mod:`lineguard.ingest.frames` (read its
docstring for the reasoning: event time, lateness, nothing invented, clock
skew), written without numpy so that the gateway process does not load
numpy at all. numpy is 15 to 20 MB of a gateway's resident memory and the
gateway's frame work is small: at a plant's 500 tags x 1 Hz a tick closes a
handful of periods of a few dozen sensors. Measured side by side
(``bench/frames_lists.py``) this module is faster than the vectorized one at
the gateway's batch sizes (a few hundred updates per line per tick: numpy's
per-call overhead dominates there) and slower only at batches far larger
than a gateway meets. The frames are the same bit for bit:
``tests/ingest/test_live_frames.py`` runs both on the same random updates.

Everything here is a pure function of the state passed in and out.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field

__all__ = [
    "FrameBatch",
    "LineFrameState",
    "TagUpdates",
    "assemble_frames",
    "new_line_state",
]

# The same bounds as the vectorized builder (kept equal by the equivalence
# test): see lineguard.ingest.frames.
MAX_FUTURE_US = 300_000_000
MAX_PERIODS_PER_TICK = 100_000
CLOCK_STEP_US = 60_000_000
#: Source time of "never updated" (as in frames.py, a value far in the past).
_NEVER = -(2**63) // 2
_NAN = math.nan


@dataclass(frozen=True)
class TagUpdates:
    """Tag updates for one line, in arrival order (parallel lists).

    Attributes
    ----------
    sensor : list of int
        Column index of the sensor each update is for.
    value : list of float
        The reading; NaN for a bad reading or a source that went down.
    source_us : list of int
        Source timestamp, microseconds since the Unix epoch (UTC); ``-1``
        when the source gave none (the receive time is used).
    received_us : list of int
        Gateway clock when the update arrived.
    """

    sensor: list[int] = field(default_factory=list)
    value: list[float] = field(default_factory=list)
    source_us: list[int] = field(default_factory=list)
    received_us: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.sensor)


@dataclass
class LineFrameState:
    """What a line's frame assembly carries from one tick to the next.

    The fields of :class:`lineguard.ingest.frames.LineFrameState`, as lists;
    ``pending`` holds ``(sensor, value, source_us)`` of updates stamped in
    periods not closed yet, in arrival order.
    """

    period_us: int
    staleness_us: list[int]
    lateness_us: int
    on_update: bool = False
    next_start_us: int | None = None
    held_value: list[float] = field(default_factory=list)
    held_us: list[int] = field(default_factory=list)
    pending: list[tuple[int, float, int]] = field(default_factory=list)
    clock_offset_us: int | None = None
    newest_source_us: int | None = None
    counters: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(
            ("frames", "gap_frames", "null_values", "late", "clock_skew"), 0
        )
    )


@dataclass(frozen=True)
class FrameBatch:
    """Frames closed in one tick: frame times and one row of values per frame."""

    time_us: list[int]
    values: list[list[float]]

    def __len__(self) -> int:
        return len(self.time_us)


def new_line_state(
    period_s: float, staleness_s: list[float], lateness_s: float, on_update: bool = False
) -> LineFrameState:
    """State of a line that has seen nothing yet.

    Parameters
    ----------
    period_s : float
        Frame period in seconds (the line's model was trained at this rate).
    staleness_s : list of float
        Per sensor, in column order.
    lateness_s : float
        Wait this long (source clock) past a period's end before sending it.
    on_update : bool
        Send only periods in which at least one sensor reported.
    """
    if period_s <= 0:
        raise ValueError(f"expected a frame period > 0 s; got {period_s}")
    d = len(staleness_s)
    return LineFrameState(
        period_us=round(period_s * 1e6),
        # round() to even, as numpy's np.round in the vectorized builder.
        staleness_us=[round(s * 1e6) for s in staleness_s],
        lateness_us=round(lateness_s * 1e6),
        on_update=on_update,
        held_value=[_NAN] * d,
        held_us=[_NEVER] * d,
    )


def _hold_latest(
    held_value: list[float], held_us: list[int], updates: list[tuple[int, float, int]]
) -> None:
    """Move held values to newer updates of closed periods (in place, on copies)."""
    for s, v, ts in updates:
        if ts >= held_us[s]:
            held_value[s] = v
            held_us[s] = ts


def assemble_frames(
    state: LineFrameState, updates: TagUpdates, now_us: int
) -> tuple[LineFrameState, FrameBatch]:
    """Close the periods that are due and return their frames.

    Parameters
    ----------
    state : LineFrameState
        The line's state after the previous tick (not modified).
    updates : TagUpdates
        Updates that arrived since the previous tick.
    now_us : int
        Gateway clock (UTC microseconds).

    Returns
    -------
    state : LineFrameState
        The new state.
    frames : FrameBatch
        Closed periods with at least one non-null reading, oldest first;
        frame time = period start.
    """
    d = len(state.held_value)
    p = state.period_us
    counters = dict(state.counters)
    offset = state.clock_offset_us
    newest = state.newest_source_us
    next_start = state.next_start_us
    held_value = list(state.held_value)
    held_us = list(state.held_us)
    pending = list(state.pending)

    if updates.sensor:
        src, rec = updates.source_us, updates.received_us
        # Source time, with the receive time where the source gave none or
        # where it is implausibly far ahead (clock skew rule). Whole-list
        # passes (comprehensions, max, min) keep the per-update cost low.
        times = [r if t < 0 or t - r > MAX_FUTURE_US else t for t, r in zip(src, rec, strict=True)]
        counters["clock_skew"] += sum(
            1 for t, r in zip(src, rec, strict=True) if t - r > MAX_FUTURE_US and t >= 0
        )
        newest = max(times) if newest is None else max(newest, max(times))
        # The least-delayed update estimates the source clock best.
        batch_offset = max(map(operator.sub, times, rec))
        if offset is None or batch_offset > offset or batch_offset < offset - CLOCK_STEP_US:
            offset = batch_offset
        first = min(times)
        if next_start is None:
            next_start = first - first % p
        if first >= next_start:
            pending.extend(zip(updates.sensor, updates.value, times, strict=True))
        else:
            late = []
            for u in zip(updates.sensor, updates.value, times, strict=True):
                (late if u[2] < next_start else pending).append(u)
            # Updates for periods already closed still move the held value on.
            counters["late"] += len(late)
            _hold_latest(held_value, held_us, late)

    new_state = LineFrameState(
        period_us=p,
        staleness_us=state.staleness_us,
        lateness_us=state.lateness_us,
        on_update=state.on_update,
        next_start_us=next_start,
        held_value=held_value,
        held_us=held_us,
        pending=pending,
        clock_offset_us=offset,
        newest_source_us=newest,
        counters=counters,
    )
    empty = FrameBatch([], [])
    if next_start is None or offset is None:
        return new_state, empty
    n_close = (now_us + offset - state.lateness_us - next_start) // p
    if n_close <= 0:
        return new_state, empty
    if n_close > MAX_PERIODS_PER_TICK:
        # The source clock leapt (or the gateway slept): periods beyond the
        # bound are gaps; their updates only move the held values on.
        skip = n_close - MAX_PERIODS_PER_TICK
        skip_end = next_start + skip * p
        _hold_latest(held_value, held_us, [u for u in pending if u[2] < skip_end])
        pending = [u for u in pending if u[2] >= skip_end]
        counters["gap_frames"] += skip
        next_start, n_close = skip_end, MAX_PERIODS_PER_TICK
    close_end = next_start + n_close * p

    # Latest update per (period, sensor), key period * d + sensor: the newest
    # source time, and of equal times the last to arrive.
    keep: list[tuple[int, float, int]] = []
    latest: dict[int, tuple[int, float, int]] = {}
    for u in pending:
        t = u[2]
        if t >= close_end:
            keep.append(u)
            continue
        key = (t - next_start) // p * d + u[0]
        seen = latest.get(key)
        if seen is None or t >= seen[2]:
            latest[key] = u
    new_state.pending = keep
    by_period: dict[int, list[tuple[int, float, int]]] = {}
    for key, u in latest.items():
        by_period.setdefault(key // d, []).append(u)

    # Hold forward period by period; a held reading older than the sensor's
    # staleness bound at the period's end reads null.
    staleness = state.staleness_us
    frame_times: list[int] = []
    rows: list[list[float]] = []
    gaps = nulls = 0
    on_update = state.on_update
    for k in range(n_close):
        reported = by_period.get(k)
        if reported:
            for s, v, t in reported:
                held_value[s] = v
                held_us[s] = t
        end = next_start + (k + 1) * p
        row = [
            v if end - h <= bound else _NAN
            for v, h, bound in zip(held_value, held_us, staleness, strict=True)
        ]
        n_null = sum(1 for x in row if x != x)  # NaN is the one float unequal to itself
        if n_null == d:
            gaps += 1
            continue
        if on_update and not reported:
            continue
        frame_times.append(end - p)
        rows.append(row)
        nulls += n_null
    new_state.held_value = held_value
    new_state.held_us = held_us
    new_state.next_start_us = close_end
    counters["gap_frames"] += gaps
    counters["frames"] += len(rows)
    counters["null_values"] += nulls
    return new_state, FrameBatch(frame_times, rows)
