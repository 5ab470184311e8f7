"""Offline training of one line's model, from rows known to be normal.

A line model is fitted on normal operation only: faults are rare and each one
looks different, so the detector learns what normal looks like and the alert
threshold is set from a target false-alarm rate measured on normal rows the
detector did not see (see :mod:`lineguard.detectors.calibration`). No label of
a fault is needed, which is what makes the same procedure work on a new line.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lineguard.detectors.calibration import DEFAULT_TARGET_FAR, train_pipeline
from lineguard.detectors.registry import DEFAULT_DETECTOR
from lineguard.ingest.contract import utc_from_us
from lineguard.ingest.csv_runs import RecordedRun
from lineguard.models.registry import ModelBundle, Registry

__all__ = [
    "DEFAULT_DEBOUNCE",
    "TrainingConfig",
    "fingerprint",
    "train_line_model",
    "training_rows",
]

#: Alert when 3 of the last 5 frames exceed the threshold: one noisy frame
#: never pages anyone, a sustained excursion does within seconds.
DEFAULT_DEBOUNCE = (3, 5)


@dataclass(frozen=True)
class TrainingConfig:
    """How a line model is trained.

    Attributes
    ----------
    detector : str
        Detector name (see :data:`lineguard.detectors.registry.DETECTORS`).
    target_far : float
        Fraction of normal frames allowed above the threshold.
    holdout_fraction : float
        Last fraction of the training rows held back to calibrate the
        threshold.
    debounce : (k, n)
        Alert when k of the last n frames exceed the threshold.
    seed : int
        Seed for stochastic detectors, so retraining is reproducible.
    """

    detector: str = DEFAULT_DETECTOR
    target_far: float = DEFAULT_TARGET_FAR
    holdout_fraction: float = 0.3
    debounce: tuple[int, int] = DEFAULT_DEBOUNCE
    seed: int = 0

    def __post_init__(self) -> None:
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
    if stop < 20:
        raise ValueError(f"{run.path}: expected at least 20 training rows; got {stop}")
    if run.anomaly is not None and run.anomaly[:stop].any():
        first = int(np.flatnonzero(run.anomaly[:stop])[0])
        raise ValueError(
            f"{run.path}: the training rows must be normal operation, but row {first} is "
            f"labelled anomalous; train on fewer rows (e.g. --rows {first})"
        )
    return slice(0, stop)


def train_line_model(
    registry: Registry,
    run: RecordedRun,
    line_id: str,
    *,
    rows: int | None = None,
    config: TrainingConfig | None = None,
    activate: bool = True,
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
    """
    config = config or TrainingConfig()
    window = training_rows(run, rows)
    X = run.values[window]
    time_us = run.time_us[window]
    pipeline, threshold, info = train_pipeline(
        X,
        sensors=list(run.sensors),
        detector_name=config.detector,
        target_far=config.target_far,
        holdout_fraction=config.holdout_fraction,
        seed=config.seed,
    )
    k, n = config.debounce
    envelope: dict[str, Any] = {
        "sensors": list(run.sensors),
        "threshold": float(threshold),
        "target_far": config.target_far,
        "debounce": {"k": k, "n": n},
        "detector": {"name": config.detector, "seed": config.seed},
        "calibration": _jsonable(info),
        "training": {
            "source": str(Path(run.path).name),
            "rows": len(X),
            "start": utc_from_us(int(time_us[0])).isoformat(),
            "end": utc_from_us(int(time_us[-1])).isoformat(),
            "holdout_fraction": config.holdout_fraction,
            "fingerprint": fingerprint(run.sensors, time_us, X),
        },
    }
    bundle = registry.save(line_id, pipeline, envelope)
    if activate:
        registry.activate(line_id, bundle.version)
    return bundle


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
