"""``lineguard evaluate``: the NAB port, predictions, the worker path, report and CLI.

Only the in-repo SKAB runs (examples/data/skab) are used.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from lineguard.cli import main
from lineguard.contracts import ALERT_REASONS
from lineguard.detectors.scoring import score_batch
from lineguard.ingest.csv_runs import read_run
from lineguard.models.evaluation import (
    Evaluation,
    GatewayPlan,
    alert_events,
    detection_delays,
    evaluate_folder,
    evaluate_run,
    find_runs,
    nab_score,
    predicted_changepoints,
    rolling_windows,
    runs_under,
    write_predictions,
)
from lineguard.models.registry import Registry
from lineguard.models.report import render_report, write_report
from lineguard.models.training import TrainingConfig

DATA = Path(__file__).resolve().parents[2] / "examples" / "data" / "skab"
TRAIN_ROWS = 400


# -- NAB, checked against hand-computed cases of SKAB's evaluating.py --------
def _secs(n: int) -> np.ndarray:
    return np.arange(n, dtype=np.int64) * 1_000_000


def _pred(n: int, *at: int) -> np.ndarray:
    p = np.zeros(n, dtype=np.int64)
    p[list(at)] = 1
    return p


def _nab(out: dict[str, np.ndarray], profile: str = "standard") -> float:
    score, null, perfect = out[profile]
    return 100 * (score - null) / (perfect - null)


T = _secs(10)
TRUE = _pred(10, 2)  # one changepoint at t = 2 s; window 4 s -> [2, 6]


def test_nab_detection_at_the_changepoint() -> None:
    # SKAB slices with pandas labels, inclusive at both ends, so a prediction
    # exactly at the changepoint is also counted in the "before" part (-0.11).
    # Window [2, 6] has 5 rows, slow width int(5/4) = 1, win_fault_slow = rows
    # 2..7, the first hit at position 0 - 5 = -5: 1.11 / (1 + e^-25) - 0.11.
    out = nab_score(T, TRUE, _pred(10, 2), window_s=4)
    expected = -0.11 + 1.11 / (1 + math.exp(-25)) - 0.11
    assert out["standard"][0] == pytest.approx(expected)
    assert out["standard"][1:].tolist() == [-1.0, 1.0]
    assert _nab(out) == pytest.approx(100 * (expected + 1) / 2)


def test_nab_late_detection_in_the_slow_tail_and_fp_part() -> None:
    # A hit at t = 7 s: outside [2, 6] but inside the slow tail (rows 2..7):
    # position 5 - 5 = 0 -> sigmoid 1.11 / 2 - 0.11; win_fp = win_space[-6:]
    # (rows 4..9, as SKAB writes it) holds the same hit: another -0.11.
    out = nab_score(T, TRUE, _pred(10, 7), window_s=4)
    assert out["standard"][0] == pytest.approx(1.11 / 2 - 0.11 - 0.11)
    assert out["low_fp"][0] == pytest.approx(1.22 / 2 - 0.22 - 0.22)


def test_nab_miss_and_false_positive_profiles() -> None:
    out = nab_score(T, TRUE, _pred(10, 0), window_s=4)  # FP before, window missed
    assert out["standard"].tolist() == pytest.approx([-1.11, -1.0, 1.0])
    assert out["low_fp"].tolist() == pytest.approx([-1.22, -1.0, 1.0])
    assert out["low_fn"].tolist() == pytest.approx([-2.11, -2.0, 1.0])
    assert _nab(nab_score(T, TRUE, _pred(10), window_s=4)) == 0.0
    # No labelled changepoint: every prediction costs A_fp, perfect == null.
    none = nab_score(T, _pred(10), _pred(10, 1, 5), window_s=4)
    assert none["standard"].tolist() == pytest.approx([-0.22, 0.0, 0.0])


def test_predicted_changepoints_are_alert_edges() -> None:
    assert predicted_changepoints(np.array([0, 1, 1, 0, 0, 1])).tolist() == [0, 1, 0, 1, 0, 1]
    assert predicted_changepoints(np.array([1, 1, 0])).tolist() == [1, 0, 1]
    assert predicted_changepoints(np.array([], dtype=int)).size == 0


def test_events_delays_and_contributions() -> None:
    t = _secs(12)
    labels = np.array([0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0], dtype=bool)
    alerts = np.array([0, 0, 0, 1, 1, 0, 0, 0, 1, 1, 0, 0], dtype=bool)
    assert detection_delays(t, labels, alerts) == [1.0]
    top = ["", "", "", "a,b,c", "b,a", "", "", "", "c", "c,a", "", ""]
    events = alert_events(t, np.arange(12.0), alerts, top, labels)
    assert [(e.start, e.stop, e.labelled) for e in events] == [(3, 5, True), (8, 10, False)]
    # Rank points: a 3 + 1 = 4, b 2 + 2 = 4, c 1 -> shares 4/9, 4/9, 1/9.
    first = dict(events[0].sensors)
    assert first["a"] == pytest.approx(4 / 9) and first["c"] == pytest.approx(1 / 9)
    assert events[1].sensors[0][0] == "c" and events[1].peak_score == 9.0


def test_an_alert_event_is_named_after_the_reason_most_of_its_frames_had() -> None:
    t = _secs(8)
    labels = np.zeros(8, dtype=bool)
    alerts = np.array([0, 1, 1, 1, 1, 0, 1, 1], dtype=bool)
    top = ["", "P,T", "F,P", "F,T", "T,F", "", "T", "T"]
    # The debounce holds frame 4 in alert without a reason of its own.
    reasons = ["", "score", "freeze", "freeze", "", "", "step", "score"]
    first, second = alert_events(t, np.arange(8.0), alerts, top, labels, reasons)
    assert (first.reason, first.reason_sensor) == ("freeze", "F")
    assert first.reasons == {"score": 1, "freeze": 2}
    # A tie goes to the reason seen first.
    assert (second.reason, second.reason_sensor) == ("step", "T")
    assert first.to_dict()["reason"] == "freeze"


# -- a plain reference of the headline metrics (SKAB's definitions) -------
def _segments(flags) -> list[tuple[int, int]]:
    """[start, stop) of each run of true flags, found one row at a time."""
    out, start = [], None
    for i, flag in enumerate([*list(flags), False]):
        if flag and start is None:
            start = i
        elif not flag and start is not None:
            out.append((start, i))
            start = None
    return out


def _reference_summary(runs: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> dict:
    """Metrics of (time_us, labels, predictions) per run, summed over runs:
    F1 = TP / (TP + (FN + FP) / 2); FAR = FP / (FP + TN) in %; MAR = FN /
    (FN + TP) in %; an event is a labelled segment, detected when one of its
    rows is predicted; a false-alarm event is a predicted segment with no
    labelled row; the delay runs from a detected segment's first row to its
    first predicted row."""
    tp = fp = tn = fn = events = detected = false_alarms = 0
    delays = []
    for time_us, labels, preds in runs:
        y = [bool(v) for v in labels]
        p = [bool(v) for v in preds]
        for a, b in zip(y, p, strict=True):
            tp += a and b
            fp += (not a) and b
            tn += (not a) and (not b)
            fn += a and (not b)
        for a, b in _segments(y):
            events += 1
            hits = [i for i in range(a, b) if p[i]]
            if hits:
                detected += 1
                delays.append((int(time_us[hits[0]]) - int(time_us[a])) / 1e6)
        false_alarms += sum(1 for a, b in _segments(p) if not any(y[a:b]))
    return {
        "f1": round(tp / (tp + (fn + fp) / 2), 4),
        "far": round(100 * fp / (fp + tn), 2),
        "mar": round(100 * fn / (fn + tp), 2),
        "event_recall": round(detected / events, 4),
        "events": events,
        "events_detected": detected,
        "false_alarm_events": false_alarms,
        "median_delay_s": float(np.median(delays)),
        "test_rows": tp + fp + tn + fn,
    }


def _source_test_part(name: str, root: Path = DATA) -> tuple[np.ndarray, np.ndarray]:
    """Frame times and labels of a run's test rows, read from its file."""
    source = read_run(root / name)
    return source.time_us[TRAIN_ROWS:], source.anomaly[TRAIN_ROWS:].astype(bool)


def test_the_reference_metrics_on_a_hand_computed_case() -> None:
    # labels 0 1 1 1 0 0 0 0 | predictions 0 0 1 1 0 1 1 0: TP 2, FN 1, FP 2, TN 3;
    # F1 = 2 / (2 + 1.5); one event, found 1 s late; one false-alarm event.
    t = _secs(8)
    labels = np.array([0, 1, 1, 1, 0, 0, 0, 0], dtype=bool)
    preds = np.array([0, 0, 1, 1, 0, 1, 1, 0], dtype=bool)
    got = _reference_summary([(t, labels, preds)])
    assert got["f1"] == round(2 / 3.5, 4) and got["far"] == 40.0 and got["mar"] == 33.33
    assert (got["events"], got["events_detected"], got["false_alarm_events"]) == (1, 1, 1)
    assert got["median_delay_s"] == 1.0


# -- the worker's path on the in-repo runs ---------------------------------
@pytest.fixture(scope="module")
def evaluation() -> Evaluation:
    return evaluate_folder(DATA, TRAIN_ROWS)


def test_every_labelled_run_is_evaluated(evaluation: Evaluation) -> None:
    names = [r.name for r in evaluation.runs]
    assert names == [str(p.relative_to(DATA)) for p in find_runs(DATA)]
    summary = evaluation.summary()
    json.dumps(summary)  # plain types only
    # The headline metrics are those of the runs' own predictions against the
    # labels read from the files, by the reference above.
    want = _reference_summary([(*_source_test_part(r.name), r.anomaly) for r in evaluation.runs])
    assert summary["runs"] == 5 and want["events"] == 5
    for key, value in want.items():
        assert summary[key] == pytest.approx(value), key


def test_summed_confusion_matches_the_runs(evaluation: Evaluation) -> None:
    tp = fp = 0
    for r in evaluation.runs:
        _, labels = _source_test_part(r.name)
        tp += int(np.sum(labels & r.anomaly))
        fp += int(np.sum(~labels & r.anomaly))
    assert (evaluation.counts.tp, evaluation.counts.fp) == (tp, fp)
    assert evaluation.summary()["f1"] == round(tp / (tp + (evaluation.counts.fn + fp) / 2), 4)


def test_alerts_by_reason_are_split_into_faults_and_false_alarms(evaluation: Evaluation) -> None:
    """By a written-out reference: each alerted stretch of the test part
    counts under the code most of its frames had (first on a tie), as a
    fault when it touches a labelled row of the source file."""
    names = ("", *ALERT_REASONS)
    want = {r: {"alerts": 0, "faults": 0, "false_alarms": 0} for r in ALERT_REASONS}
    for run in evaluation.runs:
        _, labels = _source_test_part(run.name)
        for a, b in _segments(run.anomaly):
            counts: dict[int, int] = {}
            for code in run.reason[a:b].tolist():
                if code:
                    counts[code] = counts.get(code, 0) + 1
            top = max(counts.values())
            code = next(c for c, v in counts.items() if v == top)
            row = want[names[code]]
            row["alerts"] += 1
            row["faults" if labels[a:b].any() else "false_alarms"] += 1
    got = evaluation.by_reason()
    assert got == want
    assert sum(r["false_alarms"] for r in got.values()) == evaluation.counts.false_alarm_events
    assert evaluation.summary()["reasons"] == want
    # The sample runs' alerts come from more than the score alone.
    assert sum(1 for r in got.values() if r["alerts"]) >= 2


def test_predictions_csv_per_run(evaluation: Evaluation, tmp_path: Path) -> None:
    written = write_predictions(evaluation, tmp_path / "pred")
    assert len(written) == 5
    for run, path in zip(evaluation.runs, written, strict=True):
        assert path == tmp_path / "pred" / run.name
        with path.open(newline="") as handle:
            rows = list(csv.reader(handle, delimiter=";"))
        assert rows[0] == ["datetime", "score", "threshold", "anomaly_pred"]
        source = read_run(DATA / run.name)
        assert len(rows) - 1 == len(source) - TRAIN_ROWS
        # Timestamps as in the SKAB file, test part only.
        with (DATA / run.name).open() as handle:
            first_test = handle.readlines()[TRAIN_ROWS + 1].split(";")[0]
        assert rows[1][0] == first_test
        preds = np.array([int(r[3]) for r in rows[1:]])
        assert set(preds.tolist()) <= {0, 1}
        np.testing.assert_array_equal(preds, run.anomaly.astype(int))
        np.testing.assert_allclose([float(r[1]) for r in rows[1:]], run.score, rtol=1e-5)
        alerts = json.loads(path.with_suffix(".alerts.json").read_text())
        assert len(alerts["alerts"]) == len(run.alerts)
        for alert in alerts["alerts"]:
            shares = [s["share"] for s in alert["sensors"]]
            assert shares == sorted(shares, reverse=True)
            assert {s["sensor"] for s in alert["sensors"]} <= set(run.sensors)
    assert json.loads((tmp_path / "pred" / "summary.json").read_text())["runs"] == 5


def test_same_predictions_at_live_speed_and_equal_to_score_batch(tmp_path: Path) -> None:
    """The gateway/worker batching does not change a single prediction, and
    what the processor produced equals the pure scorer over the whole run."""
    run = read_run(DATA / "valve1" / "1.csv")
    config = TrainingConfig()
    results = []
    for i, plan in enumerate(
        (GatewayPlan(speed=1.0), GatewayPlan(speed=60.0), GatewayPlan(speed=1e6, max_frames=37))
    ):
        registry = Registry(tmp_path / f"r{i}")
        results.append(evaluate_run(run, "1.csv", "line-x", registry, TRAIN_ROWS, config, plan))
    for other in results[1:]:
        np.testing.assert_array_equal(other.score, results[0].score)
        np.testing.assert_array_equal(other.anomaly, results[0].anomaly)
        assert other.top_sensors == results[0].top_sensors
        np.testing.assert_array_equal(other.reason, results[0].reason)
    bundle = Registry(tmp_path / "r0").load("line-x")
    k, n = bundle.debounce
    whole, _ = score_batch(bundle.pipeline, run.values, None, bundle.threshold, k, n)
    np.testing.assert_array_equal(whole.score[TRAIN_ROWS:], results[0].score)
    np.testing.assert_array_equal(whole.anomaly[TRAIN_ROWS:], results[0].anomaly)
    np.testing.assert_array_equal(whole.reason[TRAIN_ROWS:], results[0].reason)


def test_no_run_is_skipped_for_its_labels_and_dirty_windows_are_reported(tmp_path: Path) -> None:
    source = (DATA / "valve2" / "1.csv").read_text().splitlines()
    (tmp_path / "ok.csv").write_text("\n".join(source) + "\n")
    # Labelled anomaly inside the training rows: a plant's history is not
    # labelled, so the run is evaluated all the same, with a warning.
    header, *rows = source
    cells = rows[5].split(";")
    cells[-2] = "1.0"
    rows[5] = ";".join(cells)
    (tmp_path / "dirty.csv").write_text("\n".join([header, *rows]) + "\n")
    # No labels at all (like SKAB's anomaly-free run): normal operation.
    unlabelled = [";".join(line.split(";")[:-2]) for line in source]
    (tmp_path / "free.csv").write_text("\n".join(unlabelled) + "\n")
    # Too short to leave a row after the training rows: the only skip.
    (tmp_path / "short.csv").write_text("\n".join(source[: TRAIN_ROWS + 1]) + "\n")
    result = evaluate_folder(tmp_path, TRAIN_ROWS)
    assert [r.name for r in result.runs] == ["dirty.csv", "free.csv", "ok.csv"]
    assert dict(result.skipped) == {"short.csv": "400 rows, fewer than the 401 a window needs"}
    warned = dict(result.warnings)
    assert list(warned) == ["dirty.csv", "free.csv"]
    assert "1 of the 400 training rows are labelled anomalous (first: row 5)" in warned["dirty.csv"]
    assert warned["free.csv"] == "no anomaly labels: counted as normal operation"
    free = next(r for r in result.runs if r.name == "free.csv")
    ok = next(r for r in result.runs if r.name == "ok.csv")
    # Same readings, same model: the unlabelled copy alerts on the same rows,
    # and every one of its alerts is a false alarm.
    np.testing.assert_array_equal(free.anomaly, ok.anomaly)
    assert not free.labels.any() and free.anomaly.any()
    assert free.counts.fp == int(free.anomaly.sum()) and free.counts.tp == 0
    assert free.counts.false_alarm_events == len(free.alerts) >= 1
    # F1 and MAR have no meaning without a labelled fault: the report says so.
    from lineguard.models.report import run_figure

    assert not free.counts.has_faults and ok.counts.has_faults
    title = run_figure(free).axes[0].get_title(loc="left")
    assert "F1 -" in title and "MAR -" in title and f"FAR {free.counts.far:.1f} %" in title
    assert "F1 -" not in run_figure(ok).axes[0].get_title(loc="left")
    page = render_report(Evaluation(runs=[free], skipped=[]))
    # F1 and MAR in the totals and in the run's row, and the median delay.
    assert page.count("<td>-</td>") == 5


def test_a_sensor_dead_in_the_training_rows_costs_only_itself(tmp_path: Path) -> None:
    """A transmitter that came alive after the training window (or never):
    the run is trained and scored without it, and the warning says so; a run
    with no reading at all in its training rows is skipped, not fatal."""
    header, *rows = (DATA / "valve2" / "1.csv").read_text().splitlines()
    names = header.split(";")
    dead = names.index("Pressure")

    def blank(columns: range | list[int], upto: int) -> list[str]:
        out = []
        for i, line in enumerate(rows):
            cells = line.split(";")
            for c in columns if i < upto else ():
                cells[c] = ""
            out.append(";".join(cells))
        return out

    (tmp_path / "late.csv").write_text("\n".join([header, *blank([dead], TRAIN_ROWS)]) + "\n")
    sensors = range(1, len(names) - 2)
    (tmp_path / "empty.csv").write_text("\n".join([header, *blank(sensors, TRAIN_ROWS)]) + "\n")
    (tmp_path / "ok.csv").write_text("\n".join([header, *rows]) + "\n")
    result = evaluate_folder(tmp_path, TRAIN_ROWS)
    assert [r.name for r in result.runs] == ["late.csv", "ok.csv"]
    assert dict(result.skipped) == {"empty.csv": "no reading at all in its 400 training rows"}
    assert dict(result.warnings)["late.csv"] == (
        "no reading in the 400 training rows for Pressure; trained and scored without them"
    )
    late = next(r for r in result.runs if r.name == "late.csv")
    assert len(late.anomaly) == len(rows) - TRAIN_ROWS


def test_rolling_windows_cut_a_run_into_consecutive_test_parts() -> None:
    assert rolling_windows(1000, 400, None) == [(0, 1000)]
    assert rolling_windows(400, 400, None) == []
    assert rolling_windows(1100, 400, 700) == [(0, 1100)]
    assert rolling_windows(1099, 400, 700) == []
    # Test parts follow each other: 400-700, 700-1000, 1000-1300.
    assert rolling_windows(1350, 400, 300) == [(0, 700), (300, 1000), (600, 1300)]
    with pytest.raises(ValueError, match="at least 1"):
        rolling_windows(1000, 400, 0)


def test_windows_of_a_long_run_are_trained_and_judged_each_on_their_own(tmp_path: Path) -> None:
    run = read_run(DATA / "valve1" / "1.csv")
    folder = tmp_path / "long"
    folder.mkdir()
    shutil.copy(DATA / "valve1" / "1.csv", folder / "1.csv")
    result = evaluate_folder(folder, 300, test_rows=200)
    windows = rolling_windows(len(run), 300, 200)
    assert len(windows) >= 4
    assert [r.name for r in result.runs] == [f"1.rows-{a}-{b}.csv" for a, b in windows]
    for r, (a, b) in zip(result.runs, windows, strict=True):
        # Judged: the 200 rows after the window's own 300 training rows.
        np.testing.assert_array_equal(r.time_us, run.time_us[a + 300 : b])
        np.testing.assert_array_equal(r.labels, run.anomaly[a + 300 : b].astype(bool))
    # Each window is its own line, trained on its own rows.
    assert len({r.line for r in result.runs}) == len(windows)
    assert len({r.threshold for r in result.runs}) > 1
    # The first window is the prefix protocol with 300 training rows, cut.
    (whole,) = evaluate_folder(folder, 300).runs
    first = result.runs[0]
    np.testing.assert_array_equal(first.anomaly, whole.anomaly[:200])
    np.testing.assert_array_equal(first.score, whole.score[:200])


def test_several_folders_name_their_runs_by_folder(tmp_path: Path) -> None:
    for name in ("valve1", "valve2"):
        (tmp_path / name).mkdir()
        shutil.copy(DATA / name / "1.csv", tmp_path / name / "1.csv")
    named = [str(n) for n, _ in runs_under([tmp_path / "valve1", tmp_path / "valve2"])]
    assert named == ["valve1/1.csv", "valve2/1.csv"]
    assert [str(n) for n, _ in runs_under(tmp_path / "valve1")] == ["1.csv"]
    (tmp_path / "again" / "valve1").mkdir(parents=True)
    shutil.copy(DATA / "valve1" / "1.csv", tmp_path / "again" / "valve1" / "1.csv")
    with pytest.raises(ValueError, match="distinct names"):
        runs_under([tmp_path / "valve1", tmp_path / "again" / "valve1"])


def test_any_sensors_and_sampling_interval(tmp_path: Path) -> None:
    """Three made-up sensors at 5 s: nothing assumes SKAB's columns or 1 Hz."""
    rng = np.random.default_rng(0)
    n = 700
    t0 = np.datetime64("2024-05-01T06:00:00")
    values = rng.normal(size=(n, 3)) + np.array([10.0, 0.0, 50.0])
    labels = np.zeros(n)
    labels[500:560] = 1
    values[500:560, 1] += 8.0
    lines = ["datetime;spindle_rpm;vibration;oil_temp;anomaly;changepoint"]
    for i in range(n):
        stamp = str(t0 + np.timedelta64(5 * i, "s")).replace("T", " ")
        cp = 1.0 if i == 500 else 0.0
        lines.append(f"{stamp};{values[i, 0]};{values[i, 1]};{values[i, 2]};{labels[i]};{cp}")
    (tmp_path / "press-7.csv").write_text("\n".join(lines) + "\n")
    result = evaluate_folder(tmp_path, TRAIN_ROWS)
    (run,) = result.runs
    assert run.sensors == ["spindle_rpm", "vibration", "oil_temp"]
    assert run.counts.events_detected == 1
    assert result.summary()["median_delay_s"] % 5 == 0
    assert any(a.sensors and a.sensors[0][0] == "vibration" for a in run.alerts if a.labelled)


def test_a_fixed_setpoint_is_named_and_its_change_is_a_step(tmp_path: Path) -> None:
    """A column with one value in the training rows (a setpoint) is out of the
    score; the run's calibration and report name it, and its change is a step."""
    rng = np.random.default_rng(4)
    n = 700
    t0 = np.datetime64("2024-05-01T06:00:00")
    values = rng.normal(size=(n, 2)) + np.array([10.0, 0.0])
    setpoint = np.full(n, 75.0)
    setpoint[600:640] = 80.0
    labels = np.zeros(n)
    labels[600:640] = 1
    lines = ["datetime;spindle_rpm;vibration;setpoint;anomaly;changepoint"]
    for i in range(n):
        stamp = str(t0 + np.timedelta64(i, "s")).replace("T", " ")
        lines.append(f"{stamp};{values[i, 0]};{values[i, 1]};{setpoint[i]};{labels[i]};0")
    (tmp_path / "mixer-2.csv").write_text("\n".join(lines) + "\n")
    evaluation = evaluate_folder(tmp_path, TRAIN_ROWS)
    (run,) = evaluation.runs
    assert run.calibration["flat_sensors"] == ["setpoint"]
    assert run.counts.events_detected == 1
    (fault,) = [a for a in run.alerts if a.labelled]
    assert fault.sensors[0][0] == "setpoint"
    assert "step-checked only: setpoint" in render_report(evaluation)


# -- report and CLI --------------------------------------------------------
def test_report_has_a_figure_per_run(evaluation: Evaluation, tmp_path: Path) -> None:
    path = write_report(evaluation, tmp_path / "out" / "report.html")
    text = path.read_text()
    assert text.startswith("<!DOCTYPE html>")
    assert text.count("<img ") == len(evaluation.runs) == 5
    assert text.count("data:image/png;base64,") == 5
    for run in evaluation.runs:
        assert run.name in text
    # Self-contained: no external resources.
    assert "src='http" not in text and 'src="http' not in text
    assert render_report(evaluation).count("<section") == 5


@pytest.fixture()
def small_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "skab"
    (folder / "valve2").mkdir(parents=True)
    shutil.copy(DATA / "valve2" / "1.csv", folder / "valve2" / "1.csv")
    return folder


def test_cli_evaluate_json_predictions_and_report(small_folder: Path, tmp_path: Path) -> None:
    out, report = tmp_path / "pred", tmp_path / "report.html"
    result = CliRunner().invoke(
        main,
        [
            "evaluate",
            str(small_folder),
            "--train-rows",
            "400",
            "--predictions",
            str(out),
            "--report",
            str(report),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    last = json.loads(result.output.strip().splitlines()[-1])
    assert last["runs"] == 1
    # The printed figures are those its own predictions file gives against
    # the labels of the source file.
    with (out / "valve2" / "1.csv").open(newline="") as handle:
        preds = np.array([int(r["anomaly_pred"]) for r in csv.DictReader(handle, delimiter=";")])
    time_us, labels = _source_test_part("valve2/1.csv", small_folder)
    want = _reference_summary([(time_us, labels, preds)])
    for key, value in want.items():
        assert last[key] == pytest.approx(value), key
    assert isinstance(last["nab_standard"], float)
    assert report.read_text().count("<img ") == 1
    assert "total" in result.output
    # Alerts by reason: the JSON line's counts are those of the alerts file.
    alerts = json.loads((out / "valve2" / "1.alerts.json").read_text())["alerts"]
    for reason in ALERT_REASONS:
        mine = [a for a in alerts if a["reason"] == reason]
        assert last["reasons"][reason] == {
            "alerts": len(mine),
            "faults": sum(a["labelled"] for a in mine),
            "false_alarms": sum(not a["labelled"] for a in mine),
        }
    assert sum(r["alerts"] for r in last["reasons"].values()) == len(alerts) >= 1
    assert "alerts by reason" in result.output


def test_cli_evaluate_rejects_bad_options(small_folder: Path, tmp_path: Path) -> None:
    base = ["evaluate", str(small_folder), "--train-rows", "400", "--predictions", str(tmp_path)]
    bad = CliRunner().invoke(main, [*base, "--detector", "nope"])
    assert bad.exit_code == 2 and "expected one of" in bad.output
    bad = CliRunner().invoke(main, [*base, "--debounce", "5/3"])
    assert bad.exit_code == 2 and "K/N" in bad.output
    empty = tmp_path / "empty"
    empty.mkdir()
    none = CliRunner().invoke(
        main, ["evaluate", str(empty), "--train-rows", "400", "--predictions", str(tmp_path)]
    )
    assert none.exit_code == 1 and "no run to evaluate" in none.output
    lone = CliRunner().invoke(
        main,
        [
            *("evaluate", str(small_folder), "--train-dir", str(small_folder)),
            *("--test-rows", "100", "--predictions", str(tmp_path)),
        ],
    )
    assert lone.exit_code == 2 and "give --train-rows" in lone.output


def test_cli_evaluate_several_folders_and_a_normal_run_in_windows(tmp_path: Path) -> None:
    for name in ("valve1", "valve2"):
        (tmp_path / name).mkdir()
        shutil.copy(DATA / name / "1.csv", tmp_path / name / "1.csv")
    out = tmp_path / "pred"
    both = CliRunner().invoke(
        main,
        [
            *("evaluate", str(tmp_path / "valve1"), str(tmp_path / "valve2")),
            *("--train-rows", "400", "--predictions", str(out), "--json"),
        ],
    )
    assert both.exit_code == 0, both.output
    assert json.loads(both.output.strip().splitlines()[-1])["runs"] == 2
    assert (out / "valve1" / "1.csv").is_file() and (out / "valve2" / "1.csv").is_file()
    # A run without labels, cut into windows: only a false-alarm rate.
    lines = (DATA / "valve1" / "1.csv").read_text().splitlines()
    normal = tmp_path / "normal"
    normal.mkdir()
    normal.joinpath("free.csv").write_text(
        "\n".join(";".join(line.split(";")[:-2]) for line in lines) + "\n"
    )
    free = CliRunner().invoke(
        main,
        [
            *("evaluate", str(normal), "--train-rows", "300", "--test-rows", "200", "--json"),
            *("--predictions", str(tmp_path / "p2")),
        ],
    )
    assert free.exit_code == 0, free.output
    last = json.loads(free.output.strip().splitlines()[-1])
    assert last["events"] == 0 and last["test_rows"] == 200 * last["runs"] > 0
    assert last["f1"] is None and last["mar"] is None and last["event_recall"] is None
    assert last["far"] > 0
    assert "free.rows-0-500.csv" in free.output
    assert "no anomaly labels: counted as normal operation" in free.output
    total = next(row for row in free.output.splitlines() if "total" in row and "│" in row)
    cells = [c.strip() for c in total.split("│")[1:-1]]
    # F1 and MAR have no meaning without a labelled fault: shown as '-'.
    assert cells[3] == "-" and cells[5] == "-" and float(cells[4]) == round(last["far"], 1)


def test_the_run_figure_marks_alert_frames_by_reason(evaluation: Evaluation) -> None:
    """Artists, not pixels: one marker set per reason with the frames in
    alert that had it, the sensors behind it in the legend label."""
    from lineguard.models.report import run_figure

    names = np.array(("", *ALERT_REASONS), dtype=object)
    seen = set()
    for run in evaluation.runs:
        ax = run_figure(run).axes[0]
        marks = {
            c.get_gid(): c for c in ax.collections if (c.get_gid() or "").startswith("reason:")
        }
        alerted = run.anomaly.astype(bool)
        why = names[run.reason]
        assert set(marks) == {f"reason:{r}" for r in why[alerted].tolist()}, run.name
        legend = [t.get_text() for t in ax.get_legend().get_texts()]
        for gid, artist in marks.items():
            reason = gid.split(":", 1)[1]
            frames = alerted & (why == reason)
            assert len(artist.get_offsets()) == int(frames.sum())
            assert artist.get_label() in legend
            if reason:
                behind = {
                    t.split(",")[0] for t, f in zip(run.top_sensors, frames, strict=True) if f
                }
                label = artist.get_label()
                assert label.startswith(f"{reason} (") and label.endswith(")")
                assert set(label[len(reason) + 2 : -1].split(", ")) <= behind
        seen |= set(marks)
    assert {"reason:score", "reason:step"} <= seen  # a check's alerts are drawn as such
