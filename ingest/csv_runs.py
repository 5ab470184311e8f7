"""Recorded runs in the SKAB CSV layout.

SKAB (Skoltech Anomaly Benchmark) files are ``;``-separated with a
``datetime`` column first, then any number of sensor columns, then optional
``anomaly`` and ``changepoint`` labels (0/1). The same layout is what the
gateway replays as live telemetry, what ``lineguard train`` learns from and
what evaluation reads, so any plant export written this way plugs in.

SKAB's timestamps carry no zone. They are read as UTC unless told otherwise,
because LineGuard stores every time as timezone-aware UTC.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import datetime, timezone, tzinfo
from pathlib import Path

import numpy as np

from lineguard.errors import DataError

__all__ = ["LABEL_COLUMNS", "RecordedRun", "RunFormatError", "read_run"]

LABEL_COLUMNS = ("anomaly", "changepoint")
TIME_COLUMN = "datetime"


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
    """

    path: Path
    sensors: tuple[str, ...]
    time_us: np.ndarray
    values: np.ndarray
    anomaly: np.ndarray | None = None
    changepoint: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.time_us.shape[0])

    @property
    def sampling_interval_s(self) -> float:
        """Median spacing between frames, in seconds."""
        if len(self) < 2:
            return 1.0
        return float(np.median(np.diff(self.time_us))) / 1e6


def _parse_time(text: str, tz: tzinfo) -> int:
    stamp = datetime.fromisoformat(text.strip())
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=tz)
    return round(stamp.timestamp() * 1_000_000)


def _parse_float(text: str) -> float:
    text = text.strip()
    return float(text) if text else float("nan")


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
        When the header has no ``datetime`` column first, no sensor column,
        or a cell cannot be parsed; the message names the file and line.
    """
    path = Path(path)
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle, delimiter=";")
        try:
            header = [h.strip() for h in next(reader)]
        except StopIteration:
            raise RunFormatError(f"{path}: expected a header line; the file is empty") from None
        if not header or header[0] != TIME_COLUMN:
            raise RunFormatError(
                f"{path}: expected '{TIME_COLUMN}' as the first column of a ';'-separated "
                f"header; got {header[:3]}"
            )
        label_idx = {name: i for i, name in enumerate(header) if name in LABEL_COLUMNS}
        sensor_idx = [
            i for i, name in enumerate(header) if i > 0 and name not in LABEL_COLUMNS and name
        ]
        if not sensor_idx:
            raise RunFormatError(
                f"{path}: expected at least one sensor column; got header {header}"
            )
        times: list[int] = []
        rows: list[list[float]] = []
        labels: dict[str, list[float]] = {name: [] for name in label_idx}
        for lineno, cells in enumerate(reader, start=2):
            if not cells or all(not c.strip() for c in cells):
                continue
            if len(cells) != len(header):
                raise RunFormatError(
                    f"{path}:{lineno}: expected {len(header)} cells; got {len(cells)}"
                )
            try:
                times.append(_parse_time(cells[0], naive_tz))
                rows.append([_parse_float(cells[i]) for i in sensor_idx])
                for name, i in label_idx.items():
                    labels[name].append(_parse_float(cells[i]))
            except ValueError as exc:
                raise RunFormatError(f"{path}:{lineno}: cannot parse row: {exc}") from exc
    sensors = tuple(header[i] for i in sensor_idx)
    values = np.asarray(rows, dtype=np.float64).reshape(len(rows), len(sensors))
    as_label = {
        name: np.nan_to_num(np.asarray(vals, dtype=np.float64)).astype(np.int8)
        for name, vals in labels.items()
    }
    return RecordedRun(
        path=path,
        sensors=sensors,
        time_us=np.asarray(times, dtype=np.int64),
        values=values,
        anomaly=as_label.get("anomaly"),
        changepoint=as_label.get("changepoint"),
    )
