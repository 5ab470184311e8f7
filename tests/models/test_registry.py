"""Model bundles: versions, envelope, verification before loading."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lineguard.ingest.csv_runs import read_run
from lineguard.models.registry import ModelIntegrityError, Registry, RegistryError
from lineguard.models.training import DEFAULT_DEBOUNCE, TrainingConfig, train_line_model

SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "data" / "skab" / "valve1" / "0.csv"


@pytest.fixture(scope="module")
def run():
    return read_run(SAMPLE)


@pytest.fixture
def trained(tmp_path: Path, run):
    registry = Registry(tmp_path / "registry")
    bundle = train_line_model(registry, run, "valve1-0", rows=400)
    return registry, bundle


def test_training_writes_an_active_version_with_its_envelope(trained, run) -> None:
    registry, bundle = trained
    assert bundle.version == "v0001"
    assert registry.active_version("valve1-0") == "v0001"
    manifest = registry.manifest("valve1-0", "v0001")
    assert manifest["line_id"] == "valve1-0"
    assert manifest["sensors"] == list(run.sensors)
    assert manifest["training"]["rows"] == 400
    assert manifest["training"]["start"].startswith("2020-03-09T10:14:33")
    assert len(manifest["training"]["fingerprint"]) == 64
    assert len(manifest["artifact"]["sha256"]) == 64
    assert {"numpy", "scikit-learn", "pyod", "python"} <= set(manifest["libraries"])
    k, n = DEFAULT_DEBOUNCE
    assert manifest["threshold"] > 0 and manifest["debounce"] == {"k": k, "n": n}


def test_a_loaded_bundle_scores_like_the_trained_one(trained, run) -> None:
    registry, bundle = trained
    loaded = registry.load("valve1-0")
    X = run.values[400:600]
    np.testing.assert_allclose(
        loaded.pipeline.decision_function(X), bundle.pipeline.decision_function(X)
    )
    assert loaded.threshold == bundle.threshold and loaded.sensors == list(run.sensors)


def test_versions_increase_and_activation_is_explicit(trained, run) -> None:
    registry, _ = trained
    second = train_line_model(registry, run, "valve1-0", rows=300, activate=False)
    assert second.version == "v0002"
    assert registry.versions("valve1-0") == ["v0001", "v0002"]
    assert registry.active_version("valve1-0") == "v0001"
    registry.activate("valve1-0", "v0002")
    assert registry.load("valve1-0").version == "v0002"
    with pytest.raises(RegistryError, match="v0009"):
        registry.activate("valve1-0", "v0009")
    listed = registry.list_models()
    assert [(m["version"], m["active"]) for m in listed] == [("v0001", False), ("v0002", True)]


def test_a_tampered_artifact_is_refused(trained) -> None:
    registry, bundle = trained
    artifact = registry.root / "valve1-0" / bundle.version / "model.skops"
    data = bytearray(artifact.read_bytes())
    data[-100] ^= 0xFF
    artifact.write_bytes(bytes(data))
    with pytest.raises(ModelIntegrityError, match="sha256"):
        registry.load("valve1-0")


def test_a_manifest_of_another_format_is_refused(trained) -> None:
    registry, bundle = trained
    path = registry.root / "valve1-0" / bundle.version / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["format"] = "pickle"
    path.write_text(json.dumps(manifest))
    with pytest.raises(ModelIntegrityError, match="format"):
        registry.load("valve1-0")


def test_unknown_line_and_missing_active_model(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    with pytest.raises(RegistryError, match="no active model"):
        registry.load("nope")
    assert registry.lines() == [] and registry.list_models() == []


def test_training_refuses_labelled_anomalies_and_bad_line_ids(tmp_path: Path, run) -> None:
    registry = Registry(tmp_path)
    with pytest.raises(ValueError, match="labelled anomalous"):
        train_line_model(registry, run, "valve1-0", rows=900)
    with pytest.raises(ValueError, match="line id"):
        train_line_model(registry, run, "bad line", rows=400)
    with pytest.raises(ValueError, match="debounce"):
        TrainingConfig(debounce=(4, 3))


def test_threshold_meets_its_false_alarm_target_on_unseen_normal_rows(tmp_path: Path) -> None:
    # Stationary synthetic process: the calibrated threshold should flag about
    # target_far of fresh normal frames, not 0 and not many times more.
    rng = np.random.default_rng(3)
    from lineguard.ingest.csv_runs import RecordedRun

    mixing = rng.normal(size=(4, 4))
    X = rng.normal(size=(6000, 4)) @ mixing
    times = np.arange(6000, dtype=np.int64) * 1_000_000 + 1_700_000_000_000_000
    normal = RecordedRun(Path("synthetic.csv"), ("a", "b", "c", "d"), times, X)
    config = TrainingConfig(target_far=0.02, debounce=(1, 1))
    bundle = train_line_model(Registry(tmp_path), normal, "synthetic", rows=3000, config=config)
    scores = bundle.pipeline.decision_function(X[3000:])
    rate = float((scores > bundle.threshold).mean())
    assert 0.005 < rate < 0.06, rate
