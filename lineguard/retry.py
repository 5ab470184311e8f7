"""The one retry policy of every I/O that waits for a server to come back.

LineGuard talks to servers that go away for a while and come back: the
Kafka broker (a rolling restart, a cut network path), InfluxDB (not ready
yet at start-up, restarting), an OPC UA server. Whatever is waiting for one
of them retries on the same pattern, built here once on tenacity:

* **Exponential backoff, capped.** The first wait is ``first_s``, each
  further wait doubles, up to ``max_s``: a short outage is bridged within a
  fraction of a second, while a long one costs the server a handful of
  connection attempts a minute instead of a busy loop.
* **Every retry is logged**, naming the operation, what failed (exception
  type and text, passed through ``describe`` so a URL's password never
  reaches a log) and when the next attempt comes. An operator reading the
  log sees that the process is waiting, on what, and why.
* **Errors that cannot heal are not retried.** ``give_up_on`` lists the
  exception types to raise at once (refused data, a bad configuration);
  such a call fails on its first attempt.
* **``reraise``.** When a policy stops (``until`` turned true, or
  ``max_attempts`` were used), the caller gets the last real exception, not
  tenacity's ``RetryError``, so the error chain names what failed.

Most callers retry until the server answers, because giving up would lose
data (the worker never drops a batch while InfluxDB is down; the gateway
keeps its records on disk). A non-blocking sender that schedules its next
attempt itself (:class:`lineguard.ingest.gateway.StoreAndForward`) uses
:meth:`Backoff.delay` for the same delays.

Examples
--------
>>> import logging
>>> backoff = Backoff(first_s=0.2, max_s=10.0)
>>> [backoff.delay(n) for n in range(1, 8)]
[0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 10.0]
>>> for attempt in retrying("example", backoff, sleep=lambda s: None):  # doctest: +SKIP
...     with attempt:
...         do_io()
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    retry_if_not_exception_type,
    stop_after_attempt,
    stop_never,
    wait_exponential,
)
from tenacity.stop import stop_base

__all__ = ["Backoff", "async_retrying", "error_text", "retrying", "run_until_stopped"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff: ``first_s`` before the second attempt, doubling to ``max_s``.

    Parameters
    ----------
    first_s : float
        Wait after the first failure, in seconds (> 0).
    max_s : float
        Longest wait, in seconds (>= ``first_s``).
    """

    first_s: float
    max_s: float

    def __post_init__(self) -> None:
        if not 0 < self.first_s <= self.max_s:
            raise ValueError(
                f"expected 0 < first_s <= max_s; got first_s={self.first_s}, max_s={self.max_s}"
            )

    def wait(self) -> wait_exponential:
        """The tenacity wait strategy: ``first_s * 2 ** (attempt - 1)``, at most ``max_s``."""
        return wait_exponential(multiplier=self.first_s, min=self.first_s, max=self.max_s)

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1 = the first).

        The same numbers the retrying loops sleep, for a caller that
        schedules its next attempt itself instead of sleeping.
        """
        if attempt < 1:
            raise ValueError(f"expected an attempt number >= 1; got {attempt}")
        state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
        state.attempt_number = attempt
        return float(self.wait()(state))


def error_text(exc: BaseException) -> str:
    """``Type: message``: what a retry log line says failed, by default."""
    return f"{type(exc).__name__}: {exc}"


def _settings(
    operation: str | Callable[[], str],
    backoff: Backoff,
    *,
    retry_on: tuple[type[BaseException], ...] = (Exception,),
    give_up_on: tuple[type[BaseException], ...] = (),
    until: Callable[[], bool] | None = None,
    max_attempts: int | None = None,
    describe: Callable[[BaseException], str] = error_text,
    on_retry: Callable[[BaseException, float], None] | None = None,
    logger: logging.Logger | None = None,
    level: int = logging.WARNING,
) -> dict[str, Any]:
    log = logger or _log

    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        delay = state.next_action.sleep if state.next_action is not None else 0.0
        if exc is not None and on_retry is not None:
            on_retry(exc, delay)
        name = operation() if callable(operation) else operation
        log.log(
            level,
            "%s failed (%s); retry %d in %.1f s",
            name,
            describe(exc) if exc is not None else "no exception",
            state.attempt_number,
            delay,
        )

    stop: stop_base = stop_never
    if until is not None:
        stop = _stop_when(until)
    if max_attempts is not None:
        stop = stop | stop_after_attempt(max_attempts)
    retry = retry_if_exception_type(retry_on)
    if give_up_on:
        retry = retry & retry_if_not_exception_type(give_up_on)
    return {
        "wait": backoff.wait(),
        "stop": stop,
        "retry": retry,
        "before_sleep": before_sleep,
        "reraise": True,
    }


class _stop_when(stop_base):
    """Stop retrying once ``until()`` is true (e.g. a stop event is set)."""

    def __init__(self, until: Callable[[], bool]) -> None:
        self.until = until

    def __call__(self, retry_state: RetryCallState) -> bool:
        return bool(self.until())


def retrying(
    operation: str | Callable[[], str],
    backoff: Backoff,
    *,
    sleep: Callable[[float], Any] = time.sleep,
    **options: Any,
) -> Retrying:
    """A blocking retry loop with the house policy (see the module notes).

    Use as ``for attempt in retrying(...): with attempt: ...``; a ``return``
    inside the ``with`` block ends the loop with that value.

    Parameters
    ----------
    operation : str or callable
        What is retried, for the log line ("InfluxDB write at http://...");
        a callable is asked at each retry (for a changing endpoint).
    backoff : Backoff
        The delays.
    sleep : callable
        How to wait (``time.sleep``; ``stop_event.wait`` to wake on a stop;
        a recorder in tests).
    **options
        The policy's keywords, below (an unknown one is a ``TypeError``):
    retry_on : tuple of exception types
        What is retried (default: any ``Exception``; ``BaseException`` such
        as ``KeyboardInterrupt`` never is).
    give_up_on : tuple of exception types
        Raised at once, never retried: errors that the next attempt cannot
        heal.
    until : callable, optional
        Stop retrying (and re-raise the last error) once this returns True,
        e.g. ``stop_event.is_set``. Checked after each failure.
    max_attempts : int, optional
        Stop after this many attempts; None retries until ``until``, or for
        ever.
    describe : callable
        Turns the exception into the log text (default ``Type: message``).
    on_retry : callable, optional
        ``on_retry(exc, delay)`` before each wait, e.g. to count retries.
    logger : logging.Logger, optional
        Where the retry lines go (the caller's module logger).
    level : int
        Their level (WARNING).
    """
    return Retrying(sleep=sleep, **_settings(operation, backoff, **options))


def async_retrying(
    operation: str | Callable[[], str],
    backoff: Backoff,
    *,
    sleep: Callable[[float], Awaitable[Any]] | None = None,
    **options: Any,
) -> AsyncRetrying:
    """The asyncio form of :func:`retrying`: ``async for attempt in ...: with attempt: ...``.

    Waits with ``asyncio.sleep`` unless ``sleep`` is given, so the event
    loop keeps running (and a cancelled task stops waiting at once). The
    other parameters (``options``) are those of :func:`retrying`.
    """
    extra: dict[str, Any] = {} if sleep is None else {"sleep": sleep}
    return AsyncRetrying(**extra, **_settings(operation, backoff, **options))


def run_until_stopped(
    operation: str,
    body: Callable[[], None],
    stop: threading.Event,
    backoff: Backoff,
    *,
    logger: logging.Logger | None = None,
) -> None:
    """Run a background thread's ``body`` until it returns or ``stop`` is set.

    For a consumer thread beside the worker (QA feedback, the models topic):
    ``body`` loops until ``stop`` is set; when it raises (the broker is
    restarting), the failure is logged and ``body`` runs again after the
    backoff, waiting on ``stop`` so that stopping never waits out a delay.
    A failure once ``stop`` is set ends the thread quietly (debug log):
    whatever the body had not committed is read again by the next start.
    """

    def run() -> None:
        if not stop.is_set():
            body()

    try:
        for attempt in retrying(
            operation, backoff, until=stop.is_set, sleep=stop.wait, logger=logger
        ):
            with attempt:
                run()
    except Exception:
        (logger or _log).debug("%s stopped during a failure", operation, exc_info=True)
