"""The history protocol: train on normal runs of one folder, score the runs of another."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from lineguard.cli import main
from lineguard.ingest.csv_runs import read_run
from lineguard.models.evaluation import evaluate_history
from lineguard.models.training import concat_runs

MIDAS = Path(__file__).resolve().parents[2] / "examples" / "data" / "midas"
FAULT = "2022-07-13_174133_AF_Done.csv"  # Mixer/Level freezes at row 146


def test_a_frozen_level_of_a_batch_line_is_caught_and_named() -> None:
    result = evaluate_history(MIDAS / "normal", MIDAS / "faults")
    (run,) = result.runs
    assert run.name == FAULT and not result.skipped
    onset = int(np.flatnonzero(run.labels)[0])
    assert onset == 146
    # Two training batches are a thin history: the multivariate score raises
    # short alerts at three phase changes before the fault (13 of 146 rows);
    # bench/midas.py, trained on all 8 normal runs, measures the real FAR.
    assert sum(1 for a in run.alerts if not a.labelled) <= 3
    hits = np.flatnonzero(run.anomaly[onset:])
    assert hits.size and hits[0] < 20  # caught within seconds
    first = next(a for a in run.alerts if a.labelled)
    assert first.sensors[0][0] == "Mixer/Level"


def test_runs_without_labels_count_as_normal_and_none_is_skipped(tmp_path: Path) -> None:
    normal = tmp_path / "normal"
    normal.mkdir()
    for path in (MIDAS / "normal").glob("*.csv"):
        # Drop the label columns: a plant's history has none.
        lines = path.read_text().splitlines()
        normal.joinpath(path.name).write_text(
            "\n".join(";".join(line.split(";")[:-2]) for line in lines) + "\n"
        )
    result = evaluate_history(MIDAS / "normal", normal)
    assert sorted(r.name for r in result.runs) == sorted(p.name for p in normal.glob("*.csv"))
    assert all(not r.labels.any() for r in result.runs)


def test_a_test_run_with_other_sensors_is_scored_as_the_worker_scores_it(tmp_path: Path) -> None:
    """A missing column is an absent reading, as a dead sensor is live; an extra
    one is ignored; a run sharing no sensor is the one kind that is skipped."""
    header, *rows = (MIDAS / "faults" / FAULT).read_text().splitlines()
    names = header.split(";")
    drop = names.index("T1/InFlowTemp")
    folder = tmp_path / "test"
    folder.mkdir()

    def write(name: str, head: list[str], body: list[list[str]]) -> None:
        lines = [";".join(head)] + [";".join(cells) for cells in body]
        folder.joinpath(name).write_text("\n".join(lines) + "\n")

    cells = [r.split(";") for r in rows]
    # The same column left empty: what the worker sees for a missing sensor.
    write("empty.csv", names, [[*c[:drop], "", *c[drop + 1 :]] for c in cells])
    write(
        "other.csv",
        [*names[:drop], *names[drop + 1 : -2], "Spare/Probe", *names[-2:]],
        [[*c[:drop], *c[drop + 1 : -2], "1.5", *c[-2:]] for c in cells],
    )
    write("alien.csv", ["datetime", "x", "y"], [[c[0], "1", "2"] for c in cells])
    result = evaluate_history(MIDAS / "normal", folder)
    assert dict(result.skipped).keys() == {"alien.csv"}
    assert "none of the model's sensors" in dict(result.skipped)["alien.csv"]
    warned = dict(result.warnings)
    assert "missing ['T1/InFlowTemp'] (scored as absent readings)" in warned["other.csv"]
    assert "extra ['Spare/Probe'] (ignored)" in warned["other.csv"]
    assert "empty.csv" not in warned
    by_name = {r.name: r for r in result.runs}
    assert set(by_name) == {"empty.csv", "other.csv"}
    np.testing.assert_array_equal(by_name["other.csv"].score, by_name["empty.csv"].score)
    np.testing.assert_array_equal(by_name["other.csv"].anomaly, by_name["empty.csv"].anomaly)
    assert by_name["other.csv"].anomaly.any()


def test_concat_runs_orders_by_time_and_refuses_other_sensors(tmp_path: Path) -> None:
    a, b = (read_run(p) for p in sorted((MIDAS / "normal").glob("*.csv"), reverse=True))
    both = concat_runs([a, b])
    assert len(both) == len(a) + len(b)
    assert np.all(np.diff(both.time_us) > 0)
    other = read_run(MIDAS / "normal" / "2022-06-01_162234_Done_1.csv")
    other = type(other)(
        other.path, ("x",) * len(other.sensors), other.time_us + 10**13, other.values
    )
    with pytest.raises(ValueError, match="expected the sensors"):
        concat_runs([a, other])


def test_cli_evaluate_train_dir_json(tmp_path: Path) -> None:
    runner = CliRunner()
    out = runner.invoke(
        main,
        [
            "evaluate",
            str(MIDAS / "faults"),
            "--train-dir",
            str(MIDAS / "normal"),
            "--predictions",
            str(tmp_path / "pred"),
            "--json",
        ],
    )
    assert out.exit_code == 0, out.output
    line = json.loads(out.output.strip().splitlines()[-1])
    assert line["runs"] == 1 and line["events_detected"] == 1
    assert (tmp_path / "pred" / FAULT).is_file()
    both = runner.invoke(
        main,
        ["evaluate", str(MIDAS / "faults"), "--predictions", str(tmp_path / "p2")],
    )
    assert both.exit_code == 2 and "--train-rows N" in both.output


def test_cli_train_on_several_runs(tmp_path: Path) -> None:
    files = sorted(str(p) for p in (MIDAS / "normal").glob("*.csv"))
    out = CliRunner().invoke(
        main, ["train", *files, "--line", "mixer", "--registry", str(tmp_path / "reg")]
    )
    assert out.exit_code == 0, out.output
    assert "1119 rows from 2 runs" in out.output


def test_an_unreadable_file_costs_only_itself(tmp_path: Path) -> None:
    """A file that is not a run is skipped with the reader's reason, a garbled
    reading is a missing one, and every other run is scored."""
    normal, test = tmp_path / "normal", tmp_path / "test"
    normal.mkdir()
    test.mkdir()
    for path in (MIDAS / "normal").glob("*.csv"):
        normal.joinpath(path.name).write_text(path.read_text())
    # A training file that is not a run: trained on the others, and said so.
    normal.joinpath("notes.csv").write_text("operator;shift\nAnna;night\n")
    header, *rows = (MIDAS / "faults" / FAULT).read_text().splitlines()
    garbled = rows.copy()
    cells = garbled[10].split(";")
    cells[3] = "#VALUE!"
    garbled[10] = ";".join(cells)
    test.joinpath("garbled.csv").write_text("\n".join([header, *garbled]) + "\n")
    test.joinpath("truncated.csv").write_text("\n".join([header, rows[0], "2022-07-13"]) + "\n")
    result = evaluate_history(normal, test)
    assert [r.name for r in result.runs] == ["garbled.csv"]
    assert [name for name, _ in result.skipped] == ["truncated.csv"]
    why_skipped = result.skipped[0][1]
    assert "cannot be read as a run" in why_skipped
    assert f"truncated.csv:3: expected {len(header.split(';'))} cells; got 1" in why_skipped
    why = dict(result.warnings)
    assert "not a training run" in why["notes.csv"] and "first column" in why["notes.csv"]
    assert "are not numbers (line 12: '#VALUE!'); read as missing" in why["garbled.csv"]
    (run,) = result.runs
    assert len(run.anomaly) == len(rows)


def test_a_sensor_dead_through_the_history_is_left_out_of_the_model(tmp_path: Path) -> None:
    normal = tmp_path / "normal"
    normal.mkdir()
    for path in (MIDAS / "normal").glob("*.csv"):
        header, *rows = path.read_text().splitlines()
        column = header.split(";").index("T1/InFlowTemp")
        blanked = []
        for line in rows:
            cells = line.split(";")
            cells[column] = ""
            blanked.append(";".join(cells))
        normal.joinpath(path.name).write_text("\n".join([header, *blanked]) + "\n")
    result = evaluate_history(normal, MIDAS / "faults")
    assert [r.name for r in result.runs] == [FAULT] and not result.skipped
    why = dict(result.warnings)
    assert why["normal"] == "no reading in any training run for T1/InFlowTemp; trained without them"
    # The test run still has the column: an extra one, as the worker sees it.
    assert "T1/InFlowTemp" in why[FAULT]


def test_a_faulty_training_run_is_named_in_the_warnings(tmp_path: Path) -> None:
    """The history protocol says which training run it left out, by file name."""
    from tests.support.reactor_line import SENSORS, reactor_line

    normal, test = tmp_path / "normal", tmp_path / "test"
    normal.mkdir()
    test.mkdir()

    def write(path: Path, X: np.ndarray, day: int) -> None:
        lines = [";".join(["datetime", *SENSORS])]
        for i, row in enumerate(X):
            at = np.datetime64("2026-11-02T00:00:00") + np.timedelta64(day * 1440 + i, "m")
            lines.append(";".join([str(at).replace("T", " "), *(f"{v:.6g}" for v in row)]))
        path.write_text("\n".join(lines) + "\n")

    for run in range(5):
        # The third run's coolant valve sticks from its 100th minute on.
        fault = "coolant_valve_stuck" if run == 2 else None
        write(normal / f"run{run}.csv", reactor_line(400, 40 + run, fault, 100), run)
    write(test / "later.csv", reactor_line(400, 50), 9)
    result = evaluate_history(normal, test)
    assert [r.name for r in result.runs] == ["later.csv"]
    assert dict(result.warnings)["normal"].startswith(
        "left out of the model: run2.csv (400 rows), far more often above the rest of the"
    )
    # One long export instead, its valve stuck for its last 1,000 minutes:
    # the piece is named by its rows in the file.
    for old in normal.iterdir():
        old.unlink()
    write(normal / "historian.csv", reactor_line(4000, 41, "coolant_valve_stuck", 3000), 0)
    result = evaluate_history(normal, test)
    assert dict(result.warnings)["normal"].startswith(
        "left out of the model: rows 3000-4000 of historian.csv (1000 rows)"
    )
