"""Operating modes from an integer phase tag (issue 16, item 2): lineguard.detectors.sensor_checks.

The synthetic batch line announces its phase in one integer tag, as many
pharma lines do (ISA-88 phase numbers): 1 fill, 2 mix, 3 heat, 4 cool,
5 discharge. Its sensors behave differently per phase:

* the level rises in fill, falls in discharge, and holds *exactly* in mix,
  heat and cool (nothing flows);
* the temperature rises in heat, falls in cool, and is noisy throughout;
* the mixer speed is 0 except in mix.

The same batches can be written with five 0/1 phase commands instead of the
tag (one-hot): the two lines must have the same modes.
"""

from __future__ import annotations

import numpy as np
import pytest

from lineguard.detectors.calibration import train_pipeline
from lineguard.detectors.scoring import score_batch
from lineguard.detectors.sensor_checks import (
    FREEZE,
    REASONS,
    UNSEEN_MODE,
    SensorChecks,
    phase_channels,
)
from tests.support.batch_line import BATCH, LENGTHS, PHASES, batch_line, one_hot

PHASE, LEVEL, TEMP, MIXER = range(4)
SENSORS = ["phase", "level", "temperature", "mixer_speed"]
SECOND_US = 1_000_000


def _line(seed: int, n_batches: int) -> np.ndarray:
    return batch_line(np.random.default_rng(seed), n_batches)


def _starts(n: int) -> np.ndarray:
    return np.arange(0, n, BATCH)


@pytest.fixture(scope="module")
def tagged() -> SensorChecks:
    X = _line(0, 6)
    return SensorChecks().fit(X, starts=_starts(len(X)))


def _phase_rows(phase: int) -> slice:
    i = PHASES.index(phase)
    lo = sum(LENGTHS[:i])
    return slice(lo, lo + LENGTHS[i])


# -- (1) the tag is recognised; 0/1 lines and non-phase integers are not -------
def test_the_phase_tag_is_found_and_names_the_modes(tagged: SensorChecks) -> None:
    assert tagged.phase_channels_.tolist() == [True, False, False, False]
    assert not tagged.state_channels_.any()
    assert tagged.modes_.size == 5
    assert tagged.mode_channels.tolist() == [True, False, False, False]
    # The tag is not judged as a process sensor: no check applies to it.
    assert not tagged.checked_[PHASE]
    assert np.isinf(tagged.high_[:, PHASE]).all()
    assert np.isinf(tagged.freeze_limit_[:, PHASE]).all()
    # Each phase is its own mode: the level's freeze limit is short where it
    # moves (fill, discharge) and long where it holds (mix, heat, cool).
    limits = tagged.freeze_limit_[:, LEVEL]
    moving = [0, 4]
    assert (limits[moving] < 10).all(), limits
    assert (limits[[1, 2, 3]] > 90).all(), limits


def test_a_line_with_only_0_1_channels_keeps_its_bit_packed_modes() -> None:
    X = one_hot(_line(0, 6))
    checks = SensorChecks().fit(X, starts=_starts(len(X)))
    assert not checks.phase_channels_.any()
    assert checks.state_channels_.tolist() == [True] * 5 + [False] * 3
    assert checks.modes_.tolist() == [1, 2, 4, 8, 16]  # one bit per command, as before


def test_isa88_step_numbers_are_a_phase_tag_too() -> None:
    X = _line(0, 4)
    X[:, PHASE] *= 10  # phases 10, 20, ..., 50
    assert phase_channels(X, _starts(len(X))).tolist() == [True, False, False, False]


def _other_integers(n: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    t = np.arange(n)
    # A slow temperature read in whole degrees with noise: it dithers
    # between neighbouring values near each boundary (short runs).
    dithering = np.rint(20 + 3 * np.sin(t / 300) + rng.normal(scale=0.8, size=n))
    # A product code each batch of training runs once, in no order.
    product = np.repeat([3, 1, 4, 2, 5], -(-n // 5))[:n].astype(float)
    # A noiseless slow reading in whole units: long runs, each value seen
    # on every pass, but it never skips a value.
    triangle = np.rint(5 + 4 * np.abs(((t / 750) % 2) - 1))
    return {"dithering": dithering, "product": product, "triangle": triangle}


@pytest.mark.parametrize("name", ["dithering", "product", "triangle"])
def test_integer_readings_that_are_not_phases_are_not_taken_for_one(name: str) -> None:
    X = _line(0, 6)
    column = _other_integers(len(X))[name]
    assert 3 <= np.unique(column).size <= 16  # the premise: only the other clauses decide
    Y = np.column_stack([X, column])
    assert phase_channels(Y, _starts(len(Y))).tolist() == [True, False, False, False, False]


# -- (2) freeze judged in the phase's own terms ---------------------------------
def test_a_stuck_level_is_caught_where_its_phase_moves_it(tagged: SensorChecks) -> None:
    X = _line(1, 1)
    fill = _phase_rows(1)
    stuck = X.copy()
    stuck[fill.start + 40 : fill.stop, LEVEL] = stuck[fill.start + 40, LEVEL]
    result, _ = tagged.check(stuck, None, None)
    fired = np.flatnonzero(result.reason == FREEZE)
    assert fired.size and fill.start + 40 < fired[0] < fill.start + 50, fired[:5]
    assert set(result.sensor[fired].tolist()) == {LEVEL}


def test_the_same_flat_level_where_its_phase_holds_it_is_normal(tagged: SensorChecks) -> None:
    X = _line(1, 1)
    mix = _phase_rows(2)
    # The premise: the level does not change over the whole mix phase.
    assert (np.diff(X[mix, LEVEL]) == 0).all()
    result, _ = tagged.check(X, None, None)
    assert not (result.reason == FREEZE).any(), np.flatnonzero(result.reason == FREEZE)[:5]


# -- (3) a phase value never seen in training ---------------------------------
@pytest.mark.parametrize("value", [0.0, 6.0, 2.5])
def test_a_phase_value_never_seen_is_an_unseen_mode(tagged: SensorChecks, value: float) -> None:
    X = _line(2, 1)
    X[200:230, PHASE] = value
    result, _ = tagged.check(X, None, None)
    assert (result.reason[200:230] == UNSEEN_MODE).all()
    assert (result.sensor[200:230] == PHASE).all()  # the tag is named
    assert (result.mode[200:230] == -1).all()
    assert (result.mode[:200] >= 0).all() and (result.mode[230:] >= 0).all()


# -- (4) one tag or five commands: the same modes ------------------------------
def test_a_phase_tag_and_the_same_phases_as_0_1_channels_give_the_same_modes() -> None:
    X = _line(3, 5)
    starts = _starts(len(X))
    tag = SensorChecks().fit(X, starts=starts)
    commands = SensorChecks().fit(one_hot(X), starts=starts)
    assert tag.modes_.size == commands.modes_.size == 5
    a, b = tag.modes_of(X), commands.modes_of(one_hot(X))
    assert (a >= 0).all() and (b >= 0).all()
    # The same partition of the rows: each tag mode is exactly one command mode.
    pairs = np.unique(np.column_stack([a, b]), axis=0)
    assert len(pairs) == 5
    np.testing.assert_array_equal(np.bincount(a), np.array(LENGTHS) * 5)
    np.testing.assert_array_equal(np.sort(tag.mode_rows_), np.sort(commands.mode_rows_))
    # Both keep the phases in their order (fill first), and so learn the same
    # freeze and step limits for the process sensors in each phase.
    for name in ("freeze_limit_", "low_", "high_"):
        np.testing.assert_array_equal(getattr(tag, name)[:, 1:], getattr(commands, name)[:, 5:])


# -- old checks, and the stream path ---------------------------------------
def test_checks_saved_before_phase_channels_score_the_same() -> None:
    X = one_hot(_line(4, 4))
    checks = SensorChecks().fit(X, starts=_starts(len(X)))
    probe = one_hot(_line(5, 1))
    probe[100:, 5] = probe[100, 5]  # a freeze, for something to report
    new, _ = checks.check(probe, None, None)
    for name in ("phase_channels_", "phase_columns_", "phase_values_", "phase_shift_"):
        delattr(checks, name)
    old, _ = checks.check(probe, None, None)
    assert (new.reason == FREEZE).any()
    for field in ("reason", "sensor", "mode"):
        np.testing.assert_array_equal(getattr(old, field), getattr(new, field))
    assert checks.mode_channels.tolist() == [True] * 5 + [False] * 3


def _trained():
    X = _line(0, 6)
    t = np.arange(len(X), dtype=np.int64) * SECOND_US
    return train_pipeline(X, SENSORS, "pca", time_us=t, max_trim=0.0)


def test_the_scorer_judges_a_batch_by_its_phase() -> None:
    pipeline, threshold, info = _trained()
    assert info["modes"]["n_modes"] == 5
    X = _line(6, 1)
    fill = _phase_rows(1)
    X[fill.start + 40 : fill.stop, LEVEL] = X[fill.start + 40, LEVEL]
    X[450:470, PHASE] = 7.0  # a phase the line never ran in training
    t = np.arange(len(X), dtype=np.int64) * SECOND_US
    result, _ = score_batch(pipeline, X, None, threshold, 2, 5, time_us=t)
    freeze = np.flatnonzero(result.reason == REASONS.index("freeze"))
    assert freeze.size and fill.start + 40 < freeze[0] < fill.start + 50, freeze[:5]
    assert (result.top_sensors[freeze, 0] == LEVEL).all()
    assert (result.reason[450:470] == REASONS.index("unseen_mode")).all()
    assert (result.top_sensors[450:470, 0] == PHASE).all()
    # The mode models judge every feature but the tag's own.
    mode_models = pipeline.mode_models_
    assert mode_models is not None and mode_models.n_modes_ == 5
    names = pipeline.feature_names_out_
    judged = {names[c] for c in mode_models.columns_}
    assert judged and not any(n.startswith("phase") for n in judged), sorted(judged)


def test_a_line_with_a_phase_tag_survives_the_registry(tmp_path) -> None:
    from lineguard.models.registry import Registry
    from lineguard.models.training import train_from_rows

    X = _line(0, 6)
    t = np.arange(len(X), dtype=np.int64) * SECOND_US + 1_600_000_000 * SECOND_US
    registry = Registry(tmp_path)
    bundle = train_from_rows(registry, "phased", sensors=SENSORS, time_us=t, X=X, source="toy")
    loaded = registry.load("phased")
    checks = loaded.pipeline.checks_
    assert checks.phase_channels_.tolist() == [True, False, False, False]
    probe = _line(8, 1)
    probe[300:320, PHASE] = 9.0
    np.testing.assert_array_equal(
        loaded.pipeline.decision_function(probe), bundle.pipeline.decision_function(probe)
    )
    np.testing.assert_array_equal(checks.modes_of(probe), bundle.pipeline.checks_.modes_of(probe))
