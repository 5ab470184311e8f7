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


class _Future:
    """A kafka-python send future: done when the fake broker acknowledged it."""

    def __init__(self, done: bool) -> None:
        self.is_done = done
        self.exception = None

    def failed(self) -> bool:
        return False

    def get(self, timeout: float | None = None) -> None:
        return None


class _Producer:
    """Records sends; a wedged one never completes a future (kafka-python 3.0 seen)."""

    def __init__(self, wedged: bool) -> None:
        self.wedged = wedged
        self.sent: list[bytes] = []
        self.closed = False

    def send(self, topic: str, key: bytes, value: bytes) -> _Future:
        self.sent.append(value)
        return _Future(done=not self.wedged)

    def close(self, timeout: float | None = None) -> None:
        self.closed = True


def test_a_wedged_kafka_client_is_replaced_and_its_records_resent(tmp_path, monkeypatch) -> None:
    from lineguard.ingest import gateway
    from lineguard.ingest.buffer import DiskBuffer
    from lineguard.ingest.contract import TelemetryBatch, decode, encode
    from lineguard.ingest.gateway import StoreAndForward

    clock = [1000.0]
    monkeypatch.setattr(gateway.time, "monotonic", lambda: clock[0])
    wedged, fresh = _Producer(wedged=True), _Producer(wedged=False)
    forward = StoreAndForward(
        wedged,
        "telemetry",
        DiskBuffer(tmp_path / "buf"),
        stuck_after_s=60.0,
        retry_first_s=0.5,
        producer_factory=lambda: fresh,
    )
    for seq in range(3):
        t = np.array([1_600_000_000_000_000 + seq * 1_000_000])
        batch = TelemetryBatch("site-1", "line-a", "gw-a", seq, ("a", "b"), t, np.ones((1, 2)))
        forward.send(b"line-a", encode(batch))
    assert len(wedged.sent) == 3 and forward.pending() == 3
    clock[0] += 59.0
    forward.pump()
    assert forward.producer is wedged  # not yet: within the client's own timeouts
    clock[0] += 2.0
    forward.pump()  # detects the wedge, swaps the producer, backs off
    assert forward.producer is fresh and wedged.closed
    assert forward.stats()["producers_replaced"] == 1
    clock[0] += 1.0
    forward.pump()  # resends from the oldest unacknowledged record, as historical
    forward.pump()  # and reaps the acknowledgements
    resent = [decode(v) for v in fresh.sent]
    assert [b.seq for b in resent] == [0, 1, 2]
    assert all(b.historical for b in resent)
    assert forward.pending() == 0


class _DownProducer:
    """A producer whose every send fails at once (metadata unavailable)."""

    def __init__(self) -> None:
        self.attempts = 0

    def send(self, topic: str, key: bytes, value: bytes) -> _Future:
        self.attempts += 1
        raise ConnectionError("broker unreachable")

    def close(self, timeout: float | None = None) -> None:
        pass


def test_resends_during_an_outage_back_off_by_the_house_policy(tmp_path, monkeypatch) -> None:
    from lineguard.ingest import gateway
    from lineguard.ingest.buffer import DiskBuffer
    from lineguard.ingest.contract import TelemetryBatch, encode
    from lineguard.ingest.gateway import StoreAndForward

    clock = [1000.0]
    monkeypatch.setattr(gateway.time, "monotonic", lambda: clock[0])
    producer = _DownProducer()
    forward = StoreAndForward(
        producer, "telemetry", DiskBuffer(tmp_path / "buf"), retry_first_s=0.5, retry_max_s=2.0
    )
    t = np.array([1_600_000_000_000_000])
    forward.send(
        b"line-a", encode(TelemetryBatch("s", "line-a", "gw", 0, ("a",), t, np.ones((1, 1))))
    )
    assert producer.attempts == 1 and not forward.online
    # 0.5 s doubling, capped at 2 s: each resend comes exactly when due, not before.
    for wait in (0.5, 1.0, 2.0, 2.0):
        clock[0] += wait - 0.01
        forward.pump()
        assert producer.attempts == 1, f"resent before its {wait} s backoff was over"
        clock[0] += 0.01
        forward.pump()
        assert producer.attempts == 2, f"not resent once its {wait} s backoff was over"
        producer.attempts = 1
    assert forward.pending() == 1  # nothing dropped
