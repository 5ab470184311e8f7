"""Contract suite run against every registered detector."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.metrics import roc_auc_score

from lineguard.detectors import DETECTORS, Detector, make_detector

NAMES = sorted(DETECTORS)
D = 6


def _correlated_normal(rng: np.random.Generator, n: int) -> np.ndarray:
    # Fixed mixing matrix: every call draws from the same correlated Gaussian.
    mix = np.random.default_rng(123).normal(size=(D, D)) / np.sqrt(D) + np.eye(D)
    return rng.normal(size=(n, D)) @ mix.T + np.arange(D) * 10.0


@pytest.fixture(scope="module")
def data() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    train = _correlated_normal(rng, 600)
    normal = _correlated_normal(rng, 400)
    sd = train.std(axis=0)
    anomalies = _correlated_normal(rng, 80)
    # Each anomaly shifts one sensor by 5 of its normal standard deviations.
    cols = rng.integers(0, D, size=80)
    signs = rng.choice([-1.0, 1.0], size=80)
    anomalies[np.arange(80), cols] += 5.0 * sd[cols] * signs
    return {"train": train, "normal": normal, "anomalies": anomalies, "cols": cols}


@pytest.fixture(scope="module", params=NAMES)
def fitted(request: pytest.FixtureRequest, data: dict[str, np.ndarray]) -> Detector:
    return make_detector(request.param, random_state=0).fit(data["train"])


@pytest.mark.parametrize("name", NAMES)
def test_is_detector_with_clonable_params(name: str, data: dict[str, np.ndarray]) -> None:
    det = make_detector(name, random_state=0)
    assert isinstance(det, Detector)
    twin = clone(det)
    assert twin is not det
    assert twin.get_params() == det.get_params()
    # Cloning a fitted detector yields an unfitted one with the same params.
    det.fit(data["train"])
    unfitted = clone(det)
    with pytest.raises(NotFittedError):
        unfitted.decision_function(data["normal"])


@pytest.mark.parametrize("name", NAMES)
def test_fit_returns_self_and_is_deterministic(name: str, data: dict[str, np.ndarray]) -> None:
    a = make_detector(name, random_state=0)
    assert a.fit(data["train"]) is a
    b = make_detector(name, random_state=0).fit(data["train"])
    np.testing.assert_array_equal(
        a.decision_function(data["normal"]), b.decision_function(data["normal"])
    )


def test_scoring_does_not_mutate_input_or_estimator(
    fitted: Detector, data: dict[str, np.ndarray]
) -> None:
    X = data["anomalies"].copy()
    X_before = X.copy()
    state_before = pickle.dumps(fitted)
    scores = fitted.decision_function(X)
    fitted.contributions(X)
    np.testing.assert_array_equal(X, X_before)
    assert pickle.dumps(fitted) == state_before
    # Batch scores equal row-by-row scores: nothing leaks between rows.
    single = np.array([fitted.decision_function(X[i : i + 1])[0] for i in range(5)])
    np.testing.assert_allclose(scores[:5], single, rtol=1e-12)


def test_training_rows_not_kept(fitted: Detector, data: dict[str, np.ndarray]) -> None:
    train = data["train"]
    for name, value in vars(fitted).items():
        if isinstance(value, np.ndarray) and value.shape == train.shape:
            assert not np.array_equal(value, train), f"{name} stores the training data"


def test_scores_higher_on_injected_anomalies(fitted: Detector, data: dict[str, np.ndarray]) -> None:
    s_norm = fitted.decision_function(data["normal"])
    s_anom = fitted.decision_function(data["anomalies"])
    assert s_norm.shape == (400,) and s_norm.dtype == np.float64
    y = np.r_[np.zeros(400), np.ones(80)]
    auc = roc_auc_score(y, np.r_[s_norm, s_anom])
    assert auc > 0.8, f"{type(fitted).__name__} AUC {auc:.3f}"


def test_contributions_shape_and_attribution(fitted: Detector, data: dict[str, np.ndarray]) -> None:
    X = data["anomalies"]
    contrib = fitted.contributions(X)
    assert contrib.shape == X.shape
    assert np.all(contrib >= 0)
    scores = fitted.decision_function(X)
    row_sums = contrib[scores > 0].sum(axis=1)
    np.testing.assert_allclose(row_sums, 1.0, atol=1e-9)
    # The shifted sensor should usually be named the main contributor.
    hit_rate = np.mean(contrib.argmax(axis=1) == data["cols"])
    assert hit_rate > 0.7, f"{type(fitted).__name__} attribution hit rate {hit_rate:.2f}"


def test_input_validation(fitted: Detector, data: dict[str, np.ndarray]) -> None:
    with pytest.raises(ValueError, match=r"6 features.*5 columns"):
        fitted.decision_function(data["normal"][:, :5])
    bad = data["normal"][:3].copy()
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        fitted.decision_function(bad)
    with pytest.raises(ValueError, match="2-D"):
        fitted.decision_function(data["normal"][0])


def test_unknown_name_lists_choices() -> None:
    with pytest.raises(ValueError, match="expected one of"):
        make_detector("no-such-detector")


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shift", [1e-6, 1.0, 1e3])
def test_a_column_constant_in_training_neither_scores_nor_takes_a_share(
    name: str, shift: float, data: dict[str, np.ndarray]
) -> None:
    # A column with one value in every fit row (a rare event a trimmed fit
    # left out, a sensor constant in one mode) says nothing about its normal
    # spread: its departure must not score, or one such row among the held-back
    # rows sets the threshold beyond every fault.
    train = np.c_[data["train"], np.full(data["train"].shape[0], 3.0)]
    det = make_detector(name, random_state=0).fit(train)
    rows = np.c_[data["anomalies"], np.full(data["anomalies"].shape[0], 3.0)]
    moved = rows.copy()
    moved[:, -1] += shift
    np.testing.assert_allclose(det.decision_function(moved), det.decision_function(rows))
    assert np.all(det.contributions(moved)[:, -1] == 0.0)
    np.testing.assert_allclose(det.contributions(moved), det.contributions(rows))
