"""Frame assembly from tag updates (pure; expectations written out by hand).

Each test runs against both builders: the vectorized reference
(``lineguard.ingest.frames``) and the list-based one the live gateway runs
(``lineguard.ingest.live_frames``); ``test_live_frames.py`` compares the two
on random ticks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from lineguard.ingest import frames as vec
from lineguard.ingest import live_frames

MAX_FUTURE_S = vec.MAX_FUTURE_S
S = 1_000_000  # one second in microseconds
T0 = 1_700_000_000 * S  # a whole second


@dataclass(frozen=True)
class _Frames:
    time_us: np.ndarray
    values: np.ndarray


class _Builder:
    """One builder behind one interface; frames come back as numpy arrays."""

    def __init__(self, module) -> None:
        self.module = module

    def new_line_state(self, *args, **kwargs):
        return self.module.new_line_state(*args, **kwargs)

    def updates(self, rows: list[tuple[int, float, int, int]]):
        cols = zip(*rows, strict=True) if rows else ((), (), (), ())
        sensor, value, source, received = (list(c) for c in cols)
        if self.module is vec:
            return vec.TagUpdates.from_lists(sensor, value, source, received)
        return live_frames.TagUpdates(sensor, value, source, received)

    def empty(self):
        return self.updates([])

    def assemble(self, state, updates, now_us):
        state, frames = self.module.assemble_frames(state, updates, now_us)
        n, d = len(frames.time_us), len(state.held_value)
        values = np.array(frames.values, dtype=np.float64).reshape(n, d)
        return state, _Frames(np.asarray(frames.time_us, dtype=np.int64), values)


@pytest.fixture(params=[vec, live_frames], ids=["numpy", "lists"])
def b(request) -> _Builder:
    return _Builder(request.param)


def test_one_frame_per_period_with_each_sensors_latest_value(b):
    state = b.new_line_state(1.0, [5.0, 5.0], lateness_s=0.5)
    ups = b.updates(
        [
            (0, 1.0, T0, T0),
            (1, 10.0, T0 + S // 4, T0),
            (0, 2.0, T0 + S // 2, T0),  # newer reading of sensor 0 in the same period
            (0, 3.0, T0 + S, T0 + S),
            (1, 20.0, T0 + S, T0 + S),
        ]
    )
    # Source clock = now + (newest source - its receive) = now; close periods
    # whose end + 0.5 s has passed: at T0 + 1.6 s only [T0, T0+1).
    state, frames = b.assemble(state, ups, T0 + S + 6 * S // 10)
    assert frames.time_us.tolist() == [T0]
    assert frames.values.tolist() == [[2.0, 10.0]]
    state, frames = b.assemble(state, b.empty(), T0 + 2 * S + 6 * S // 10)
    assert frames.time_us.tolist() == [T0 + S]
    assert frames.values.tolist() == [[3.0, 20.0]]
    assert state.counters["frames"] == 2


def test_held_value_goes_null_after_its_staleness_bound_then_the_frame_is_a_gap(b):
    state = b.new_line_state(1.0, [2.0, 10.0], lateness_s=0.0)
    ups = b.updates([(0, 1.0, T0, T0), (1, 5.0, T0, T0)])
    state, frames = b.assemble(state, ups, T0 + 4 * S)
    # Period ends T0+1..T0+4: sensor 0 is 1, 2, 3, 4 s old (bound 2 s).
    assert frames.time_us.tolist() == [T0, T0 + S, T0 + 2 * S, T0 + 3 * S]
    v = frames.values
    assert v[:2, 0].tolist() == [1.0, 1.0]
    assert np.isnan(v[2:, 0]).all()
    assert v[:, 1].tolist() == [5.0] * 4
    # Sensor 1 stale too from age 11 s on: no frame is sent, the gap is counted.
    state, frames = b.assemble(state, b.empty(), T0 + 20 * S)
    assert frames.time_us.tolist() == [T0 + k * S for k in range(4, 10)]
    assert state.counters["gap_frames"] == 10
    assert state.counters["frames"] == 10


def test_bad_quality_update_nulls_the_sensor_until_the_next_good_one(b):
    state = b.new_line_state(1.0, [60.0, 60.0], lateness_s=0.0)
    ups = b.updates(
        [
            (0, 1.0, T0, T0),
            (1, 7.0, T0, T0),
            (0, float("nan"), T0 + S, T0 + S),  # bad quality
            (0, 4.0, T0 + 3 * S, T0 + 3 * S),
        ]
    )
    state, frames = b.assemble(state, ups, T0 + 4 * S)
    assert frames.values[:, 1].tolist() == [7.0] * 4
    got = frames.values[:, 0]
    assert got[0] == 1.0 and np.isnan(got[1]) and np.isnan(got[2]) and got[3] == 4.0
    assert state.counters["null_values"] == 2


def test_source_clock_offset_is_followed_not_the_gateway_clock(b):
    # A PLC whose clock is 100 s behind the gateway: frames still close on time.
    lag = 100 * S
    state = b.new_line_state(1.0, [3.0], lateness_s=0.5)
    ups = b.updates([(0, 1.0, T0 - lag, T0), (0, 2.0, T0 - lag + S, T0 + S)])
    state, frames = b.assemble(state, ups, T0 + S + 6 * S // 10)
    assert frames.time_us.tolist() == [T0 - lag]
    assert frames.values.tolist() == [[1.0]]


def test_timestamp_far_ahead_is_replaced_by_receive_time_and_counted(b):
    state = b.new_line_state(1.0, [3.0], lateness_s=0.0)
    ahead = int((MAX_FUTURE_S + 60) * S)
    state, frames = b.assemble(state, b.updates([(0, 1.0, T0 + ahead, T0)]), T0 + S)
    assert state.counters["clock_skew"] == 1
    assert frames.time_us.tolist() == [T0]


def test_missing_source_timestamp_uses_receive_time(b):
    state = b.new_line_state(1.0, [3.0], lateness_s=0.0)
    state, frames = b.assemble(state, b.updates([(0, 9.0, -1, T0 + S // 2)]), T0 + S)
    assert frames.time_us.tolist() == [T0]
    assert frames.values.tolist() == [[9.0]]


def test_late_update_for_a_closed_period_is_counted_and_held_forward(b):
    state = b.new_line_state(1.0, [10.0], lateness_s=0.0)
    state, _ = b.assemble(state, b.updates([(0, 1.0, T0, T0)]), T0 + 2 * S)
    state, frames = b.assemble(state, b.updates([(0, 5.0, T0 + S // 2, T0 + 2 * S)]), T0 + 3 * S)
    assert state.counters["late"] == 1
    assert frames.values.tolist() == [[5.0]]


def test_state_passed_in_is_not_modified(b):
    state = b.new_line_state(1.0, [10.0], lateness_s=0.0)
    state, _ = b.assemble(state, b.updates([(0, 1.0, T0, T0)]), T0 + S // 2)
    before = (
        state.next_start_us,
        state.held_value.copy(),
        len(state.pending),
        dict(state.counters),
    )
    b.assemble(state, b.updates([(0, 2.0, T0 + S, T0 + S)]), T0 + 5 * S)
    after = (state.next_start_us, state.held_value, len(state.pending), state.counters)
    assert before[0] == after[0] and len(before[1]) == len(after[1]) and before[2] == after[2]
    assert np.isnan(after[1]).all() and before[3] == after[3]


def test_recorded_run_played_as_tags_gives_its_rows_back(b):
    # Every sensor stamped with the row time: the frames are the rows.
    rng = np.random.default_rng(3)
    rows = rng.normal(size=(50, 4))
    state = b.new_line_state(1.0, [5.0] * 4, lateness_s=1.0)
    out_t, out_v = [], []
    for i in range(50):
        ups = b.updates([(s, float(rows[i, s]), T0 + i * S, T0 + i * S + 1000) for s in range(4)])
        state, frames = b.assemble(state, ups, T0 + i * S + 2000)
        out_t += frames.time_us.tolist()
        out_v.append(frames.values)
    state, frames = b.assemble(state, b.empty(), T0 + 52 * S)
    out_t += frames.time_us.tolist()
    out_v.append(frames.values)
    assert out_t == [T0 + i * S for i in range(50)]
    np.testing.assert_array_equal(np.vstack(out_v), rows)


def test_on_update_sends_only_periods_in_which_a_sensor_reported(b):
    # A recording with a missing second (T0 + 2 s): every_period holds the
    # values into it, on_update gives the recording's rows back.
    rows = [(0, 1.0, T0, T0), (0, 2.0, T0 + S, T0 + S), (0, 4.0, T0 + 3 * S, T0 + 3 * S)]
    every = b.new_line_state(1.0, [5.0], lateness_s=0.0)
    every, frames = b.assemble(every, b.updates(rows), T0 + 4 * S)
    assert frames.time_us.tolist() == [T0, T0 + S, T0 + 2 * S, T0 + 3 * S]
    assert frames.values[:, 0].tolist() == [1.0, 2.0, 2.0, 4.0]
    only = b.new_line_state(1.0, [5.0], lateness_s=0.0, on_update=True)
    only, frames = b.assemble(only, b.updates(rows), T0 + 4 * S)
    assert frames.time_us.tolist() == [T0, T0 + S, T0 + 3 * S]
    assert frames.values[:, 0].tolist() == [1.0, 2.0, 4.0]
