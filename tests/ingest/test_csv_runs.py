"""Reading recorded runs in the SKAB layout."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from lineguard.ingest.csv_runs import read_run

SAMPLES = Path(__file__).resolve().parents[2] / "examples" / "data" / "skab"


def test_reads_a_shipped_skab_run() -> None:
    run = read_run(SAMPLES / "valve1" / "0.csv")
    assert run.sensors[0] == "Accelerometer1RMS" and len(run.sensors) == 8
    assert len(run) == 1147 and run.values.shape == (1147, 8)
    assert run.anomaly is not None and run.anomaly.sum() == 401
    first = datetime(2020, 3, 9, 10, 14, 33, tzinfo=timezone.utc)
    assert run.time_us[0] == int(first.timestamp() * 1_000_000)
    assert run.sampling_interval_s == pytest.approx(1.0)


def test_any_sensor_columns_empty_cells_and_no_labels(tmp_path: Path) -> None:
    path = tmp_path / "run.csv"
    path.write_text(
        "datetime;flow;temp\n2024-01-01 00:00:00;1.5;\n2024-01-01T00:00:00.500+00:00;2;3\n"
    )
    run = read_run(path)
    assert run.sensors == ("flow", "temp") and run.anomaly is None
    assert np.isnan(run.values[0, 1]) and run.values[1, 1] == 3.0
    assert run.time_us[1] - run.time_us[0] == 500_000


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("time;a\n2024-01-01;1\n", "first column"),
        ("datetime;anomaly\n2024-01-01;1\n", "sensor column"),
        ("datetime;a\n2024-01-01;x\n", ":2: cannot parse"),
        ("datetime;a\n2024-01-01;1;2\n", "expected 2 cells"),
    ],
)
def test_bad_files_say_where_and_what(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        read_run(path)
