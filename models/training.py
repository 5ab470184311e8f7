"""Offline training of one line's model, from rows known to be normal.

A line model is fitted on normal operation only: faults are rare and each one
looks different, so the detector learns what normal looks like and the alert
threshold is set from a target false-alarm rate measured on normal rows the
detector did not see (see :mod:`lineguard.detectors.calibration`). No label of
a fault is needed, which is what makes the same procedure work on a new line.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lineguard.detectors.calibration import TRAINING_DEFAULTS, train_pipeline
from lineguard.detectors.scoring import DEFAULT_DEBOUNCE
from lineguard.detectors.sensor_checks import SensorChecks
from lineguard.ingest.contract import utc_from_us
from lineguard.ingest.csv_runs import RecordedRun
from lineguard.models.registry import ModelBundle, Registry

__all__ = [
    "DEFAULT_DEBOUNCE",
    "TrainingConfig",
    "concat_runs",
    "fingerprint",
    "fit_from_rows",
    "train_from_rows",
    "train_line_model",
    "training_rows",
]


@dataclass(frozen=True)
class TrainingConfig:
    """How a line model is trained.

    Every default is :data:`lineguard.detectors.calibration.TRAINING_DEFAULTS`'
    (the one defaults object); a config only says where a run differs.

    Attributes
    ----------
    detector : str
        Detector name (see :data:`lineguard.detectors.catalogue.DETECTOR_NAMES`;
        ``"auto"`` picks one per line, :mod:`lineguard.detectors.selection`).
    target_far : float
        Fraction of normal frames allowed above the threshold.
    holdout_fraction : float
        Last fraction of the training rows held back to calibrate the
        threshold.
    debounce : (k, n)
        Alert when k of the last n frames exceed the threshold.
    seed : int
        Seed for stochastic detectors, so retraining is reproducible.
    noise_window : int or None
        Window of the sensor checks' noise check, in rows, or None (off;
        see :class:`~lineguard.detectors.calibration.TrainingDefaults`).
    """

    detector: str = TRAINING_DEFAULTS.detector
    target_far: float = TRAINING_DEFAULTS.target_far
    holdout_fraction: float = TRAINING_DEFAULTS.holdout_fraction
    debounce: tuple[int, int] = TRAINING_DEFAULTS.debounce
    seed: int = TRAINING_DEFAULTS.seed
    noise_window: int | None = TRAINING_DEFAULTS.noise_window

    def __post_init__(self) -> None:
        if self.noise_window is not None and self.noise_window < 2:
            raise ValueError(
                f"noise_window must be None or at least 2 rows; got {self.noise_window}"
            )
        k, n = self.debounce
        if not 1 <= k <= n:
            raise ValueError(f"debounce must satisfy 1 <= k <= n; got k={k}, n={n}")
        if not 0 < self.target_far < 0.5:
            raise ValueError(f"target_far must be in (0, 0.5); got {self.target_far}")


def fingerprint(sensors: tuple[str, ...] | list[str], time_us: np.ndarray, X: np.ndarray) -> str:
    """sha256 of the training data, so a model can be traced to its rows."""
    digest = hashlib.sha256()
    digest.update("\x1f".join(sensors).encode())
    digest.update(np.ascontiguousarray(time_us, dtype=np.int64).tobytes())
    digest.update(np.ascontiguousarray(X, dtype=np.float64).tobytes())
    return digest.hexdigest()


def training_rows(run: RecordedRun, rows: int | None) -> slice:
    """The rows of ``run`` to train on: the first ``rows`` (all when None).

    Raises
    ------
    ValueError
        When too few rows remain, or labelled anomalies fall inside them: a
        model must learn normal operation only.
    """
    stop = len(run) if rows is None else min(rows, len(run))
    if stop < TRAINING_DEFAULTS.min_rows:
        raise ValueError(
            f"{run.path}: expected at least {TRAINING_DEFAULTS.min_rows} training rows; got {stop}"
        )
    if run.anomaly is not None and run.anomaly[:stop].any():
        first = int(np.flatnonzero(run.anomaly[:stop])[0])
        raise ValueError(
            f"{run.path}: the training rows must be normal operation, but row {first} is "
            f"labelled anomalous; train on fewer rows (e.g. --rows {first})"
        )
    return slice(0, stop)


def concat_runs(runs: list[RecordedRun]) -> RecordedRun:
    """Several recorded runs of one line as one history, oldest first.

    A plant trains a line on its history -- weeks of normal operation,
    complete batches of a batch line -- not on one file. The runs are put in
    time order and concatenated; the pause between two runs is longer than
    any model's gap bound, so no trailing window spans it, in training as in
    live scoring (:func:`lineguard.detectors.scoring.gap_bound_us`).

    Raises
    ------
    ValueError
        If there is no run, the runs' sensor columns differ, or two runs
        overlap in time.
    """
    if not runs:
        raise ValueError("expected at least one recorded run; got none")
    ordered = sorted(runs, key=lambda r: int(r.time_us[0]) if len(r) else 0)
    if len(ordered) == 1:
        return ordered[0]
    first = ordered[0]
    for prev, run in itertools.pairwise(ordered):
        if run.sensors != first.sensors:
            raise ValueError(
                f"{run.path}: expected the sensors {list(first.sensors)} of {first.path}; "
                f"got {list(run.sensors)}"
            )
        if len(prev) and len(run) and int(run.time_us[0]) <= int(prev.time_us[-1]):
            raise ValueError(
                f"{run.path} starts at {utc_from_us(int(run.time_us[0])).isoformat()}, "
                f"before {prev.path} ends ({utc_from_us(int(prev.time_us[-1])).isoformat()}); "
                "expected runs that do not overlap in time"
            )

    def cat(name: str) -> np.ndarray | None:
        parts = [getattr(r, name) for r in ordered]
        if any(p is None for p in parts):
            return None
        return np.concatenate(parts)

    names = [Path(r.path).name for r in ordered]
    label = names[0] if len(names) == 1 else f"{len(names)} runs ({names[0]} .. {names[-1]})"
    return RecordedRun(
        path=Path(label),
        sensors=first.sensors,
        time_us=np.concatenate([r.time_us for r in ordered]),
        values=np.concatenate([r.values for r in ordered]),
        anomaly=cat("anomaly"),
        changepoint=cat("changepoint"),
    )


def train_line_model(
    registry: Registry,
    run: RecordedRun,
    line_id: str,
    *,
    rows: int | None = None,
    config: TrainingConfig | None = None,
    activate: bool = True,
    evaluation: dict[str, Any] | None = None,
) -> ModelBundle:
    """Fit a line's model on normal rows and store it as a new version.

    Parameters
    ----------
    registry : Registry
        Where the new version is written.
    run : RecordedRun
        Recorded telemetry of the line.
    line_id : str
        The production line.
    rows : int, optional
        Train on the first ``rows`` rows only (SKAB's protocol uses 400).
    config : TrainingConfig, optional
        Detector, false-alarm target, holdout and debounce.
    activate : bool
        Make the new version the one workers serve.
    evaluation : dict, optional
        Evaluation report of the candidate against the active version, stored
        in the manifest (see :mod:`lineguard.models.candidate`).
    """
    window = training_rows(run, rows)
    return train_from_rows(
        registry,
        line_id,
        sensors=list(run.sensors),
        time_us=run.time_us[window],
        X=run.values[window],
        source=str(Path(run.path).name),
        config=config,
        activate=activate,
        evaluation=evaluation,
    )


def fit_from_rows(
    sensors: list[str],
    X: np.ndarray,
    config: TrainingConfig | None = None,
    time_us: np.ndarray | None = None,
) -> tuple[Any, float, dict[str, Any]]:
    """Fit and calibrate a pipeline on normal rows, without storing it.

    Returns ``(pipeline, threshold, calibration info)``; deterministic for a
    given ``config.seed``, so the same rows give the same model whatever
    their source (a file or InfluxDB history). With ``time_us`` the model
    learns its gap bound and no trailing window spans a gap in the rows.
    """
    config = config or TrainingConfig()
    checks: bool | SensorChecks = (
        True if config.noise_window is None else SensorChecks(noise_window=config.noise_window)
    )
    return train_pipeline(
        np.asarray(X, dtype=np.float64),
        sensors=list(sensors),
        detector_name=config.detector,
        target_far=config.target_far,
        holdout_fraction=config.holdout_fraction,
        seed=config.seed,
        time_us=time_us,
        sensor_checks=checks,
    )


def train_from_rows(
    registry: Registry,
    line_id: str,
    *,
    sensors: list[str],
    time_us: np.ndarray,
    X: np.ndarray,
    source: str,
    config: TrainingConfig | None = None,
    activate: bool = True,
    evaluation: dict[str, Any] | None = None,
    excluded: list[dict[str, Any]] | None = None,
    fitted: tuple[Any, float, dict[str, Any]] | None = None,
    sensor_change: dict[str, Any] | None = None,
) -> ModelBundle:
    """Fit a line's model on the given normal rows and store a new version.

    Parameters
    ----------
    registry : Registry
        Where the new version is written.
    line_id : str
        The production line.
    sensors : list of str
        Column names of ``X``, in the order the model will expect.
    time_us : ndarray of int64, shape (n,)
        Frame times (UTC microseconds), oldest first.
    X : ndarray of shape (n, len(sensors))
        Raw sensor rows (NaN = missing), known to be normal operation.
    source : str
        Where the rows came from (file name, ``influx:<db>``), for the manifest.
    config : TrainingConfig, optional
        Detector, false-alarm target, holdout and debounce.
    activate : bool
        Make the new version the one workers serve (file marker only; use
        :func:`lineguard.models.announce.activate_and_announce` to also tell
        running workers through Kafka).
    evaluation : dict, optional
        Evaluation report of the candidate against the active version.
    excluded : list of dict, optional
        Time ranges left out of the training window (QA labels), recorded in
        the manifest.
    fitted : tuple, optional
        ``(pipeline, threshold, info)`` from :func:`fit_from_rows` when the
        caller already fitted (e.g. to evaluate before storing).
    sensor_change : dict, optional
        The user said the line's sensor set changes (``from`` version,
        ``removed`` and ``added`` sensors); recorded in the manifest so the
        new version's narrower (or wider) view of the line is never a
        surprise later.
    """
    config = config or TrainingConfig()
    X = np.asarray(X, dtype=np.float64)
    time_us = np.asarray(time_us, dtype=np.int64)
    if X.shape != (len(time_us), len(sensors)):
        raise ValueError(
            f"expected X of shape ({len(time_us)}, {len(sensors)}) matching time_us and "
            f"sensors; got {X.shape}"
        )
    if len(time_us) < TRAINING_DEFAULTS.min_rows:
        raise ValueError(
            f"expected at least {TRAINING_DEFAULTS.min_rows} training rows; got {len(time_us)}"
        )
    pipeline, threshold, info = fitted or fit_from_rows(sensors, X, config, time_us)
    k, n = config.debounce
    envelope: dict[str, Any] = {
        "sensors": list(sensors),
        "threshold": float(threshold),
        "target_far": config.target_far,
        "debounce": {"k": k, "n": n},
        "detector": {
            # The detector trained; "auto" records its choice in "selection".
            "name": info.get("detector", config.detector),
            "requested": config.detector,
            "selection": info.get("selection"),
            "seed": config.seed,
            "params": _params(pipeline),
        },
        "calibration": _jsonable(info),
        "training": {
            "source": source,
            "rows": len(X),
            "start": utc_from_us(int(time_us[0])).isoformat(),
            "end": utc_from_us(int(time_us[-1])).isoformat(),
            "holdout_fraction": config.holdout_fraction,
            "fingerprint": fingerprint(sensors, time_us, X),
            "excluded": excluded or [],
            # Runs the folded calibration judged faulty (far above the other
            # runs' threshold): out of the model and of its threshold.
            "set_aside": [
                {
                    "start": utc_from_us(int(time_us[lo])).isoformat(),
                    "end": utc_from_us(int(time_us[hi - 1])).isoformat(),
                    "rows": int(hi - lo),
                }
                for lo, hi in info.get("calibration_folds_set_aside") or []
            ],
        },
    }
    if sensor_change is not None:
        envelope["training"]["sensor_change"] = sensor_change
    if evaluation is not None:
        envelope["evaluation"] = _jsonable(evaluation)
    bundle = registry.save(line_id, pipeline, envelope)
    if activate:
        registry.activate(line_id, bundle.version)
    return bundle


def _params(pipeline: Any) -> dict[str, Any]:
    """The fitted pipeline's and detector's hyper-parameters, JSON-friendly."""
    out: dict[str, Any] = {"window": getattr(pipeline, "window", None)}
    detector = getattr(pipeline, "detector", None)
    if detector is not None and hasattr(detector, "get_params"):
        out["detector_class"] = type(detector).__name__
        for key, value in detector.get_params(deep=False).items():
            out[key] = (
                value if isinstance(value, (int, float, str, bool, type(None))) else repr(value)
            )
    return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value
