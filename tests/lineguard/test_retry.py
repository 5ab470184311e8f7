"""The one retry policy (lineguard.retry): delays, logging, give-up rules.

Nothing here sleeps for real: tenacity takes the sleep function, and the
tests record what it was asked to wait.
"""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest

from lineguard.retry import Backoff, async_retrying, retrying, run_until_stopped

BACKOFF = Backoff(first_s=0.2, max_s=10.0)
# 0.2 s doubling, capped at 10 s: the worker's InfluxDB and broker retries.
EXPECTED_WAITS = [0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 10.0, 10.0, 10.0]


class _Flaky:
    """Fails ``failures`` times with ``error``, then returns "ok"."""

    def __init__(self, failures: int, error: Exception | None = None) -> None:
        self.failures = failures
        self.error = error or ConnectionRefusedError("connection refused")
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return "ok"


def test_waits_double_from_the_first_delay_and_stop_at_the_cap() -> None:
    slept: list[float] = []
    call = _Flaky(failures=9)
    for attempt in retrying("op", BACKOFF, sleep=slept.append):
        with attempt:
            result = call()
    assert result == "ok" and call.calls == 10
    assert slept == pytest.approx(EXPECTED_WAITS)
    assert [BACKOFF.delay(n) for n in range(1, 10)] == pytest.approx(EXPECTED_WAITS)


def test_each_retry_is_logged_with_the_operation_and_the_exception(caplog) -> None:
    call = _Flaky(failures=2)
    with caplog.at_level(logging.WARNING, logger="lineguard.retry"):
        for attempt in retrying("InfluxDB write at http://db:8086", BACKOFF, sleep=lambda s: None):
            with attempt:
                call()
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "InfluxDB write at http://db:8086 failed (ConnectionRefusedError: connection refused); "
        "retry 1 in 0.2 s",
        "InfluxDB write at http://db:8086 failed (ConnectionRefusedError: connection refused); "
        "retry 2 in 0.4 s",
    ]


def test_describe_replaces_the_exception_text_in_the_log(caplog) -> None:
    call = _Flaky(failures=1, error=OSError("http://user:s3cret@db refused"))
    with caplog.at_level(logging.WARNING, logger="lineguard.retry"):
        for attempt in retrying(
            "write", BACKOFF, sleep=lambda s: None, describe=lambda exc: "refused"
        ):
            with attempt:
                call()
    assert "write failed (refused); retry 1 in 0.2 s" in caplog.text
    assert "s3cret" not in caplog.text


def test_an_error_listed_as_final_is_raised_at_once_without_a_retry() -> None:
    slept: list[float] = []
    call = _Flaky(failures=5, error=ValueError("refused data"))
    with pytest.raises(ValueError, match="refused data"):
        for attempt in retrying("op", BACKOFF, give_up_on=(ValueError,), sleep=slept.append):
            with attempt:
                call()
    assert call.calls == 1 and slept == []


def test_an_error_outside_retry_on_is_not_retried() -> None:
    call = _Flaky(failures=5, error=KeyError("k"))
    with pytest.raises(KeyError):
        for attempt in retrying("op", BACKOFF, retry_on=(OSError,), sleep=lambda s: None):
            with attempt:
                call()
    assert call.calls == 1


def test_giving_up_reraises_the_last_real_error_not_a_retry_error() -> None:
    slept: list[float] = []
    call = _Flaky(failures=5)
    with pytest.raises(ConnectionRefusedError, match="connection refused"):
        for attempt in retrying("op", BACKOFF, max_attempts=3, sleep=slept.append):
            with attempt:
                call()
    assert call.calls == 3 and slept == pytest.approx([0.2, 0.4])


class _Runaway(BaseException):
    """Raised by a test's sleep when a policy that should have stopped goes on."""


def test_until_stops_the_retries_and_reraises() -> None:
    stop = threading.Event()
    slept: list[float] = []

    def failing() -> None:
        if len(slept) == 2:
            stop.set()  # stopped during the third attempt
        raise OSError("broker away")

    def sleep(seconds: float) -> None:
        if len(slept) >= 5:
            raise _Runaway("still retrying after the stop was set")
        slept.append(seconds)

    with pytest.raises(OSError, match="broker away"):
        for attempt in retrying("op", BACKOFF, until=stop.is_set, sleep=sleep):
            with attempt:
                failing()
    assert slept == pytest.approx([0.2, 0.4])


def test_on_retry_sees_each_failure_and_its_delay() -> None:
    seen: list[tuple[str, float]] = []
    call = _Flaky(failures=3)
    for attempt in retrying(
        "op", BACKOFF, sleep=lambda s: None, on_retry=lambda e, d: seen.append((str(e), d))
    ):
        with attempt:
            call()
    assert seen == [
        ("connection refused", 0.2),
        ("connection refused", 0.4),
        ("connection refused", 0.8),
    ]


def test_the_async_policy_waits_with_the_given_coroutine_and_returns_the_value() -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    call = _Flaky(failures=3)

    async def run() -> str:
        async for attempt in async_retrying("op", Backoff(0.5, 1.5), sleep=sleep):
            with attempt:
                return call()
        raise AssertionError("the loop ended without a result")

    assert asyncio.run(run()) == "ok"
    assert slept == pytest.approx([0.5, 1.0, 1.5])


def test_the_async_policy_does_not_retry_a_final_error() -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    call = _Flaky(failures=3, error=PermissionError("no"))

    async def run() -> None:
        async for attempt in async_retrying(
            "op", BACKOFF, give_up_on=(PermissionError,), sleep=sleep
        ):
            with attempt:
                call()

    with pytest.raises(PermissionError):
        asyncio.run(run())
    assert call.calls == 1 and slept == []


def test_run_until_stopped_runs_the_body_again_after_a_failure(caplog) -> None:
    stop = threading.Event()
    calls: list[int] = []

    def body() -> None:
        calls.append(1)
        if len(calls) < 3:
            raise OSError("broker restarting")
        stop.set()  # a healthy body returns once stopped

    with caplog.at_level(logging.WARNING, logger="lineguard.retry"):
        run_until_stopped("follower", body, stop, Backoff(0.001, 0.001))
    assert len(calls) == 3
    assert caplog.text.count("follower failed (OSError: broker restarting)") == 2


def test_run_until_stopped_ends_quietly_when_stopped_during_a_failure() -> None:
    stop = threading.Event()
    calls: list[int] = []

    def body() -> None:
        calls.append(1)
        stop.set()
        raise OSError("broker away")

    run_until_stopped("follower", body, stop, Backoff(0.001, 0.001))  # does not raise
    assert calls == [1]


def test_backoff_refuses_a_cap_below_the_first_delay() -> None:
    with pytest.raises(ValueError, match="first_s <= max_s"):
        Backoff(first_s=2.0, max_s=1.0)
    with pytest.raises(ValueError, match="attempt number >= 1"):
        BACKOFF.delay(0)


class _StopDuringWait(threading.Event):
    """A stop event that is set while the policy waits (a shutdown mid-outage)."""

    def wait(self, timeout: float | None = None) -> bool:
        self.set()
        return True


def test_run_until_stopped_does_not_run_the_body_again_once_stopped_during_the_wait() -> None:
    stop = _StopDuringWait()
    calls: list[int] = []

    def body() -> None:
        calls.append(1)
        raise OSError("broker away")

    run_until_stopped("follower", body, stop, Backoff(1.0, 1.0))
    assert calls == [1]  # no new connection after the stop
