"""``lineguard train`` / ``models ...`` on real files and a real registry:
missing sensors are refused or marked, no-ops say so and change nothing,
``models list`` never abbreviates a name and has ``--json``, and time
ranges are reported as typed."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from lineguard.cli import main
from lineguard.influx import InfluxV1Client, encode_point
from lineguard.models.registry import Registry
from lineguard.settings import get_settings

SAMPLE = Path(__file__).parents[2] / "examples" / "data" / "skab" / "valve1" / "1.csv"
LONG_LINE = "press-7-north-hall-extruder"


def invoke(args: list[str], env: dict[str, str] | None = None) -> Result:
    get_settings.cache_clear()
    try:
        return CliRunner().invoke(main, args, env=env or {})
    finally:
        get_settings.cache_clear()


def without(column: str, path: Path) -> Path:
    """SAMPLE with one sensor column removed (a sensor unmapped at the gateway)."""
    with SAMPLE.open(newline="") as f:
        rows = list(csv.reader(f, delimiter=";"))
    i = rows[0].index(column)
    with path.open("w", newline="") as f:
        csv.writer(f, delimiter=";").writerows(r[:i] + r[i + 1 :] for r in rows)
    return path


def train(registry: Path, line: str, file: Path, *extra: str) -> Result:
    return invoke(
        ["train", "--line", line, "--rows", "400", "--registry", str(registry), str(file), *extra]
    )


@pytest.fixture
def registry(tmp_path: Path) -> Path:
    path = tmp_path / "registry"
    result = train(path, "press-7", SAMPLE)
    assert result.exit_code == 0, result.output
    return path


def test_training_refuses_a_file_without_an_active_sensor(registry: Path, tmp_path: Path) -> None:
    nopressure = without("Pressure", tmp_path / "nopressure.csv")
    result = train(registry, "press-7", nopressure)
    assert result.exit_code == 1, result.output
    assert result.stderr.strip().splitlines() == [
        "Error: nopressure.csv: expected every sensor of line press-7's active model v0001; "
        "missing Pressure (no column or no reading). If the line's sensors really changed, "
        "train again with --sensors-change"
    ]
    assert Registry(registry).versions("press-7") == ["v0001"]  # nothing stored


def test_the_noise_check_is_turned_on_per_line_at_training(registry: Path) -> None:
    result = train(registry, "press-7", SAMPLE, "--noise-window", "20")
    assert result.exit_code == 0, result.output
    assert "noise check on (20 rows)" in result.output
    reg = Registry(registry)
    assert reg.manifest("press-7", "v0001")["calibration"]["noise_window"] is None
    assert reg.manifest("press-7", "v0002")["calibration"]["noise_window"] == 20
    assert reg.load("press-7", "v0002").pipeline.checks_.noise_window == 20
    refused = train(registry, "press-7", SAMPLE, "--noise-window", "1")
    assert refused.exit_code == 2
    assert "--noise-window" in refused.output
    assert reg.versions("press-7") == ["v0001", "v0002"]


def _reactor_csvs(
    tmp_path: Path, n_runs: int, rows: int, fault: tuple[int, str] | None = None
) -> list[str]:
    """Runs of the reactor station as CSV files, a day apart from 2026-11-02;
    ``fault`` = (run, kind) puts a fault in one of them from its row 100."""
    from datetime import datetime, timedelta, timezone

    from tests.support.reactor_line import SENSORS, reactor_line

    files = []
    start = datetime(2026, 11, 2, tzinfo=timezone.utc)
    for run in range(n_runs):
        kind = fault[1] if fault is not None and fault[0] == run else None
        X = reactor_line(rows, 40 + run, kind, 100)
        path = tmp_path / f"run{run}.csv"
        with path.open("w", newline="") as f:
            out = csv.writer(f, delimiter=";")
            out.writerow(["datetime", *SENSORS])
            for i, row in enumerate(X):
                at = start + timedelta(days=run, minutes=i)
                out.writerow([at.strftime("%Y-%m-%d %H:%M:%S"), *(f"{v:.6g}" for v in row)])
        files.append(str(path))
    return files


def test_a_history_of_several_runs_is_calibrated_out_of_fold(tmp_path: Path) -> None:
    files = _reactor_csvs(tmp_path, 3, 300)
    result = invoke(["train", "--line", "reactor-1", "--registry", str(tmp_path / "reg"), *files])
    assert result.exit_code == 0, result.output
    assert "900 rows from 3 runs" in result.output
    assert "threshold calibrated out of fold: 3 folds of whole runs" in result.output
    manifest = Registry(tmp_path / "reg").manifest("reactor-1", "v0001")
    assert manifest["calibration"]["calibration"] == "out_of_fold"
    assert (
        "threshold calibrated out of fold" not in train(tmp_path / "reg2", "press-7", SAMPLE).output
    )  # one run: the holdout


def test_a_training_run_holding_a_fault_is_left_out_and_named(tmp_path: Path) -> None:
    # The third of five runs: its coolant valve sticks from its 100th minute on.
    files = _reactor_csvs(tmp_path, 5, 400, fault=(2, "coolant_valve_stuck"))
    result = invoke(["train", "--line", "reactor-1", "--registry", str(tmp_path / "reg"), *files])
    assert result.exit_code == 0, result.output
    assert (
        "left out of the model: 400 rows (2026-11-04T00:00:00 .. 2026-11-04T06:39:00 UTC)"
        in result.output
    )
    manifest = Registry(tmp_path / "reg").manifest("reactor-1", "v0001")
    assert manifest["training"]["set_aside"] == [
        {"start": "2026-11-04T00:00:00+00:00", "end": "2026-11-04T06:39:00+00:00", "rows": 400}
    ]
    assert manifest["calibration"]["model_rows"] == 1600


def test_sensors_change_trains_and_records_it(registry: Path, tmp_path: Path) -> None:
    nopressure = without("Pressure", tmp_path / "nopressure.csv")
    result = train(registry, "press-7", nopressure, "--sensors-change")
    assert result.exit_code == 0, result.output
    assert "sensor set changed from v0001: removed Pressure, added none" in result.output
    manifest = Registry(registry).manifest("press-7", "v0002")
    assert manifest["training"]["sensor_change"] == {
        "from": "v0001",
        "removed": ["Pressure"],
        "added": [],
    }
    assert "Pressure" not in manifest["sensors"]
    # The active model, evaluated on the same data, is marked as imputing it.
    assert manifest["evaluation"]["active"]["imputed_sensors"] == "Pressure"
    assert manifest["evaluation"]["candidate"]["imputed_sensors"] is None
    assert "warning: v0001 imputed Pressure on every frame" in result.stderr


def test_evaluate_refuses_missing_sensors_unless_allowed(registry: Path, tmp_path: Path) -> None:
    nopressure = without("Pressure", tmp_path / "nopressure.csv")
    args = ["models", "evaluate", "press-7", "v0001", "--file", str(nopressure)]
    refused = invoke([*args, "--registry", str(registry)])
    assert refused.exit_code == 1
    assert refused.stderr.startswith(
        "Error: nopressure.csv: expected every sensor of press-7 v0001; missing Pressure"
    )
    allowed = invoke([*args, "--registry", str(registry), "--allow-missing-sensors"])
    assert allowed.exit_code == 0, allowed.output
    assert "imputed_sensors" in allowed.stdout and "Pressure" in allowed.stdout
    assert "warning: v0001 imputed Pressure on every frame" in allowed.stderr


def test_promoting_the_active_version_is_a_no_op(registry: Path) -> None:
    history = (registry / "press-7" / "HISTORY.jsonl").read_text()
    result = invoke(["models", "promote", "press-7", "v0001", "--registry", str(registry)])
    assert result.exit_code == 0
    assert result.output == "press-7: v0001 is already the active version; nothing changed\n"
    assert (registry / "press-7" / "HISTORY.jsonl").read_text() == history


def test_stopping_a_shadow_that_is_not_running_is_a_no_op(registry: Path) -> None:
    history = (registry / "press-7" / "HISTORY.jsonl").read_text()
    result = invoke(["models", "shadow", "press-7", "--stop", "--registry", str(registry)])
    assert result.exit_code == 0
    assert result.output == "press-7: no shadow is running; nothing changed\n"
    assert (registry / "press-7" / "HISTORY.jsonl").read_text() == history


@pytest.mark.parametrize("columns", ["80", "40"])
def test_models_list_never_abbreviates_names(registry: Path, columns: str) -> None:
    assert train(registry, LONG_LINE, SAMPLE).exit_code == 0
    result = invoke(["models", "list", "--registry", str(registry)], {"COLUMNS": columns})
    assert result.exit_code == 0
    assert "…" not in result.output
    assert LONG_LINE in result.output and "v0001" in result.output
    assert all(len(line) <= int(columns) for line in result.output.splitlines()[1:-1])


def test_models_list_json(registry: Path) -> None:
    result = invoke(["models", "list", "--json", "--registry", str(registry)])
    assert result.exit_code == 0
    (row,) = json.loads(result.output)
    assert (row["line"], row["version"], row["role"], row["rows"]) == (
        "press-7",
        "v0001",
        "active",
        400,
    )
    assert "Pressure" in row["sensors"]


def test_a_reversed_time_range_is_reported_as_typed(registry: Path) -> None:
    result = invoke(
        [
            "models",
            "compare",
            "press-7",
            "--a",
            "v0001",
            "--b",
            "v0001",
            "--start",
            "2026-03-09T11:00",
            "--end",
            "2026-03-09T10:00",
            "--registry",
            str(registry),
        ]
    )
    assert result.exit_code == 2
    assert (
        "expected a time after --start 2026-03-09T11:00; got --end 2026-03-09T10:00"
        in result.stderr
    )


@pytest.mark.integration
def test_feedback_alert_with_no_frame_near_echoes_the_time(local_stack) -> None:
    with InfluxV1Client(local_stack.influx_settings("ux_no_scores")) as client:
        client.create_database()  # exists, but holds no scores of the line
    env = {**local_stack.env(), "LINEGUARD_INFLUX_DATABASE": "ux_no_scores"}
    result = invoke(
        ["feedback", "alert", "no-such-line", "--label", "false_alarm", "--at", "2026-03-09T10:30"],
        env,
    )
    assert result.exit_code == 1, result.output
    assert "within 3600 s of 2026-03-09T10:30:00+00:00" in result.stderr


@pytest.mark.integration
def test_training_from_influx_refuses_history_without_an_active_sensor(
    local_stack, registry: Path
) -> None:
    import uuid

    import numpy as np

    from lineguard.ingest.csv_runs import read_run
    from lineguard.models.history import TELEMETRY_MEASUREMENT

    run = read_run(SAMPLE)
    keep = [i for i, s in enumerate(run.sensors) if s != "Pressure"]
    database = f"ux_{uuid.uuid4().hex[:8]}"
    with InfluxV1Client(local_stack.influx_settings(database)) as client:
        client.create_database()
        client.write(
            [
                encode_point(
                    TELEMETRY_MEASUREMENT,
                    {"line": "press-7"},
                    {run.sensors[i]: float(run.values[r, i]) for i in keep},
                    int(run.time_us[r]) * 1000,
                )
                for r in range(400)
            ]
        )
    env = {**local_stack.env(), "LINEGUARD_INFLUX_DATABASE": database}
    start, end = (np.datetime_as_string(np.datetime64(int(run.time_us[i]), "us")) for i in (0, 399))
    args = ["train", "--line", "press-7", "--from-influx", "--start", start, "--end", end]
    result = invoke([*args, "--registry", str(registry)], env)
    assert result.exit_code == 1, result.output
    (line,) = result.stderr.strip().splitlines()
    assert "expected values of every sensor of the active model" in line
    assert "Pressure have none" in line and "--sensors-change" in line
    assert Registry(registry).versions("press-7") == ["v0001"]
    changed = invoke([*args, "--sensors-change", "--registry", str(registry)], env)
    assert changed.exit_code == 0, changed.output
    manifest = Registry(registry).manifest("press-7", "v0002")
    assert manifest["training"]["sensor_change"]["removed"] == ["Pressure"]
