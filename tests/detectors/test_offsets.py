"""The worker's own offset bookkeeping: commits only contiguous progress."""

from __future__ import annotations

import pytest

from lineguard.detectors.offsets import Admission, OffsetTracker

TP = ("telemetry", 0)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _admit_all(tracker: OffsetTracker, offsets: list[int]) -> list[Admission]:
    return [tracker.admit(TP, o) for o in offsets]


def test_in_order_records_are_taken_and_committable_from_the_committed_offset() -> None:
    tracker = OffsetTracker()
    tracker.start(TP, 40)
    assert _admit_all(tracker, [40, 41, 42]) == [Admission.TAKE] * 3
    assert tracker.committable() == {TP: 43}
    tracker.committed({TP: 43})
    assert tracker.committable() == {}


def test_stale_records_above_the_committed_offset_never_move_the_commit() -> None:
    # The rebalance race: records fetched before the seek arrive first.
    clock = Clock()
    tracker = OffsetTracker(clock=clock)
    tracker.start(TP, 140)
    assert _admit_all(tracker, [150, 151, 152]) == [Admission.SKIP_GAP] * 3
    assert tracker.committable() == {}
    assert tracker.seeks_due() == {TP: 140}
    assert tracker.seeks_due() == {}  # not again before the re-seek interval
    clock.now += 1.5
    assert tracker.seeks_due() == {TP: 140}  # Faust may have undone the first seek
    # The re-fetch delivers the missing records, then the rest in order.
    assert _admit_all(tracker, list(range(140, 153))) == [Admission.TAKE] * 13
    assert tracker.committable() == {TP: 153}
    assert tracker.gaps() == {}


def test_redelivered_records_are_skipped_not_scored_twice() -> None:
    tracker = OffsetTracker()
    tracker.start(TP, 0)
    _admit_all(tracker, [0, 1, 2, 3])
    assert _admit_all(tracker, [2, 3, 4]) == [
        Admission.SKIP_SEEN,
        Admission.SKIP_SEEN,
        Admission.TAKE,
    ]
    assert tracker.committable() == {TP: 5}


def test_a_gap_that_persists_after_re_seeking_is_accepted_as_real() -> None:
    # Offsets held by transaction markers never arrive: after the accept
    # delay the lowest record above the gap continues the run.
    clock = Clock()
    tracker = OffsetTracker(clock=clock, gap_accept_after_s=10.0)
    tracker.start(TP, 7)
    assert tracker.admit(TP, 9) is Admission.SKIP_GAP
    clock.now = 5.0
    assert tracker.admit(TP, 9) is Admission.SKIP_GAP
    clock.now = 10.0
    assert tracker.admit(TP, 10) is Admission.SKIP_GAP  # not the lowest seen above
    assert tracker.admit(TP, 9) is Admission.TAKE
    assert tracker.admit(TP, 10) is Admission.TAKE
    assert tracker.committable() == {TP: 11}


def test_forgotten_partitions_commit_nothing_and_must_be_restarted() -> None:
    tracker = OffsetTracker()
    tracker.start(TP, 3)
    tracker.admit(TP, 3)
    tracker.forget([TP])
    assert tracker.committable() == {}
    assert not tracker.knows(TP)
    with pytest.raises(KeyError):
        tracker.admit(TP, 4)
    with pytest.raises(ValueError, match="committed offset >= 0"):
        tracker.start(TP, -1)


def test_uncommitted_counts_records_past_the_commit() -> None:
    tracker = OffsetTracker()
    tracker.start(TP, 10)
    tracker.start(("telemetry", 1), 0)
    assert tracker.uncommitted_from({TP: 25, ("telemetry", 1): 0}) == 15
