"""QA feedback: labels on alerts and time ranges, and what training and
evaluation make of them.

Plant QA (or any other system) marks a time range of one line as

* ``real_defect`` -- the line really was producing bad parts: a true alert,
  or a missed one;
* ``false_alarm`` -- the line was fine: alerts in the range were false;
* ``maintenance`` -- planned work (cleaning, tool change, calibration): the
  data is neither normal production nor a defect.

Labels arrive through ``lineguard feedback mark|alert`` or as JSON records on
the feedback topic (``LINEGUARD_TOPIC_FEEDBACK``, default
``lineguard.feedback``), schema ``lineguard.feedback.v1``::

    {"schema": "lineguard.feedback.v1", "line": "valve1-0", "label": "false_alarm",
     "start": "2020-03-09T10:30:00Z", "end": "2020-03-09T10:34:00Z",
     "author": "qa-j.doe", "note": "sensor wiped", "source": "mes"}

``start``/``end`` are ISO 8601 (UTC when no offset is given) or integer
``start_us``/``end_us`` microseconds since the epoch; ``end`` is inclusive.
The scoring worker validates each record, dead-letters invalid ones with
the reason, and writes valid ones to InfluxDB (measurement
``lineguard_feedback``: tags ``line``, ``label``; fields ``end_us``,
``author``, ``note``, ``source``, ``marked_at_us``; time = range start).

Training from history (``lineguard train --from-influx``) drops rows under
``maintenance`` and ``real_defect`` ranges: a line model learns normal
production only. Evaluation and ``lineguard models compare`` count a frame
as a positive when it lies in a ``real_defect`` range, ignore
``maintenance`` frames and treat everything else (including explicit
``false_alarm`` ranges) as normal. When ranges overlap, the most recently
marked label wins.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np
import orjson

from lineguard.contracts import (
    FEEDBACK_MEASUREMENT,
    FEEDBACK_SCHEMA,
    SCORE_MEASUREMENT,
    SHADOW_ROLE,
)
from lineguard.errors import DataError
from lineguard.influx import InfluxV1Client, encode_point, quote_ident

__all__ = [
    "FEEDBACK_MEASUREMENT",
    "FEEDBACK_SCHEMA",
    "LABELS",
    "Feedback",
    "InvalidFeedback",
    "alert_range",
    "frame_labels",
    "parse_feedback",
    "parse_time_us",
    "read_feedback",
]

LABELS = ("real_defect", "false_alarm", "maintenance")
#: Per-frame label codes returned by :func:`frame_labels`.
NONE, REAL_DEFECT, FALSE_ALARM, MAINTENANCE = 0, 1, 2, 3
_CODES = {"real_defect": REAL_DEFECT, "false_alarm": FALSE_ALARM, "maintenance": MAINTENANCE}


class InvalidFeedback(DataError):
    """A feedback record that cannot be stored."""


def _iso(us: int) -> str:
    # Messages show times as people type them, not raw microseconds.
    return datetime.fromtimestamp(us / 1e6, timezone.utc).isoformat()


def parse_time_us(value: Any, what: str = "time") -> int:
    """Microseconds since the epoch from ISO 8601 text (naive = UTC) or an int."""
    if isinstance(value, bool):
        raise InvalidFeedback(f"{what}: expected ISO 8601 text or integer microseconds; got bool")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        text = value.strip().replace("Z", "+00:00")
        try:
            stamp = datetime.fromisoformat(text)
        except ValueError as exc:
            raise InvalidFeedback(f"{what}: expected ISO 8601 time; got {value!r}") from exc
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=timezone.utc)
        return round(stamp.timestamp() * 1_000_000)
    raise InvalidFeedback(
        f"{what}: expected ISO 8601 text or integer microseconds; got {type(value).__name__}"
    )


@dataclass(frozen=True)
class Feedback:
    """One QA label on one line's time range (both ends inclusive)."""

    line: str
    label: str
    start_us: int
    end_us: int
    author: str = ""
    note: str = ""
    source: str = "cli"
    marked_at_us: int = field(default_factory=lambda: time.time_ns() // 1000)

    def __post_init__(self) -> None:
        if self.label not in LABELS:
            raise InvalidFeedback(f"label: expected one of {LABELS}; got {self.label!r}")
        if not self.line or not isinstance(self.line, str):
            raise InvalidFeedback(f"line: expected a line id; got {self.line!r}")
        if self.end_us < self.start_us:
            raise InvalidFeedback(
                f"expected end >= start; got start {_iso(self.start_us)}, end {_iso(self.end_us)}"
            )

    def to_message(self) -> dict[str, Any]:
        """The ``lineguard.feedback.v1`` JSON form."""
        return {
            "schema": FEEDBACK_SCHEMA,
            "line": self.line,
            "label": self.label,
            "start_us": self.start_us,
            "end_us": self.end_us,
            "author": self.author,
            "note": self.note,
            "source": self.source,
        }

    def to_point(self) -> str:
        """One ``lineguard_feedback`` point (line protocol, ns precision)."""
        return encode_point(
            FEEDBACK_MEASUREMENT,
            {"line": self.line, "label": self.label},
            {
                "end_us": int(self.end_us),
                "author": self.author,
                "note": self.note,
                "source": self.source,
                "marked_at_us": int(self.marked_at_us),
            },
            self.start_us * 1000,
        )


def parse_feedback(value: bytes | None) -> Feedback:
    """Decode and check a feedback-topic record.

    Raises
    ------
    InvalidFeedback
        With what was expected and what was found.
    """
    if not value:
        raise InvalidFeedback("expected a JSON feedback record; got an empty value")
    try:
        data = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise InvalidFeedback(f"expected JSON; got {bytes(value[:80])!r}") from exc
    if not isinstance(data, dict):
        raise InvalidFeedback(f"expected a JSON object; got {type(data).__name__}")
    if data.get("schema") != FEEDBACK_SCHEMA:
        raise InvalidFeedback(f"expected schema {FEEDBACK_SCHEMA!r}; got {data.get('schema')!r}")
    start = data.get("start_us", data.get("start"))
    end = data.get("end_us", data.get("end", start))
    if start is None:
        raise InvalidFeedback("expected 'start' (ISO 8601) or 'start_us'; got neither")
    return Feedback(
        line=str(data.get("line") or ""),
        label=str(data.get("label")),
        start_us=parse_time_us(start, "start"),
        end_us=parse_time_us(end, "end"),
        author=str(data.get("author", "")),
        note=str(data.get("note", "")),
        source=str(data.get("source", "kafka")),
    )


def read_feedback(
    client: InfluxV1Client, line: str, start_us: int | None = None, end_us: int | None = None
) -> list[Feedback]:
    """A line's labels whose range overlaps ``[start_us, end_us]``, oldest mark first."""
    where = f'"line" = {_literal(line)}'
    if end_us is not None:
        where += f" AND time <= {int(end_us)}u"
    try:
        rows = client.query(
            f"SELECT * FROM {quote_ident(FEEDBACK_MEASUREMENT)} WHERE {where}", epoch="u"
        )
    except Exception as exc:
        if "database not found" in str(exc):
            return []
        raise
    found = []
    for row in rows:
        end = int(row.get("end_us") or row["time"])
        if start_us is not None and end < start_us:
            continue
        found.append(
            Feedback(
                line=line,
                label=row["label"],
                start_us=int(row["time"]),
                end_us=end,
                author=row.get("author") or "",
                note=row.get("note") or "",
                source=row.get("source") or "",
                marked_at_us=int(row.get("marked_at_us") or 0),
            )
        )
    return sorted(found, key=lambda f: f.marked_at_us)


def frame_labels(time_us: np.ndarray, feedback: Sequence[Feedback]) -> np.ndarray:
    """Per-frame label code (0 none, 1 real defect, 2 false alarm, 3 maintenance).

    ``feedback`` is applied in order, so pass it oldest mark first (as
    :func:`read_feedback` returns it): a later label overrides an earlier one.
    """
    t = np.asarray(time_us, dtype=np.int64)
    codes = np.zeros(t.shape[0], dtype=np.int8)
    for item in feedback:
        lo, hi = np.searchsorted(t, [item.start_us, item.end_us], side="left")
        hi = np.searchsorted(t, item.end_us, side="right")
        codes[lo:hi] = _CODES[item.label]
    return codes


def alert_range(
    client: InfluxV1Client, line: str, at_us: int, search_s: float = 3600.0
) -> tuple[int, int]:
    """The alert (run of debounced alert frames of the active model) containing ``at_us``.

    Raises
    ------
    LookupError
        When the line was not in alert at that time.
    """
    lo, hi = at_us - int(search_s * 1e6), at_us + int(search_s * 1e6)
    rows = client.query(
        f'SELECT "anomaly" FROM {quote_ident(SCORE_MEASUREMENT)} WHERE "line" = '
        f"{_literal(line)} AND \"role\" != '{SHADOW_ROLE}' AND time >= {lo}u AND time <= {hi}u",
        epoch="u",
    )
    if not rows:
        raise LookupError(
            f"expected scored frames of line {line!r} within {search_s:.0f} s of "
            f"{_iso(at_us)}; got none"
        )
    t = np.array([r["time"] for r in rows], dtype=np.int64)
    flag = np.array([bool(r["anomaly"]) for r in rows])
    order = np.argsort(t, kind="stable")
    t, flag = t[order], flag[order]
    i = int(np.clip(np.searchsorted(t, at_us, side="right") - 1, 0, len(t) - 1))
    if t[i] != at_us and i + 1 < len(t) and abs(t[i + 1] - at_us) < abs(t[i] - at_us):
        i += 1
    if not flag[i]:
        raise LookupError(
            f"line {line!r} was not in alert at the nearest scored frame "
            f"({datetime.fromtimestamp(t[i] / 1e6, timezone.utc).isoformat()})"
        )
    a = i
    while a > 0 and flag[a - 1]:
        a -= 1
    b = i
    while b + 1 < len(t) and flag[b + 1]:
        b += 1
    return int(t[a]), int(t[b])


def feedback_records(values: Sequence[bytes | None]) -> tuple[list[str], list[tuple[int, str]]]:
    """Worker side: record values -> (line protocol, [(index, reason)] of invalid ones)."""
    lines, invalid = [], []
    for i, value in enumerate(values):
        try:
            lines.append(parse_feedback(value).to_point())
        except (InvalidFeedback, ValueError) as exc:
            invalid.append((i, str(exc)))
    return lines, invalid


def _literal(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
