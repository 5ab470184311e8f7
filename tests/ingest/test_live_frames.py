"""The gateway's list-based frame builder against the vectorized one, bit for bit.

``lineguard.ingest.frames`` (numpy) is pinned by hand-written expectations in
``test_frames.py``; ``lineguard.ingest.live_frames`` (plain lists, what the
live gateway runs so that it never loads numpy) must give the same frames,
counters and carried state for the same updates, tick after tick.
"""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest

from lineguard.ingest import frames as vec
from lineguard.ingest import live_frames as lists

S = 1_000_000
T0 = 1_700_000_000 * S


def _bits(values) -> list[int]:
    """Each float's IEEE bit pattern, so that NaN == NaN and -0.0 != 0.0."""
    flat = [float(v) for row in values for v in row]
    return list(struct.unpack(f"<{len(flat)}q", struct.pack(f"<{len(flat)}d", *flat)))


def _random_ticks(
    rng: np.random.Generator, d: int, n_ticks: int, leap: bool = False, grid_us: int = 1
):
    """Ticks of (updates, now_us) with every case the rules treat specially.

    Missing source times, source clocks far ahead (skew), updates late for
    closed periods, equal stamps (the last to arrive wins), NaN readings,
    quiet stretches longer than the staleness bounds and, with ``leap``, a
    source clock that jumps more than ``MAX_PERIODS_PER_TICK`` periods. With
    ``grid_us`` the source times fall on that grid, so that a reading's age
    at a period's end can equal its staleness bound exactly.
    """
    now = T0 + int(rng.integers(0, S))
    ticks = []
    for i in range(n_ticks):
        now += int(rng.integers(S // 10, 3 * S)) if rng.random() > 0.1 else 12 * S
        if leap and i == n_ticks // 2:
            now += (vec.MAX_PERIODS_PER_TICK + 7) * S
        n = int(rng.integers(0, 40)) if rng.random() > 0.15 else 0
        sensor = rng.integers(0, d, n).tolist()
        value = rng.normal(size=n).round(3).tolist()
        value = [math.nan if rng.random() < 0.1 else v for v in value]
        source = ((now - rng.integers(0, 4 * S, n)) // grid_us * grid_us).tolist()
        for j in range(n):
            r = rng.random()
            if r < 0.08:
                source[j] = -1
            elif r < 0.12:
                source[j] = now + int(vec.MAX_FUTURE_S * S) + int(rng.integers(1, S))
            elif r < 0.2 and j:
                source[j] = source[j - 1]  # same stamp as the previous update
        received = [now - int(rng.integers(0, S // 5)) for _ in range(n)]
        ticks.append((sensor, value, source, received, now))
    return ticks


def _compare(d: int, ticks, period_s: float, lateness_s: float, on_update: bool, staleness):
    a = vec.new_line_state(period_s, staleness, lateness_s, on_update=on_update)
    b = lists.new_line_state(period_s, staleness, lateness_s, on_update=on_update)
    assert b.staleness_us == a.staleness_us.tolist()
    sent = 0
    for sensor, value, source, received, now in ticks:
        a, fa = vec.assemble_frames(
            a, vec.TagUpdates.from_lists(sensor, value, source, received), now
        )
        b, fb = lists.assemble_frames(
            b, lists.TagUpdates(list(sensor), list(value), list(source), list(received)), now
        )
        assert fb.time_us == fa.time_us.tolist()
        assert _bits(fb.values) == _bits(fa.values.tolist())
        assert b.counters == a.counters
        assert (b.next_start_us, b.clock_offset_us, b.newest_source_us) == (
            a.next_start_us,
            a.clock_offset_us,
            a.newest_source_us,
        )
        assert _bits([b.held_value]) == _bits([a.held_value.tolist()])
        assert b.held_us == a.held_us.tolist()
        assert [u[0] for u in b.pending] == a.pending.sensor.tolist()
        assert [u[2] for u in b.pending] == a.pending.source_us.tolist()
        assert _bits([[u[1] for u in b.pending]]) == _bits([a.pending.value.tolist()])
        sent += len(fb)
    return sent, a.counters


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("on_update", [False, True])
def test_same_frames_and_state_as_the_vectorized_builder(seed, on_update):
    rng = np.random.default_rng(seed)
    d = int(rng.integers(2, 7))  # two or more: a frame can hold a null
    staleness = rng.choice([0.5, 2.0, 5.0, 7.25], d).tolist()
    period_s = float(rng.choice([0.25, 1.0, 1.5]))
    lateness_s = float(rng.choice([0.0, 0.25, 1.0]))
    sent, counters = _compare(
        d, _random_ticks(rng, d, 60), period_s, lateness_s, on_update, staleness
    )
    # The random ticks reach the special cases (or the comparison proves little).
    assert sent > 0
    assert counters["late"] > 0 and counters["clock_skew"] > 0
    assert counters["gap_frames"] > 0 and counters["null_values"] > 0


@pytest.mark.parametrize("seed", range(4))
def test_same_frames_when_ages_equal_the_staleness_bound(seed):
    # Stamps on a quarter-second grid, bounds of whole periods: a reading
    # exactly as old as its bound at a period's end is still fresh.
    rng = np.random.default_rng(100 + seed)
    ticks = _random_ticks(rng, 3, 80, grid_us=S // 4)
    sent, _ = _compare(3, ticks, 1.0, 0.25, False, [1.0, 2.0, 0.5])
    assert sent > 0


def test_same_frames_after_a_source_clock_leap_beyond_the_tick_bound():
    rng = np.random.default_rng(99)
    sent, counters = _compare(2, _random_ticks(rng, 2, 12, leap=True), 1.0, 0.5, False, [3.0, 3.0])
    assert sent > 0
    assert counters["gap_frames"] > vec.MAX_PERIODS_PER_TICK


def test_the_bounds_are_the_vectorized_builders():
    assert int(vec.MAX_FUTURE_S * 1e6) == lists.MAX_FUTURE_US
    assert lists.MAX_PERIODS_PER_TICK == vec.MAX_PERIODS_PER_TICK
    assert lists.CLOCK_STEP_US == vec.CLOCK_STEP_US


def test_a_period_of_zero_is_refused():
    with pytest.raises(ValueError, match="period > 0"):
        lists.new_line_state(0.0, [1.0], 0.0)
