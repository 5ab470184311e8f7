"""Line-state records: which snapshot is valid at a committed offset, by hand-worked cases."""

from __future__ import annotations

import pytest

from lineguard.stream.state import (
    LineStates,
    StateRecord,
    StateRecordError,
    choose,
    decode_record,
    encode_record,
)


def test_a_record_round_trips_with_and_without_a_previous_snapshot() -> None:
    assert decode_record(encode_record(12, b"new", 7, b"old")) == StateRecord(12, b"new", 7, b"old")
    assert decode_record(encode_record(12, b"new", 7, None)) == StateRecord(12, b"new", -1, None)


@pytest.mark.parametrize(
    "value", [b"", b"LGS1", b"XXXX" + bytes(24), encode_record(1, b"abc", -1, None)[:-1]]
)
def test_a_value_that_is_not_a_state_record_is_refused_with_what_was_expected(value) -> None:
    with pytest.raises(StateRecordError, match="expected"):
        decode_record(value)


def test_the_snapshot_is_chosen_by_the_committed_offset() -> None:
    record = StateRecord(at=20, snapshot=b"after", prev_at=10, previous=b"before")
    # Batch ending at 20 committed (or more since): its snapshot.
    assert choose(record, 20) == (b"after", "committed")
    assert choose(record, 35) == (b"after", "committed")
    # Written but never committed (a kill between the two steps): the one before.
    assert choose(record, 19) == (b"before", "previous")
    assert choose(record, 10) == (b"before", "previous")
    # Not even the previous one is known to be valid.
    assert choose(record, 9) == (None, "ahead")
    # A line's first batch, uncommitted: it starts fresh.
    assert choose(StateRecord(5, b"first", -1, None), 0) == (None, "previous")


def test_the_previous_half_is_the_last_committed_snapshot_not_the_last_written() -> None:
    states = LineStates()
    states.record("a", 0, 10, b"s10")
    states.committed({0: 10})
    states.record("a", 0, 20, b"s20")  # written; its commit fails
    value = decode_record(states.record("a", 0, 30, b"s30"))
    assert (value.prev_at, value.previous) == (10, b"s10")
    # A commit reaching 20 (not 30) confirms s20 only.
    states.committed({0: 20})
    assert decode_record(states.record("a", 0, 40, b"s40")).previous == b"s20"
    # Another partition's commit confirms nothing of this line.
    states.committed({1: 1000})
    assert decode_record(states.record("a", 0, 50, b"s50")).previous == b"s20"


def test_restored_lines_carry_their_snapshot_as_committed_and_forget_drops_them() -> None:
    states = LineStates()
    states.restored("a", 2, 70, b"r")
    states.restored("b", 3, 80, b"q")
    assert decode_record(states.record("a", 2, 90, b"n")).previous == b"r"
    states.forget([2])
    assert decode_record(states.record("a", 2, 95, b"m")).previous is None
    assert decode_record(states.record("b", 3, 99, b"m")).previous == b"q"
    states.forget()
    assert decode_record(states.record("b", 3, 100, b"m")).previous is None
