"""What every live source shares: the tag sink, fault counting, outages.

A source (OPC UA, Sparkplug B, MQTT JSON) runs in its own thread and hands
each tag update to a :class:`TagSink`, which routes it to its line's column
and checks it: a value that is not a finite number (bad quality, a string, a
bool, NaN, infinity) becomes a null reading of that sensor, counted under
its fault kind and logged once per tag with what was expected and what
arrived. The other sensors of the line keep flowing. The live loop takes each
line's updates once per tick (:meth:`TagSink.take`).

When a source loses its server or broker it calls :meth:`TagSink.source_down`:
every sensor it feeds reads null from the newest source time it delivered, so
no held value outlives the outage; the outage and its length are counted.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from lineguard.ingest.live_frames import TagUpdates

__all__ = ["FAULT_KINDS", "SensorRoute", "TagSink", "now_us"]

log = logging.getLogger(__name__)

#: Counted outcomes of bad input and faults (see docs/gateway.md).
FAULT_KINDS = (
    "bad_quality",
    "wrong_type",
    "not_finite",
    "unknown_tag",
    "malformed_payload",
    "seq_gap",
    "duplicate_birth",
    "unknown_alias",
    "rebirth_requests",
    "outages",
    "reconnects",
)


def now_us() -> int:
    """Gateway clock, UTC microseconds since the epoch."""
    return time.time_ns() // 1000


@dataclass(frozen=True)
class SensorRoute:
    """Where a source tag goes: the line and the sensor's column."""

    line: str
    column: int
    sensor: str


class TagSink:
    """Thread-safe collector of tag updates, per line, with fault counters.

    Parameters
    ----------
    lines : dict
        Line id -> number of sensors.
    routes : dict
        Per source name: tag key -> :class:`SensorRoute`.
    """

    def __init__(self, lines: dict[str, int], routes: dict[str, dict[Any, SensorRoute]]) -> None:
        self.lines = dict(lines)
        self.routes = routes
        self._lock = threading.Lock()
        self._buf: dict[str, tuple[list[int], list[float], list[int], list[int]]] = {
            line: ([], [], [], []) for line in lines
        }
        self.faults: dict[str, int] = dict.fromkeys(FAULT_KINDS, 0)
        self.updates = 0
        self._logged: set[tuple[str, str]] = set()
        self._newest: dict[str, int] = defaultdict(lambda: -1)
        self._down_since: dict[str, float] = {}
        self.outage_seconds: dict[str, float] = defaultdict(float)

    # -- counting ------------------------------------------------------------
    def fault(self, kind: str, key: str, message: str, count: int = 1) -> None:
        """Count a fault; log it the first time it happens for ``key``."""
        with self._lock:
            self.faults[kind] = self.faults.get(kind, 0) + count
            first = (kind, key) not in self._logged
            self._logged.add((kind, key))
        if first:
            log.warning("%s: %s (counted as %r; logged once per tag)", key, message, kind)

    # -- updates -------------------------------------------------------------
    def push(self, source: str, tag: Any, value: Any, source_us: int, good: bool = True) -> None:
        """One update of one tag (see :meth:`push_many`)."""
        self.push_many(source, [(tag, value, source_us, good)])

    def push_many(self, source: str, items: list[tuple[Any, Any, int, bool]]) -> None:
        """Updates of this source's tags: ``(tag, value, source_us, good)``.

        ``source_us`` is ``-1`` when the source gave no timestamp. Tags that
        feed no sensor are ignored (a source publishes more than a line uses).
        """
        routes = self.routes.get(source, {})
        received = now_us()
        rejected: list[tuple[str, Any, str]] = []
        with self._lock:
            newest = self._newest[source]
            for tag, value, source_us, good in items:
                route = routes.get(tag)
                if route is None:
                    continue
                if not good:
                    rejected.append(("bad_quality", tag, f"a good-quality reading; got {value!r}"))
                    value = math.nan
                elif type(value) is not float and (
                    isinstance(value, bool) or not isinstance(value, int | float)
                ):
                    rejected.append(
                        ("wrong_type", tag, f"a number; got {type(value).__name__} {value!r}")
                    )
                    value = math.nan
                else:
                    value = float(value)
                    if value - value != 0.0:  # NaN or an infinity
                        rejected.append(("not_finite", tag, f"a finite number; got {value!r}"))
                        value = math.nan
                buf = self._buf[route.line]
                buf[0].append(route.column)
                buf[1].append(value)
                buf[2].append(source_us)
                buf[3].append(received)
                if source_us > newest:
                    newest = source_us
            self._newest[source] = newest
            self.updates += len(items)
        for kind, tag, message in rejected:
            route = routes[tag]
            self.fault(kind, f"{source}:{tag} ({route.line}/{route.sensor})", f"expected {message}")

    def take(self, line: str) -> TagUpdates:
        """The line's updates since the last call."""
        with self._lock:
            buf = self._buf[line]
            self._buf[line] = ([], [], [], [])
        return TagUpdates(*buf)

    # -- outages -------------------------------------------------------------
    def source_down(self, source: str, reason: str) -> None:
        """The source lost its server or broker: its sensors read null now."""
        with self._lock:
            if source in self._down_since:
                return
            self._down_since[source] = time.monotonic()
            self.faults["outages"] += 1
            newest = self._newest[source]
            received = now_us()
            stamp = newest + 1
            # Nothing delivered yet: no held values to end, and a marker
            # would only start the line's frame grid with gaps.
            for route in () if newest < 0 else self.routes.get(source, {}).values():
                buf = self._buf[route.line]
                buf[0].append(route.column)
                buf[1].append(math.nan)
                buf[2].append(stamp)
                buf[3].append(received)
        log.warning(
            "source %s down (%s): its sensors read null; no frames are invented", source, reason
        )

    def source_up(self, source: str) -> None:
        """The source is connected again (logs how long the gap was)."""
        with self._lock:
            since = self._down_since.pop(source, None)
            if since is None:
                return
            gap = time.monotonic() - since
            self.outage_seconds[source] += gap
            self.faults["reconnects"] += 1
        log.warning("source %s reconnected after a %.1f s gap", source, gap)

    def is_down(self, source: str) -> bool:
        """Whether the source is in an outage."""
        with self._lock:
            return source in self._down_since

    def stats(self) -> dict[str, Any]:
        """Counters for logs, the run summary and tests."""
        with self._lock:
            return {
                "updates": self.updates,
                **self.faults,
                "outage_seconds": {k: round(v, 3) for k, v in self.outage_seconds.items()},
                "down": sorted(self._down_since),
            }
