"""Gateway record planning and sequence numbers (no broker needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lineguard.ingest.gateway import SequenceCounter, plan_records


def test_frames_due_together_share_a_record_and_nothing_waits_longer_than_the_interval() -> None:
    due = np.arange(100) * 0.1  # 10 frames per second
    plan = plan_records(due, max_frames=1000, flush_interval_s=0.5)
    covered = np.concatenate([np.arange(a, b) for a, b, _ in plan])
    np.testing.assert_array_equal(covered, np.arange(100))  # every frame once, in order
    for start, stop, send_at in plan:
        assert send_at == due[stop - 1]
        assert due[stop - 1] - due[start] <= 0.5 + 1e-9
    assert len(plan) == 17  # 6 frames per 0.5 s window


def test_max_frames_caps_records_when_replaying_flat_out() -> None:
    plan = plan_records(np.zeros(1234), max_frames=500, flush_interval_s=0.5)
    assert [b - a for a, b, _ in plan] == [500, 500, 234]


def test_plan_refuses_a_zero_record_size() -> None:
    with pytest.raises(ValueError, match="max_frames"):
        plan_records(np.zeros(3), max_frames=0, flush_interval_s=1)


def test_sequence_numbers_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "gw.seq"
    first = SequenceCounter(path)
    assert [first.take() for _ in range(3)] == [0, 1, 2]
    again = SequenceCounter(path)
    assert again.take() == 3
