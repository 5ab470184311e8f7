"""One training defaults object: every way to train starts from TRAINING_DEFAULTS."""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pytest

from lineguard.detectors.calibration import TRAINING_DEFAULTS, train_pipeline
from lineguard.ingest.csv_runs import RecordedRun
from lineguard.models.training import TrainingConfig, training_rows


def test_the_chosen_defaults() -> None:
    # The numbers themselves, written out: changing one is a decision that
    # shows up here (bench/RESULTS.md, 2026-12-01, for the hold-out).
    assert TRAINING_DEFAULTS.holdout_fraction == 0.3
    assert TRAINING_DEFAULTS.min_rows == 20
    assert TRAINING_DEFAULTS.target_far == 0.01
    assert TRAINING_DEFAULTS.debounce == (2, 5)
    # The noise check is off unless a line's training turns it on (its cost).
    assert TRAINING_DEFAULTS.noise_window is None


def test_the_training_config_and_the_math_layer_default_to_the_same_object() -> None:
    config = TrainingConfig()
    for name in ("detector", "target_far", "holdout_fraction", "debounce", "seed", "noise_window"):
        assert getattr(config, name) == getattr(TRAINING_DEFAULTS, name), name
    params = inspect.signature(train_pipeline).parameters
    assert params["holdout_fraction"].default == TRAINING_DEFAULTS.holdout_fraction
    assert params["target_far"].default == TRAINING_DEFAULTS.target_far
    assert params["window"].default == TRAINING_DEFAULTS.window
    assert params["detrend_slow"].default == TRAINING_DEFAULTS.detrend_slow


def test_too_few_training_rows_are_refused_at_the_one_minimum() -> None:
    n = TRAINING_DEFAULTS.min_rows
    t = np.arange(n, dtype=np.int64) * 1_000_000
    run = RecordedRun(Path("short.csv"), ("a",), t, np.zeros((n, 1)), None, None)
    assert training_rows(run, None) == slice(0, n)
    with pytest.raises(ValueError, match=f"expected at least {n} training rows; got {n - 1}"):
        training_rows(run, n - 1)
