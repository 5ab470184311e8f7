"""A line's raw telemetry history, read back from InfluxDB for retraining.

The archive worker (``lineguard worker --role archive``) writes every frame
the gateways sent to measurement ``lineguard_telemetry`` (tags ``site``,
``line``; one float field per sensor; time = frame time). This module reads
a time window of one line back through the InfluxQL ``/query`` API, page by
page in time order (``LIMIT`` + ``time >`` the last row seen, so neither the
server's ``max-row-limit`` nor memory on either side bounds the window), and
returns it as a :class:`~lineguard.ingest.csv_runs.RecordedRun`, the same
structure a CSV file gives, so training code does not care where rows came
from. Float values survive the round trip exactly (line protocol carries
the shortest round-tripping repr), so the same rows give the same model.

QA labels (:mod:`lineguard.models.feedback`) are read for the same window:
rows under ``maintenance`` and ``real_defect`` ranges are left out of
training.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from lineguard.contracts import TELEMETRY_MEASUREMENT
from lineguard.errors import MissingSensorsError
from lineguard.influx import InfluxV1Client, quote_ident
from lineguard.ingest.csv_runs import RecordedRun
from lineguard.models.feedback import MAINTENANCE, REAL_DEFECT, frame_labels, read_feedback

__all__ = ["TELEMETRY_MEASUREMENT", "LineHistory", "read_history"]

_TAGS = ("time", "site", "line")


@dataclass(frozen=True)
class LineHistory:
    """A window of one line's raw telemetry, with its QA labels.

    Attributes
    ----------
    run : RecordedRun
        All frames in the window (``anomaly`` = frames under a
        ``real_defect`` label).
    labels : ndarray of int8
        Per-frame label code (see :func:`lineguard.models.feedback.frame_labels`).
    excluded : list of dict
        The QA ranges that training leaves out.
    """

    run: RecordedRun
    labels: np.ndarray
    excluded: list[dict[str, object]]

    @property
    def training_mask(self) -> np.ndarray:
        """Frames training may use: not under maintenance or a confirmed defect."""
        return ~np.isin(self.labels, (MAINTENANCE, REAL_DEFECT))


def _iso(us: int) -> str:
    # Messages show times as typed (ISO 8601), not raw microseconds.
    return datetime.fromtimestamp(us / 1e6, timezone.utc).isoformat()


def read_history(
    client: InfluxV1Client,
    line: str,
    start_us: int,
    end_us: int,
    *,
    sensors: list[str] | None = None,
    page_rows: int = 10_000,
    progress: Callable[[int, int], None] | None = None,
) -> LineHistory:
    """Read ``line``'s frames with ``start_us <= time <= end_us``.

    Parameters
    ----------
    client : InfluxV1Client
        Connected to the database the archive worker writes to.
    line : str
        The production line.
    start_us, end_us : int
        Window, microseconds since the epoch (UTC), both inclusive.
    sensors : list of str, optional
        Column order of the result (e.g. the active model's sensors, so a
        retrained model keeps the line's contract). Sensors missing from
        InfluxDB are an error; extra sensors found there are appended in
        name order. Default: every sensor found, in name order.
    page_rows : int
        Rows per query.
    progress : callable, optional
        ``progress(time_us_reached, rows_so_far)`` after each page.

    Raises
    ------
    LookupError
        When the window holds no telemetry of the line, or a requested
        sensor has no value in it.
    """
    if end_us < start_us:
        raise ValueError(f"expected end >= start; got start {_iso(start_us)}, end {_iso(end_us)}")
    line_lit = "'" + line.replace("\\", "\\\\").replace("'", "\\'") + "'"
    times: list[int] = []
    rows: list[dict[str, object]] = []
    cursor = f"time >= {int(start_us)}u"
    while True:
        page = client.query(
            f'SELECT * FROM {quote_ident(TELEMETRY_MEASUREMENT)} WHERE "line" = {line_lit} '
            f"AND {cursor} AND time <= {int(end_us)}u ORDER BY time ASC LIMIT {int(page_rows)}",
            epoch="u",
        )
        for row in page:
            times.append(int(row["time"]))
            rows.append(row)
        if progress is not None:
            progress(times[-1] if times else end_us, len(times))
        if len(page) < page_rows:
            break
        cursor = f"time > {times[-1]}u"
    if not rows:
        raise LookupError(
            f"expected {TELEMETRY_MEASUREMENT} rows for line {line!r} between {_iso(start_us)} "
            f"and {_iso(end_us)}; got none (is the archive worker running, and the window right?)"
        )
    found = sorted({k for row in rows for k, v in row.items() if k not in _TAGS and v is not None})
    if sensors is None:
        order = found
    else:
        missing = [s for s in sensors if s not in found]
        if missing:
            raise MissingSensorsError(
                f"line {line!r}: expected values of every sensor of the active model between "
                f"{_iso(start_us)} and {_iso(end_us)}; {', '.join(missing)} have none (found "
                f"{', '.join(found)}). If the line's sensors really changed, train with "
                "--sensors-change",
                tuple(missing),
            )
        order = list(sensors) + [s for s in found if s not in sensors]
    values = np.array(
        [[np.nan if row.get(s) is None else float(row[s]) for s in order] for row in rows],  # type: ignore[arg-type]
        dtype=np.float64,
    ).reshape(len(rows), len(order))
    time_us = np.array(times, dtype=np.int64)
    feedback = read_feedback(client, line, start_us, end_us)
    labels = frame_labels(time_us, feedback)
    excluded = [
        {
            "label": f.label,
            "start_us": f.start_us,
            "end_us": f.end_us,
            "author": f.author,
        }
        for f in feedback
        if f.label in ("maintenance", "real_defect")
    ]
    run = RecordedRun(
        path=Path(f"influx:{client.settings.database}/{line}"),
        sensors=tuple(order),
        time_us=time_us,
        values=values,
        anomaly=(labels == REAL_DEFECT).astype(np.int8),
    )
    return LineHistory(run=run, labels=labels, excluded=excluded)
