"""The batched hot path: fixed-order products, top sensors, result points.

These pieces were made faster for fleet-scale throughput (``bench/pipeline.py``);
the tests pin down that they still compute the same thing, independent of how
the stream is cut into batches.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from lineguard.detectors import _numeric
from lineguard.detectors._numeric import ordered_matmul, ordered_sum
from lineguard.detectors.pca import PCADetector
from lineguard.detectors.points import result_points
from lineguard.detectors.scoring import BatchResult
from lineguard.influx import encode_point, encode_points
from lineguard.ingest.contract import SCHEMA_V2, TelemetryBatch, encode
from lineguard.ingest.csv_runs import read_run
from lineguard.models.registry import Registry
from lineguard.models.training import train_line_model
from lineguard.stream.processor import (
    RESULT_MEASUREMENT,
    RawRecord,
    TelemetryProcessor,
    top_sensor_names,
)

SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "data" / "skab" / "valve1" / "0.csv"


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("blas", [True, False], ids=["blas-gemm", "stacked-rows"])
@pytest.mark.parametrize(("K", "k"), [(3, 2), (24, 5), (30, 1), (150, 43), (150, 1), (43, 150)])
def test_ordered_matmul_is_a_matmul_and_row_independent(
    K: int, k: int, blas: bool, threads: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    from threadpoolctl import threadpool_limits

    if not blas:  # the fallback for a BLAS that fails the row-independence probe
        monkeypatch.setattr(_numeric, "blas_rows_are_independent", lambda: False)
    elif not _numeric.blas_rows_are_independent():
        pytest.skip("this BLAS fails the probe; the worker uses the stacked form")
    rng = np.random.default_rng(K * k)
    a, b = rng.normal(size=(1400, K)), rng.normal(size=(K, k))
    with threadpool_limits(threads, user_api="blas"):
        whole = ordered_matmul(a, b)
        np.testing.assert_allclose(whole, a @ b, rtol=1e-12, atol=1e-12)
        # Sizes that put a plain BLAS call on different kernels (OpenBLAS's
        # small-matrix one below about a million multiply-adds).
        for lo, hi in [(0, 1), (1, 9), (17, 33), (300, 400), (9, 300), (7, 1200), (3, 1400)]:
            # Bitwise: a row's result never depends on the other rows of its
            # batch, nor on the memory layout of the operands.
            assert np.array_equal(ordered_matmul(a[lo:hi].copy(), b), whole[lo:hi])
        assert np.array_equal(ordered_matmul(a, np.asfortranarray(b)), whole)
    assert ordered_matmul(a[:0], b).shape == (0, k)


@pytest.mark.parametrize("K", [1, 10, 16, 17, 150])
def test_ordered_sum_is_a_sum_and_row_independent(K: int) -> None:
    a = np.random.default_rng(K).normal(size=(300, K))
    whole = ordered_sum(a)
    np.testing.assert_allclose(whole, a.sum(axis=1), rtol=1e-12, atol=1e-12)
    for lo, hi in [(0, 1), (3, 150), (150, 300)]:
        assert np.array_equal(ordered_sum(a[lo:hi]), whole[lo:hi])
    cube = a[:60].reshape(20, 3, K)
    assert np.array_equal(ordered_sum(cube), whole[:60].reshape(20, 3))


@pytest.mark.parametrize("n_components", [0.9, 1, 25])
def test_pca_compiled_score_is_the_sum_of_its_parts_and_row_independent(n_components) -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(700, 30)) @ rng.normal(size=(30, 30))
    detector = PCADetector(n_components=n_components).fit(X[:300])
    score = detector.decision_function(X[300:])
    # The per-feature split (NumPy) adds up to the compiled score.
    t2, spe = detector._parts((X[300:] - detector.mean_) / detector.scale_)
    expected = t2.sum(axis=1) / detector.t2_limit_ + spe.sum(axis=1) / detector.spe_limit_
    np.testing.assert_allclose(score, expected, rtol=1e-10)
    for lo, hi in [(0, 1), (1, 9), (9, 300), (300, 400)]:
        part = X[300 + lo : 300 + hi].copy()
        assert np.array_equal(detector.decision_function(part), score[lo:hi])
    # Shifted rows score higher: the statistic measures what it should.
    assert detector.decision_function(X[300:] + 5 * X.std(axis=0)).mean() > 10 * score.mean()


def test_pca_fast_spe_stays_within_its_tolerance_and_falls_back_where_it_would_cancel() -> None:
    """SPE as ``||z||² - ||Pᵀz||²`` saves a product but cancels for rows
    almost inside the normal subspace: it must stay within its error bound
    of the full residual, and a model with (almost) no residual variance --
    duplicated sensors -- must get the full residual on every row."""
    from lineguard.detectors.pca import _SPE_SCORE_TOLERANCE

    rng = np.random.default_rng(3)
    X = rng.normal(size=(900, 30)) @ rng.normal(size=(30, 30))
    detector = PCADetector().fit(X[:400])
    X_new = np.concatenate([X[400:], X[400:] * 1e-3, X[400:] + 40 * X.std(axis=0)])
    _, fast = detector._statistics(X_new)
    _, full = detector._statistics(X_new, exact_spe=True)
    assert np.all(fast >= 0.0)
    assert not np.array_equal(fast, full)  # the fast form was used here
    np.testing.assert_allclose(fast, full, rtol=0, atol=_SPE_SCORE_TOLERANCE * detector.spe_limit_)

    base = rng.normal(size=(900, 4)) @ rng.normal(size=(4, 12))
    collinear = np.concatenate([base, base], axis=1) + 1e-9 * rng.normal(size=(900, 24))
    detector = PCADetector(n_components=4).fit(collinear[:400])
    _, fast = detector._statistics(collinear[400:])
    _, full = detector._statistics(collinear[400:], exact_spe=True)
    assert np.array_equal(fast, full)


@pytest.mark.parametrize(
    ("context_rows", "w"), [(0, 10), (4, 10), (9, 10), (0, 7), (6, 7), (0, 20)]
)
def test_trailing_window_statistics_match_a_direct_computation(context_rows: int, w: int) -> None:
    from lineguard.detectors.features import _trailing_mean_std

    n = 33
    context_rows = min(context_rows, w - 1)
    history = np.random.default_rng(2).normal(size=(context_rows + n, 7))
    mean, std = _trailing_mean_std(history, n, w)
    for i in range(n):
        t = context_rows + i
        window = history[max(0, t - w + 1) : t + 1]
        np.testing.assert_allclose(mean[i], window.mean(axis=0), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(std[i], window.std(axis=0), rtol=1e-10, atol=1e-12)
    if context_rows == 0:
        # The masked stream-start path and the full-window path agree bitwise
        # on rows whose window is full, so batching cannot change a feature.
        later_mean, later_std = _trailing_mean_std(history, n - (w - 1), w)
        assert np.array_equal(later_mean, mean[w - 1 :]) and np.array_equal(later_std, std[w - 1 :])


@pytest.mark.parametrize("w", [2, 10, 20, 31])
def test_trailing_std_is_exactly_zero_for_a_constant_sensor_and_stable_on_an_offset(w: int) -> None:
    """A stuck sensor's std must be exactly 0, never rounding noise: the
    detector divides the std feature by its training spread, which is
    floored near 1e-9 for a sensor that never moved."""
    from lineguard.detectors.features import _trailing_mean_std

    rng = np.random.default_rng(w)
    n = 200
    history = np.empty((n + w - 1, 3))
    history[:, 0] = 5.0e4 + 0.1  # constant, not exactly representable
    history[:, 1] = 1.0e6 + 1e-3 * rng.normal(size=len(history))  # tiny spread, huge level
    history[:, 2] = rng.normal(size=len(history))
    for context in (w - 1, 0):
        rows = history[w - 1 - context :]
        mean, std = _trailing_mean_std(rows, n if context else len(rows), w)
        assert np.all(std[:, 0] == 0.0) and np.all(mean[:, 0] == history[0, 0])
        ends = range(len(rows) - len(std), len(rows))
        direct = np.array([rows[max(0, t - w + 1) : t + 1, 1].std() for t in ends])
        np.testing.assert_allclose(std[:, 1], direct, rtol=1e-6)


def test_top_sensor_names_match_a_per_frame_join() -> None:
    sensors = ["a", "b", "c", "d"]
    top = np.array([[2, 0, -1], [2, 0, -1], [1, 3, 0], [-1, -1, -1], [3, 2, 1]])
    expected = [",".join(sensors[j] for j in row if j >= 0) for row in top.tolist()]
    assert top_sensor_names(top, sensors).tolist() == expected
    assert top_sensor_names(top[:0], sensors).shape == (0,)


@pytest.mark.parametrize(("n_sensors", "k"), [(4, 3), (60, 5), (3000, 6)])
def test_top_sensor_names_match_a_per_frame_join_for_any_width(n_sensors: int, k: int) -> None:
    # (3000, 6): 3001**6 does not fit the one-integer row key; the rows are
    # then compared whole. Both ways must name the same sensors in order.
    rng = np.random.default_rng(n_sensors)
    sensors = [f"s{j}" for j in range(n_sensors)]
    top = rng.integers(-1, min(n_sensors, 6), size=(500, k))
    top[::7] = top[0]  # repeated combinations, as on a real line
    expected = [",".join(sensors[j] for j in row if j >= 0) for row in top.tolist()]
    assert top_sensor_names(top, sensors).tolist() == expected


def _result(score, exceed, anomaly) -> BatchResult:
    n = len(score)
    return BatchResult(
        score=np.asarray(score, dtype=float),
        raw_exceed=np.asarray(exceed, dtype=bool),
        anomaly=np.asarray(anomaly, dtype=bool),
        top_sensors=np.zeros((n, 3), dtype=int),
    )


def test_result_points_name_sensors_only_on_exceeding_or_alerted_frames() -> None:
    time_us = 1_700_000_000_000_000 + np.arange(5, dtype=np.int64) * 1_000_000
    result = _result([0.1, 2.0, 0.2, 0.3, 0.4], [0, 1, 0, 0, 0], [0, 0, 0, 1, 0])
    top = np.array(["", "a,b", "", "c", ""], dtype=object)
    tags = {"site": "s", "line": "l", "model_version": "v0001"}
    lines = result_points(tags, time_us, result, 1.5, np.zeros(5, bool), top).split("\n")
    # One point per frame, in frame order, each at its frame's time.
    assert [int(x.rsplit(" ", 1)[1]) for x in lines] == (time_us * 1000).tolist()
    assert [("top_sensors=" in x) for x in lines] == [False, True, False, True, False]
    assert all(x.startswith(f"{RESULT_MEASUREMENT},") and "threshold=1.5" in x for x in lines)
    assert 'top_sensors="a,b"' in lines[1] and "exceed=true" in lines[1]
    # Every frame carries score, threshold and anomaly; exceed only where true.
    assert [("anomaly=true" in x) for x in lines] == [False, False, False, True, False]
    assert all("anomaly=" in x and "score=" in x for x in lines)
    assert [("exceed=" in x) for x in lines] == [False, True, False, False, False]
    assert not any("historical" in x for x in lines)


def test_result_points_carry_the_reason_only_on_exceeding_frames() -> None:
    # Frames: quiet, score, freeze (held under the threshold), quiet in
    # alert (the debounce), step, freeze again: groups must not mix reasons.
    time_us = 1_700_000_000_000_000 + np.arange(6, dtype=np.int64) * 1_000_000
    base = _result([0.1, 2.0, 0.2, 0.3, 0.4, 0.5], [0, 1, 1, 0, 1, 1], [0, 0, 1, 1, 1, 1])
    result = BatchResult(
        base.score, base.raw_exceed, base.anomaly, base.top_sensors, np.array([0, 1, 2, 0, 3, 2])
    )
    tags = {"site": "s", "line": "l", "model_version": "v0001"}
    lines = result_points(tags, time_us, result, 1.5, np.zeros(6, bool), None).split("\n")
    assert [int(x.rsplit(" ", 1)[1]) for x in lines] == (time_us * 1000).tolist()
    written = [x.split('reason="')[1].split('"')[0] if "reason=" in x else "" for x in lines]
    assert written == ["", "score", "freeze", "", "step", "freeze"]
    # A code outside the contract is refused, not written under a wrong name.
    bad = BatchResult(base.score, base.raw_exceed, base.anomaly, base.top_sensors, np.full(6, 9))
    with pytest.raises(ValueError, match="reason codes"):
        result_points(tags, time_us, bad, 1.5, np.zeros(6, bool), None)


def test_result_points_mark_late_frames_and_round_trip_through_influx_parsing() -> None:
    time_us = 1_700_000_000_000_000 + np.arange(4, dtype=np.int64) * 1_000_000
    result = _result([0.123456789012345, 2.0, 0.2, 3.0], [0, 1, 0, 1], [0, 1, 1, 1])
    late = np.array([True, True, False, False])
    tags = {"site": "s", "line": "l", "model_version": "v0001"}
    lines = result_points(tags, time_us, result, 1.5, late, None).split("\n")
    assert [("historical=true" in x) for x in lines] == late.tolist()
    assert not any("top_sensors" in x for x in lines)  # None: a shadow writes no names
    fields = [dict(kv.split("=") for kv in x.split(" ")[1].split(",")) for x in lines]
    assert [float(f["score"]) for f in fields] == pytest.approx(result.score.tolist(), rel=1e-11)
    assert fields[0]["score"] == "0.123456789012"  # 12 significant digits


def test_encode_points_with_constant_columns_equals_point_by_point() -> None:
    n = 6
    fields = {
        "score": np.array([0.5, np.nan, 1.25, 3.0, 4.0, 5.5]),
        "threshold": np.full(n, 2.5),
        "flag": np.zeros(n, dtype=bool),
        "count": np.full(n, 7, dtype=np.int64),
        "label": np.array(["x", "y z", 'q"', "", "u", "v"], dtype=object),
    }
    times = 1_700_000_000_000_000_000 + np.arange(n, dtype=np.int64)
    tags = {"line": "l 1", "site": "s"}
    expected = [
        encode_point("m", tags, {k: v[i] for k, v in fields.items()}, int(times[i]))
        for i in range(n)
    ]
    assert encode_points("m", tags, fields, times).split("\n") == expected


def test_processor_scores_v2_records_like_v1(tmp_path) -> None:
    run = read_run(SAMPLE)
    registry = Registry(tmp_path)
    train_line_model(registry, run, "valve1-0", rows=400)

    def records(schema: str) -> list[RawRecord]:
        out = []
        for seq, start in enumerate(range(0, len(run), 100)):
            batch = TelemetryBatch(
                "site-1",
                "valve1-0",
                "gw",
                seq,
                run.sensors,
                run.time_us[start : start + 100],
                run.values[start : start + 100],
            )
            out.append(RawRecord(encode(batch, schema), b"valve1-0", "t", 0, seq))
        return out

    v1 = TelemetryProcessor(registry).process(records("lineguard.telemetry.v1"))
    v2 = TelemetryProcessor(registry).process(records(SCHEMA_V2))
    assert not v1.dead_letters and not v2.dead_letters
    assert v1.influx_lines == v2.influx_lines and v1.frames_scored == len(run)
    assert [a[1] for a in v1.alerts] == [a[1] for a in v2.alerts]


def test_top_k_equals_a_stable_sort_including_ties() -> None:
    from lineguard.detectors.scoring import _top_k

    rng = np.random.default_rng(7)
    for trial in range(200):
        n, d = int(rng.integers(0, 40)), int(rng.integers(1, 60))
        shares = rng.integers(0, 3, size=(n, d)).astype(float) if trial % 2 else rng.random((n, d))
        top = min(3, d)
        expected = np.argsort(-shares, axis=1, kind="stable")[:, :top]
        assert np.array_equal(_top_k(shares, top), expected)


@pytest.mark.parametrize("blas", [True, False], ids=["blas-gemm", "stacked-rows"])
def test_pca_attribution_from_the_scoring_pass_equals_attribution_recomputed(
    blas: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The scorer reuses the scoring pass's standardized rows and scores for
    # the rows it explains; that must be exactly what contributions() gives
    # those rows alone, and the score exactly decision_function's.
    monkeypatch.setattr(_numeric, "blas_rows_are_independent", lambda: blas)
    rng = np.random.default_rng(7)
    X = rng.normal(size=(900, 40)) @ rng.normal(size=(40, 40))
    detector = PCADetector().fit(X[:400])
    F = X[400:] + np.where(rng.random((500, 1)) < 0.05, 4.0, 0.0)
    score, context = detector._decision_and_context(F)
    assert score.tobytes() == detector.decision_function(F).tobytes()
    for rows in (np.flatnonzero(score > np.quantile(score, 0.97)), np.array([0, 499]), [3]):
        rows = np.asarray(rows)
        reused = detector._contributions_at(F, rows, context)
        assert reused.tobytes() == detector.contributions(F[rows].copy()).tobytes()
        assert np.allclose(reused.sum(axis=1), 1.0)
    mask = score > np.median(score)
    reused = detector._contributions_at(F, mask, context)
    assert reused.tobytes() == detector.contributions(F[mask]).tobytes()


def test_an_incident_point_is_one_line_with_its_reason_fields_only_once_it_has_one() -> None:
    from lineguard.detectors.incidents import IncidentEvent
    from lineguard.stream.processor import incident_point

    event = IncidentEvent(
        kind="open",
        line="line 1",
        incident_id="line 1-1",
        start_us=1_735_689_600_000_000,
        end_us=1_735_689_700_000_000,
        peak_score=np.float64(12.5),
        threshold=3.25,
        severity="major",
        frames=np.int64(100),
        top_sensors=("a", "b"),
        model_version="v1",
        reason="freeze",
        reason_sensor="a",
        reasons={"freeze": 90, "score": 10},
    )
    assert incident_point(event, "site-1") == (
        'lineguard_incident,line=line\\ 1,site=site-1 incident_id="line 1-1",state="open",'
        'severity="major",peak_score=12.5,threshold=3.25,end_us=1735689700000000i,'
        'duration_s=100.0,frames=100i,top_sensors="a,b",model_version="v1",reason="freeze",'
        'reasons="freeze:90,score:10",reason_sensor="a" 1735689600000000000'
    )
    # No reason yet: no reason fields; a NaN peak is not storable: left out.
    quiet = dataclasses.replace(
        event, peak_score=float("nan"), reason="", reason_sensor="", reasons={}
    )
    assert incident_point(quiet, "site-1") == (
        'lineguard_incident,line=line\\ 1,site=site-1 incident_id="line 1-1",state="open",'
        'severity="major",threshold=3.25,end_us=1735689700000000i,duration_s=100.0,'
        'frames=100i,top_sensors="a,b",model_version="v1" 1735689600000000000'
    )
