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
        ("when;a\n2024-01-01;1\n", "first column"),
        ("datetime;anomaly\n2024-01-01;1\n", "sensor column"),
        ("datetime;a\n2024-01-01;x\n", "none holds one"),
        ("datetime;a\nyesterday;1\n", ":2: expected a time in the first column"),
        ("datetime;a;anomaly\n2024-01-01;1;maybe\n", ":2: expected 0 or 1 in the label"),
        ("datetime;a\n2024-01-01;1;2\n", "expected 2 cells"),
    ],
)
def test_bad_files_say_where_and_what(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        read_run(path)


def test_a_plant_export_is_read_and_what_was_not_taken_as_is_is_said(tmp_path: Path) -> None:
    # Comma-separated, a "timestamp" column, a batch id, 0/1 words, NA cells,
    # one garbled reading and one row out of order.
    path = tmp_path / "export.csv"
    path.write_text(
        "\ufefftimestamp,batch,flow,heater,anomaly\n"
        "2024-01-01T00:00:00Z,B-17,1.5,ON,0\n"
        "2024-01-01T00:00:02Z,B-17,#REF!,off,0\n"
        "2024-01-01T00:00:01Z,B-17,NA,true,1\n"
        "2024-01-01T00:00:03Z,B-17,inf,no,0\n"
    )
    run = read_run(path)
    assert run.sensors == ("flow", "heater")  # the batch id is no sensor
    assert run.time_us.tolist() == [1704067200 * 10**6 + i * 10**6 for i in range(4)]
    np.testing.assert_array_equal(run.values[:, 1], [1.0, 1.0, 0.0, 0.0])
    assert run.values[0, 0] == 1.5 and np.isnan(run.values[1:, 0]).all()
    assert run.anomaly.tolist() == [0, 1, 0, 0]  # labels follow their rows
    text = "\n".join(run.warnings)
    assert "column 'batch' holds no reading" in text
    assert "1 cell(s) of 'flow' are not numbers (line 3: '#REF!')" in text
    assert "rows put in time order" in text
    assert "1 infinite value(s) of 'flow'; read as missing" in text
    assert len(run.warnings) == 4


def test_decimal_commas_tabs_and_epoch_times(tmp_path: Path) -> None:
    semi = tmp_path / "semi.csv"
    semi.write_text("datetime;level\n2024-01-01 00:00:00;1,25\n2024-01-01 00:00:01;-0,5\n")
    assert read_run(semi).values[:, 0].tolist() == [1.25, -0.5]
    tabs = tmp_path / "tabs.csv"
    tabs.write_text("time\tlevel\n1700000000\t1\n1700000000.5\t2\n")
    run = read_run(tabs)
    assert run.time_us.tolist() == [1_700_000_000_000_000, 1_700_000_000_500_000]
    millis = tmp_path / "ms.csv"
    millis.write_text("time;level\n1700000000000;1\n1700000001000;2\n")
    assert read_run(millis).time_us[1] - read_run(millis).time_us[0] == 1_000_000
    assert read_run(semi).warnings == ()
