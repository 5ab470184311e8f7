"""Frames from live tags: sample-and-hold on the source's own clock (pure).

A live source delivers one tag at a time, whenever it changed, stamped by the
source (a PLC's ``SourceTimestamp``, a Sparkplug metric's ``timestamp``). A
line's model wants frames: one row per period with a value for every sensor.
:func:`assemble_frames` turns the first into the second.

- **Event time, not arrival time.** A frame covers the period
  ``[t, t + period)`` of the *source* clock and takes, for every sensor, its
  latest update stamped before ``t + period``, when that update is at most the
  sensor's staleness bound old at the end of the period; otherwise (stale, bad
  quality, the source is down) the reading is ``NaN`` (``null`` on the wire).
  Binning by source time makes the frames independent of network jitter and
  of how the source batches its notifications: a run played through a live
  source gives the frames a CSV replay of the same run gives.
- **When a frame is complete.** The gateway cannot know that no more updates
  for a period are on their way. Each line keeps an estimate of its source
  clock (the newest source timestamp plus the gateway time elapsed since it
  arrived), and a period is closed once that clock is ``lateness`` past its
  end. An update that arrives for a closed period still moves the held value
  forward, and is counted as ``late``.
- **Nothing invented.** A period in which every sensor of the line is null is
  not sent: it is counted as a gap (``gap_frames``), and the worker sees
  missing data. Only the line's first period starts the grid; there is no
  back-filling before it.
- **Clock skew.** A source timestamp more than :data:`MAX_FUTURE_S` ahead of
  the gateway clock would be refused by the worker (the same bound as the
  worker's ``admit`` stage), so it is replaced by the gateway's receive time
  and counted (``clock_skew``).

Everything here is a pure function of the state passed in and out. This is
the vectorized reference: the live gateway runs the same rules on plain
lists (:mod:`lineguard.ingest.live_frames`, so that its process does not
load numpy), and the tests hold the two to the same frames bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "MAX_FUTURE_S",
    "FrameBatch",
    "LineFrameState",
    "TagUpdates",
    "assemble_frames",
    "new_line_state",
]

#: A source timestamp further ahead of the gateway clock than this is not
#: believed; the worker refuses such frames (``detectors.admission``).
MAX_FUTURE_S = 300.0
#: Most periods closed in one tick (bounds memory after a long sleep).
MAX_PERIODS_PER_TICK = 100_000
#: A source clock that moves back by more than this was stepped (NTP, DST bug).
CLOCK_STEP_US = 60_000_000


@dataclass(frozen=True)
class TagUpdates:
    """Tag updates for one line, in arrival order.

    Attributes
    ----------
    sensor : ndarray of int64, shape (n,)
        Column index of the sensor each update is for.
    value : ndarray of float64, shape (n,)
        The reading; NaN for a bad-quality reading or a source that went down
        (it replaces the held value, so the sensor reads null from then on).
    source_us : ndarray of int64, shape (n,)
        Source timestamp, microseconds since the Unix epoch (UTC); ``-1`` when
        the source gave none (the receive time is used).
    received_us : ndarray of int64, shape (n,)
        Gateway clock when the update arrived.
    """

    sensor: np.ndarray
    value: np.ndarray
    source_us: np.ndarray
    received_us: np.ndarray

    @classmethod
    def empty(cls) -> TagUpdates:
        """No updates."""
        return cls(
            np.empty(0, np.int64),
            np.empty(0, np.float64),
            np.empty(0, np.int64),
            np.empty(0, np.int64),
        )

    @classmethod
    def from_lists(
        cls, sensor: list[int], value: list[float], source_us: list[int], received_us: list[int]
    ) -> TagUpdates:
        """Build from parallel lists (what a source collects between ticks)."""
        return cls(
            np.asarray(sensor, dtype=np.int64),
            np.asarray(value, dtype=np.float64),
            np.asarray(source_us, dtype=np.int64),
            np.asarray(received_us, dtype=np.int64),
        )

    def __len__(self) -> int:
        return int(self.sensor.shape[0])


@dataclass
class LineFrameState:
    """What a line's frame assembly carries from one tick to the next.

    Attributes
    ----------
    period_us : int
        Frame period.
    staleness_us : ndarray of int64, shape (d,)
        Per sensor: how old its latest update may be at the end of a period.
    lateness_us : int
        How long past a period's end (source clock) to wait before closing it.
    next_start_us : int or None
        Start of the next period to close; None until the first update.
    held_value, held_us : ndarray, shape (d,)
        Each sensor's latest update (value, source time) in a closed period.
    pending : TagUpdates
        Updates stamped in periods not closed yet.
    clock_offset_us : int or None
        Newest source timestamp minus its receive time: source clock =
        gateway clock + offset.
    counters : dict
        ``frames``, ``gap_frames``, ``null_values``, ``late``, ``clock_skew``.
    """

    period_us: int
    staleness_us: np.ndarray
    lateness_us: int
    on_update: bool = False
    next_start_us: int | None = None
    held_value: np.ndarray = field(default_factory=lambda: np.empty(0))
    held_us: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    pending: TagUpdates = field(default_factory=TagUpdates.empty)
    clock_offset_us: int | None = None
    newest_source_us: int | None = None
    counters: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(
            ("frames", "gap_frames", "null_values", "late", "clock_skew"), 0
        )
    )


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
        Wait this long (source clock) past a period's end before sending it;
        at least the source's publishing interval, so that a period's updates
        have arrived.
    on_update : bool
        Send only periods in which at least one sensor reported (the others
        held within their bound); by default every period is sent while any
        reading is fresh.
    """
    if period_s <= 0:
        raise ValueError(f"expected a frame period > 0 s; got {period_s}")
    d = len(staleness_s)
    return LineFrameState(
        period_us=round(period_s * 1e6),
        staleness_us=np.round(np.asarray(staleness_s, dtype=np.float64) * 1e6).astype(np.int64),
        lateness_us=round(lateness_s * 1e6),
        on_update=on_update,
        held_value=np.full(d, np.nan),
        held_us=np.full(d, np.iinfo(np.int64).min // 2, dtype=np.int64),
    )


@dataclass(frozen=True)
class FrameBatch:
    """Frames closed in one tick: what goes into one telemetry record."""

    time_us: np.ndarray
    values: np.ndarray

    def __len__(self) -> int:
        return int(self.time_us.shape[0])


def _merge(a: TagUpdates, b: TagUpdates) -> TagUpdates:
    if len(a) == 0:
        return b
    if len(b) == 0:
        return a
    return TagUpdates(
        np.concatenate([a.sensor, b.sensor]),
        np.concatenate([a.value, b.value]),
        np.concatenate([a.source_us, b.source_us]),
        np.concatenate([a.received_us, b.received_us]),
    )


def _take(u: TagUpdates, mask: np.ndarray) -> TagUpdates:
    return TagUpdates(u.sensor[mask], u.value[mask], u.source_us[mask], u.received_us[mask])


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
    d = state.held_value.shape[0]
    counters = dict(state.counters)
    # Source time, with the receive time where the source gave none or
    # where it is implausibly far ahead (clock skew rule).
    t = updates.source_us.copy()
    missing = t < 0
    t[missing] = updates.received_us[missing]
    skewed = t - updates.received_us > int(MAX_FUTURE_S * 1e6)
    if skewed.any():
        counters["clock_skew"] += int(skewed.sum())
        t[skewed] = updates.received_us[skewed]
    updates = TagUpdates(updates.sensor, updates.value, t, updates.received_us)

    offset = state.clock_offset_us
    newest = state.newest_source_us
    if len(updates):
        newest = int(t.max()) if newest is None else max(newest, int(t.max()))
        # The least-delayed update estimates the source clock best (network
        # and publishing delays only ever make an update look older). A
        # source clock stepped back by more than CLOCK_STEP_S resets it.
        batch_offset = int((t - updates.received_us).max())
        if offset is None or batch_offset > offset or batch_offset < offset - CLOCK_STEP_US:
            offset = batch_offset
    next_start = state.next_start_us
    if next_start is None and len(updates):
        first = int(t.min())
        next_start = first - first % state.period_us
    held_value = state.held_value.copy()
    held_us = state.held_us.copy()

    # Updates for periods already closed: they still move the held value on.
    if next_start is not None and len(updates):
        late = t < next_start
        if late.any():
            counters["late"] += int(late.sum())
            _hold_latest(held_value, held_us, _take(updates, late))
            updates = _take(updates, ~late)
    pending = _merge(state.pending, updates)

    new_state = LineFrameState(
        period_us=state.period_us,
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
    empty = FrameBatch(np.empty(0, np.int64), np.empty((0, d)))
    if next_start is None or offset is None:
        return new_state, empty
    source_now = now_us + offset
    # Periods whose end + lateness has passed on the source clock.
    n_close = (source_now - state.lateness_us - next_start) // state.period_us
    if n_close <= 0:
        return new_state, empty
    n_close = int(n_close)
    p = state.period_us
    if n_close > MAX_PERIODS_PER_TICK:
        # The source clock leapt (or the gateway slept): periods beyond the
        # bound are gaps; their updates only move the held values on.
        skip = n_close - MAX_PERIODS_PER_TICK
        skip_end = next_start + skip * p
        early = pending.source_us < skip_end
        _hold_latest(new_state.held_value, new_state.held_us, _take(pending, early))
        pending = _take(pending, ~early)
        counters["gap_frames"] += skip
        next_start, n_close = skip_end, MAX_PERIODS_PER_TICK
    close_end = next_start + n_close * p
    in_closed = pending.source_us < close_end
    closing = _take(pending, in_closed)
    new_state.pending = _take(pending, ~in_closed)

    # Latest update per (period, sensor), then hold forward period by period.
    values = np.full((n_close, d), np.nan)
    stamps = np.full((n_close, d), np.iinfo(np.int64).min // 2, dtype=np.int64)
    if len(closing):
        k = (closing.source_us - next_start) // p
        order = np.lexsort((closing.source_us, k * d + closing.sensor))
        key = (k * d + closing.sensor)[order]
        last = np.r_[key[1:] != key[:-1], True]  # the newest of each key
        sel = order[last]
        values[k[sel], closing.sensor[sel]] = closing.value[sel]
        stamps[k[sel], closing.sensor[sel]] = closing.source_us[sel]
    have = stamps > np.iinfo(np.int64).min // 2
    # Forward-fill: index of the last period (<= k) with an update, per sensor.
    idx = np.where(have, np.arange(n_close)[:, None], -1)
    np.maximum.accumulate(idx, axis=0, out=idx)
    cols = np.arange(d)[None, :]
    filled_v = np.where(idx >= 0, values[np.maximum(idx, 0), cols], held_value[None, :])
    filled_t = np.where(idx >= 0, stamps[np.maximum(idx, 0), cols], held_us[None, :])
    ends = next_start + (np.arange(n_close, dtype=np.int64) + 1) * p
    stale = (ends[:, None] - filled_t) > state.staleness_us[None, :]
    frame_values = np.where(stale, np.nan, filled_v)
    new_state.held_value = filled_v[-1].copy()
    new_state.held_us = filled_t[-1].copy()
    new_state.next_start_us = close_end

    live = ~np.isnan(frame_values).all(axis=1)
    counters["gap_frames"] += int((~live).sum())
    if state.on_update:
        # Only periods in which some sensor reported: a recorded run played
        # through a live source gives exactly its rows back.
        live &= have.any(axis=1)
    counters["frames"] += int(live.sum())
    counters["null_values"] += int(np.isnan(frame_values[live]).sum())
    times = (ends - p)[live]
    return new_state, FrameBatch(times, frame_values[live])


def _hold_latest(held_value: np.ndarray, held_us: np.ndarray, updates: TagUpdates) -> None:
    """Move held values to newer late updates (in place, on copies)."""
    for s, v, ts in zip(
        updates.sensor.tolist(), updates.value.tolist(), updates.source_us.tolist(), strict=True
    ):
        if ts >= held_us[s]:
            held_value[s] = v
            held_us[s] = ts
