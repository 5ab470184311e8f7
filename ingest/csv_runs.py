"""Recorded runs in the SKAB CSV layout.

SKAB (Skoltech Anomaly Benchmark) files are ``;``-separated with a
``datetime`` column first, then any number of sensor columns, then optional
``anomaly`` and ``changepoint`` labels (0/1). The same layout is what the
gateway replays as live telemetry, what ``lineguard train`` learns from and
what evaluation reads, so any plant export written this way plugs in.

SKAB's timestamps carry no zone. They are read as UTC unless told otherwise,
because LineGuard stores every time as timezone-aware UTC.

Plant exports are rarely this tidy, and a run is worth keeping even where a
few of its cells are not. So the reader also takes ``,``- or tab-separated
files (the separator is read off the header line), a first column named
``time``, ``timestamp`` or ``date`` as well as ``datetime``, times as
numbers (seconds since the Unix epoch, or milliseconds or microseconds
where the magnitude says so), decimal commas in a ``;``-separated file,
``true``/``false`` (``on``/``off``, ``yes``/``no``) as 1/0 and ``NA``,
``null``, ``None`` or ``-`` as a missing reading. What it still cannot read
loses only itself, and says so in :attr:`RecordedRun.warnings`: a cell that
is not a number becomes a missing reading (file, line and column named); a
column that holds no number at all (a batch id, an operator's name) is not
a sensor and is left out; rows out of time order are put in order. What
makes a run unreadable as a whole -- no header, no time column, a time
that is not a time, a row of the wrong length -- raises
:class:`RunFormatError`, naming the file and line.
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass
from datetime import datetime, timezone, tzinfo
from pathlib import Path

import numpy as np

from lineguard.errors import DataError

__all__ = ["LABEL_COLUMNS", "RecordedRun", "RunFormatError", "read_run"]

LABEL_COLUMNS = ("anomaly", "changepoint")
TIME_COLUMN = "datetime"
#: Other names a first (time) column may have.
TIME_COLUMNS = (TIME_COLUMN, "time", "timestamp", "date")
#: Separators a run may use, in the order they are looked for in the header.
SEPARATORS = (";", "\t", ",")
#: Cells that mean "no reading".
MISSING = frozenset({"", "nan", "na", "n/a", "null", "none", "-"})
#: Words that mean a 0/1 state.
BOOLEANS = {"true": 1.0, "false": 0.0, "on": 1.0, "off": 0.0, "yes": 1.0, "no": 0.0}
#: Bad cells named one by one in the warnings; beyond that, only counted.
_NAMED_CELLS = 5
_DECIMAL_COMMA = re.compile(r"^[+-]?\d*,\d+(?:[eE][+-]?\d+)?$")


class RunFormatError(DataError):
    """A CSV run that is not in the expected layout; the message names the
    file and line, what was expected and what arrived."""


@dataclass(frozen=True)
class RecordedRun:
    """One recorded run of a line.

    Attributes
    ----------
    path : Path
        Source file.
    sensors : tuple of str
        Sensor column names, in file order.
    time_us : ndarray of int64, shape (n,)
        Frame times, microseconds since the Unix epoch (UTC).
    values : ndarray of float64, shape (n, d)
        Sensor values; NaN for empty cells.
    anomaly, changepoint : ndarray of int8, shape (n,), or None
        Labels, when the file has them.
    warnings : tuple of str
        What the reader could not take as it stood and what it did instead
        (cells read as missing, text columns left out, rows put in order).
    """

    path: Path
    sensors: tuple[str, ...]
    time_us: np.ndarray
    values: np.ndarray
    anomaly: np.ndarray | None = None
    changepoint: np.ndarray | None = None
    warnings: tuple[str, ...] = ()

    def __len__(self) -> int:
        return int(self.time_us.shape[0])

    @property
    def sampling_interval_s(self) -> float:
        """Median spacing between frames, in seconds."""
        if len(self) < 2:
            return 1.0
        return float(np.median(np.diff(self.time_us))) / 1e6


def _parse_time(text: str, tz: tzinfo) -> int:
    text = text.strip()
    try:
        number = float(text)
    except ValueError:
        stamp = datetime.fromisoformat(text)
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=tz)
        return round(stamp.timestamp() * 1_000_000)
    if not math.isfinite(number):
        raise ValueError(f"expected a time; got {text!r}")
    # Seconds since the epoch; a magnitude past the year 5000 in seconds is
    # milliseconds, past it in milliseconds microseconds.
    scale = 1_000_000 if abs(number) < 1e11 else 1_000 if abs(number) < 1e14 else 1
    return round(number * scale)


def _parse_float(text: str, decimal_comma: bool = False) -> float:
    """A cell as a reading: a number, a 0/1 word, or NaN for a missing one.

    Raises ValueError for anything else (the caller decides what it costs).
    """
    try:
        return float(text)
    except ValueError:
        pass
    cell = text.strip()
    word = cell.lower()
    if word in MISSING:
        return float("nan")
    if word in BOOLEANS:
        return BOOLEANS[word]
    if decimal_comma and _DECIMAL_COMMA.match(cell):
        return float(cell.replace(",", "."))
    return float(cell)  # raises with the cell in the message


def _separator(line: str) -> str:
    """The separator of a run's header line (``;`` where none is found)."""
    for sep in SEPARATORS:
        if sep in line:
            return sep
    return ";"


def read_run(path: str | Path, *, naive_tz: tzinfo = timezone.utc) -> RecordedRun:
    """Read one run from a SKAB-layout CSV file.

    Parameters
    ----------
    path : str or Path
        The CSV file.
    naive_tz : tzinfo
        Zone of timestamps written without one (SKAB's are); UTC by default.

    Raises
    ------
    RunFormatError
        When the header has no time column first or no sensor column, a
        row has the wrong number of cells, or a time or a label cannot be
        parsed; the message names the file and line. A reading that cannot
        be parsed is not an error: it is missing, and a warning says so
        (module docs).
    """
    path = Path(path)
    with path.open(newline="", encoding="utf-8-sig") as handle:
        first_line = handle.readline()
        handle.seek(0)
        sep = _separator(first_line)
        reader = csv.reader(handle, delimiter=sep)
        try:
            header = [h.strip() for h in next(reader)]
        except StopIteration:
            raise RunFormatError(f"{path}: expected a header line; the file is empty") from None
        if not header or header[0].lower() not in TIME_COLUMNS:
            raise RunFormatError(
                f"{path}: expected '{TIME_COLUMN}' (or {', '.join(TIME_COLUMNS[1:])}) as the "
                f"first column of a ';'-, tab- or ','-separated header; got {header[:3]}"
            )
        label_idx = {name: i for i, name in enumerate(header) if name in LABEL_COLUMNS}
        sensor_idx = [
            i for i, name in enumerate(header) if i > 0 and name not in LABEL_COLUMNS and name
        ]
        if not sensor_idx:
            raise RunFormatError(
                f"{path}: expected at least one sensor column; got header {header}"
            )
        decimal_comma = sep != ","
        times: list[int] = []
        rows: list[list[float]] = []
        labels: dict[str, list[float]] = {name: [] for name in label_idx}
        bad: dict[int, list[tuple[int, str]]] = {}  # column -> (line, cell)
        nan = float("nan")
        for lineno, cells in enumerate(reader, start=2):
            if not cells or all(not c.strip() for c in cells):
                continue
            if len(cells) != len(header):
                raise RunFormatError(
                    f"{path}:{lineno}: expected {len(header)} cells; got {len(cells)}"
                )
            try:
                times.append(_parse_time(cells[0], naive_tz))
            except ValueError as exc:
                raise RunFormatError(
                    f"{path}:{lineno}: expected a time in the first column "
                    f"(ISO 8601 or seconds since the epoch); got {cells[0]!r} ({exc})"
                ) from exc
            row = []
            for i in sensor_idx:
                try:
                    row.append(_parse_float(cells[i], decimal_comma))
                except ValueError:
                    bad.setdefault(i, []).append((lineno, cells[i]))
                    row.append(nan)
            rows.append(row)
            for name, i in label_idx.items():
                try:
                    labels[name].append(_parse_float(cells[i], decimal_comma))
                except ValueError as exc:
                    raise RunFormatError(
                        f"{path}:{lineno}: expected 0 or 1 in the label column '{name}'; "
                        f"got {cells[i]!r}"
                    ) from exc
    warnings: list[str] = []
    values = np.asarray(rows, dtype=np.float64).reshape(len(rows), len(sensor_idx))
    infinite = np.isinf(values)
    if infinite.any():
        # An overflow or a division by zero upstream: no reading.
        for j in np.flatnonzero(infinite.any(axis=0)):
            warnings.append(
                f"{path}: {int(infinite[:, j].sum())} infinite value(s) of "
                f"'{header[sensor_idx[j]]}'; read as missing"
            )
        values[infinite] = np.nan
    keep = np.ones(len(sensor_idx), dtype=bool)
    for j, i in enumerate(sensor_idx):
        cells = bad.get(i)
        if not cells:
            continue
        if not np.isfinite(values[:, j]).any():
            keep[j] = False
            warnings.append(
                f"{path}: column '{header[i]}' holds no reading (e.g. {cells[0][1]!r} on line "
                f"{cells[0][0]}); left out as not a sensor"
            )
            continue
        named = ", ".join(f"line {line}: {cell!r}" for line, cell in cells[:_NAMED_CELLS])
        more = f" and {len(cells) - _NAMED_CELLS} more" if len(cells) > _NAMED_CELLS else ""
        warnings.append(
            f"{path}: {len(cells)} cell(s) of '{header[i]}' are not numbers ({named}{more}); "
            "read as missing"
        )
    if not keep.any():
        raise RunFormatError(f"{path}: expected at least one column of readings; none holds one")
    sensors = tuple(header[i] for i, k in zip(sensor_idx, keep, strict=True) if k)
    values = values[:, keep]
    time_us = np.asarray(times, dtype=np.int64)
    as_label = {
        name: np.nan_to_num(np.asarray(vals, dtype=np.float64)).astype(np.int8)
        for name, vals in labels.items()
    }
    if time_us.size > 1 and (np.diff(time_us) < 0).any():
        order = np.argsort(time_us, kind="stable")
        back = int((np.diff(time_us) < 0).sum())
        warnings.append(
            f"{path}: {back} row(s) earlier than the row before; rows put in time order"
        )
        time_us, values = time_us[order], values[order]
        as_label = {name: v[order] for name, v in as_label.items()}
    return RecordedRun(
        path=path,
        sensors=sensors,
        time_us=time_us,
        values=values,
        anomaly=as_label.get("anomaly"),
        changepoint=as_label.get("changepoint"),
        warnings=tuple(warnings),
    )
