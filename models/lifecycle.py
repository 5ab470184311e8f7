"""The model lifecycle's calculations: train a candidate (from a file or from
InfluxDB history) with its evaluation against the active version, and
compare two versions' live results per shift.

The CLI (:mod:`lineguard.cli.models`, :mod:`lineguard.cli.train`) only parses options and prints;
everything here takes explicit arguments and returns plain data.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np

from lineguard.contracts import SCORE_MEASUREMENT, TELEMETRY_MEASUREMENT
from lineguard.detectors.calibration import TRAINING_DEFAULTS
from lineguard.errors import MissingSensorsError
from lineguard.influx import InfluxV1Client, quote_ident
from lineguard.ingest.csv_runs import RecordedRun
from lineguard.models.candidate import Scorer, absent_sensors, evaluate_candidate, version_metrics
from lineguard.models.feedback import MAINTENANCE, REAL_DEFECT, frame_labels, read_feedback
from lineguard.models.history import read_history
from lineguard.models.registry import ModelBundle, Registry
from lineguard.models.training import (
    TrainingConfig,
    fit_from_rows,
    train_from_rows,
    training_rows,
)

__all__ = [
    "Candidate",
    "active_scorer",
    "check_sensor_set",
    "compare_versions",
    "sensors_without_values",
    "shift_start",
    "train_candidate_from_influx",
    "train_candidate_from_run",
]

Step = Callable[[str, float], None]


@dataclass(frozen=True)
class Candidate:
    """A trained and stored candidate version with its evaluation report."""

    bundle: ModelBundle
    evaluation: dict[str, Any]
    activated: bool


def active_scorer(registry: Registry, line: str) -> Scorer | None:
    """The line's active version as a :class:`Scorer` (verified), or None."""
    if registry.active_version(line) is None:
        return None
    return Scorer.from_bundle(registry.load(line))


def _store(
    registry: Registry,
    line: str,
    *,
    sensors: list[str],
    time_train: np.ndarray,
    X_train: np.ndarray,
    eval_time: np.ndarray,
    X_eval: np.ndarray,
    labels: np.ndarray | None,
    keep: np.ndarray | None,
    source: str,
    config: TrainingConfig,
    activate: bool | None,
    excluded: list[dict[str, Any]] | None,
    step: Step,
    sensor_change: dict[str, Any] | None = None,
) -> Candidate:
    step("fitting", 0.0)
    fitted = fit_from_rows(sensors, X_train, config, time_train)
    pipeline, threshold, _ = fitted
    step("evaluating against the active version", 0.5)
    k, n = config.debounce
    active = active_scorer(registry, line)
    # "self": the version this manifest describes (assigned when it is stored).
    candidate = Scorer("self", pipeline, list(sensors), float(threshold), (k, n))
    report = evaluate_candidate(
        candidate, active, list(sensors), eval_time, X_eval, labels, keep, source
    )
    # A line's first model is activated; after that, promotion is explicit.
    do_activate = (active is None) if activate is None else activate
    bundle = train_from_rows(
        registry,
        line,
        sensors=list(sensors),
        time_us=time_train,
        X=X_train,
        source=source,
        config=config,
        activate=False,
        evaluation=report,
        excluded=excluded,
        fitted=fitted,
        sensor_change=sensor_change,
    )
    report = {**report, "candidate": {**report["candidate"], "version": bundle.version}}
    step("stored", 1.0)
    return Candidate(bundle=bundle, evaluation=report, activated=do_activate)


def check_sensor_set(
    registry: Registry,
    line: str,
    sensors: list[str],
    X: np.ndarray,
    source: str,
    sensors_change: bool = False,
) -> dict[str, Any] | None:
    """Refuse training data that lacks a sensor of the line's active model.

    A file without (or with an empty) ``Pressure`` column would otherwise
    train a model that never watches pressure, stored as a routine new
    version; and the active model, evaluated on the same data, would see
    pressure imputed on every frame and alert on most of them. Only the user
    knows whether the line's sensors really changed.

    Parameters
    ----------
    registry, line :
        Where the line's active model is.
    sensors, X :
        The training data's columns and rows.
    source : str
        File name or ``influx:<db>``, for the message.
    sensors_change : bool
        The user said the sensor set changes (``--sensors-change``).

    Returns
    -------
    dict or None
        What changed (``from``, ``removed``, ``added``) for the manifest, when
        the set differs and the user said so; None when nothing changed or
        the line has no active model.

    Raises
    ------
    MissingSensorsError
        When the data lacks an active sensor and ``sensors_change`` is False.
    """
    active = registry.active_version(line)
    if active is None:
        return None
    expected = list(registry.manifest(line, active)["sensors"])
    removed = absent_sensors(expected, sensors, X)
    present = [s for s in sensors if s not in absent_sensors([s], sensors, X)]
    added = [s for s in present if s not in expected]
    if not removed and not added:
        return None
    if removed and not sensors_change:
        raise MissingSensorsError(
            f"{source}: expected every sensor of line {line}'s active model {active}; "
            f"missing {', '.join(removed)} (no column or no reading). If the line's sensors "
            "really changed, train again with --sensors-change",
            tuple(removed),
        )
    return {"from": active, "removed": removed, "added": added}


def train_candidate_from_run(
    registry: Registry,
    run: RecordedRun,
    line: str,
    *,
    rows: int | None = None,
    config: TrainingConfig | None = None,
    activate: bool | None = None,
    step: Step | None = None,
    sensors_change: bool = False,
) -> Candidate:
    """Train on a recorded run's first ``rows`` rows; evaluate on the rest.

    The evaluation frames are the rows after the training rows (with the
    file's labels) when there are at least ``TRAINING_DEFAULTS.min_rows`` of
    them, else the whole run.
    ``activate`` None activates only a line's first model. The caller
    activates (and announces) when ``Candidate.activated`` is set. A run
    without a sensor of the active model is refused unless
    ``sensors_change`` (see :func:`check_sensor_set`).
    """
    config = config or TrainingConfig()
    window = training_rows(run, rows)
    change = check_sensor_set(
        registry, line, list(run.sensors), run.values[window], Path(run.path).name, sensors_change
    )
    enough = len(run) - window.stop >= TRAINING_DEFAULTS.min_rows
    test = slice(window.stop, len(run)) if enough else slice(0, len(run))
    labels = run.anomaly[test].astype(bool) if run.anomaly is not None else None
    return _store(
        registry,
        line,
        sensors=list(run.sensors),
        time_train=run.time_us[window],
        X_train=run.values[window],
        eval_time=run.time_us[test],
        X_eval=run.values[test],
        labels=labels,
        keep=None,
        source=str(Path(run.path).name),
        config=config,
        activate=activate,
        excluded=None,
        step=step or (lambda _s, _f: None),
        sensor_change=change,
    )


def train_candidate_from_influx(
    registry: Registry,
    client: InfluxV1Client,
    line: str,
    start_us: int,
    end_us: int,
    *,
    config: TrainingConfig | None = None,
    activate: bool | None = None,
    progress: Callable[[int, int], None] | None = None,
    step: Step | None = None,
    sensors_change: bool = False,
) -> Candidate:
    """Train on a line's archived telemetry between two times.

    Rows under ``maintenance`` or ``real_defect`` QA labels are left out of
    training; the whole window (QA labels as ground truth, maintenance
    frames not counted) is the evaluation data for both versions. The
    sensor order is the active model's, so the line's contract is kept.
    """
    config = config or TrainingConfig()
    active_version = registry.active_version(line)
    # The active model's sensors, in its order, so the line's contract is
    # kept; with sensors_change, whatever the line sends now.
    sensors = registry.manifest(line, active_version)["sensors"] if active_version else None
    if sensors_change:
        sensors = None
    history = read_history(client, line, start_us, end_us, sensors=sensors, progress=progress)
    run = history.run
    mask = history.training_mask
    source = f"influx:{client.settings.database}"
    change = check_sensor_set(
        registry, line, list(run.sensors), run.values[mask], source, sensors_change
    )
    if mask.sum() < TRAINING_DEFAULTS.min_rows:
        raise ValueError(
            f"expected at least {TRAINING_DEFAULTS.min_rows} normal rows for line {line!r} in "
            f"the window; got {int(mask.sum())} of {len(run)} after leaving out QA-labelled ranges"
        )
    return _store(
        registry,
        line,
        sensors=list(run.sensors),
        time_train=run.time_us[mask],
        X_train=run.values[mask],
        eval_time=run.time_us,
        X_eval=run.values,
        labels=history.labels == REAL_DEFECT,
        keep=history.labels != MAINTENANCE,
        source=source,
        config=config,
        activate=activate,
        excluded=history.excluded,
        step=step or (lambda _s, _f: None),
        sensor_change=change,
    )


# -- live comparison per shift ------------------------------------------------
def shift_start(time_us: np.ndarray, hours: float, origin_hour: float) -> np.ndarray:
    """Start (UTC microseconds) of the shift each frame falls in.

    Shifts are ``hours`` long and aligned on ``origin_hour`` past midnight
    UTC (e.g. 8-hour shifts from 06:00: 06-14, 14-22, 22-06).
    """
    length = round(hours * 3600e6)
    origin = round(origin_hour * 3600e6)
    t = np.asarray(time_us, dtype=np.int64)
    return (t - origin) // length * length + origin


def _version_frames(
    client: InfluxV1Client, line: str, version: str, start_us: int | None, end_us: int | None
) -> dict[int, bool]:
    where = f"\"line\" = '{line}' AND \"model_version\" = '{version}'"
    if start_us is not None:
        where += f" AND time >= {int(start_us)}u"
    if end_us is not None:
        where += f" AND time <= {int(end_us)}u"
    rows = client.query(f'SELECT "anomaly" FROM "{SCORE_MEASUREMENT}" WHERE {where}', epoch="u")
    return {int(r["time"]): bool(r["anomaly"]) for r in rows}


def compare_versions(
    client: InfluxV1Client,
    line: str,
    a: str,
    b: str,
    *,
    start_us: int | None = None,
    end_us: int | None = None,
    shift_hours: float = 8.0,
    shift_origin_hour: float = 6.0,
) -> dict[str, Any]:
    """Agreement, alert rate and false-alarm rate of two versions, per shift.

    Both versions' ``lineguard_score`` points (active or shadow) are read for
    the frames both scored; QA labels give the ground truth (``real_defect``
    frames are positives, ``maintenance`` frames are left out, all other
    frames count as normal, so the false-alarm rate is the share of normal
    frames alerted, in %).

    Returns
    -------
    dict
        ``shifts``: one entry per shift with ``start``, ``frames``,
        ``agreement_pct`` and per-version metrics; ``total``: the same over
        the whole window; ``labels``: how many frames QA labelled.
    """
    fa = _version_frames(client, line, a, start_us, end_us)
    fb = _version_frames(client, line, b, start_us, end_us)
    common = np.array(sorted(set(fa) & set(fb)), dtype=np.int64)
    if common.size == 0:
        raise LookupError(
            f"line {line!r}: no frame scored by both {a} ({len(fa)} frames) and {b} "
            f"({len(fb)} frames) in the window"
        )
    flags_a = np.array([fa[t] for t in common.tolist()])
    flags_b = np.array([fb[t] for t in common.tolist()])
    feedback = read_feedback(client, line, int(common[0]), int(common[-1]))
    codes = frame_labels(common, feedback)
    labels = codes == REAL_DEFECT
    keep = codes != MAINTENANCE

    def block(sel: np.ndarray) -> dict[str, Any]:
        k = keep & sel
        agree = (flags_a == flags_b)[k]
        return {
            "frames": int(k.sum()),
            "agreement_pct": round(100.0 * agree.mean(), 3) if agree.size else None,
            a: version_metrics(flags_a[sel], labels[sel], keep[sel]),
            b: version_metrics(flags_b[sel], labels[sel], keep[sel]),
        }

    starts = shift_start(common, shift_hours, shift_origin_hour)
    shifts = []
    for s in np.unique(starts).tolist():
        entry = block(starts == s)
        entry["start"] = datetime.fromtimestamp(s / 1e6, timezone.utc).isoformat()
        entry["end"] = (
            datetime.fromtimestamp(s / 1e6, timezone.utc) + timedelta(hours=shift_hours)
        ).isoformat()
        shifts.append(entry)
    return {
        "line": line,
        "versions": [a, b],
        "window": {"start_us": int(common[0]), "end_us": int(common[-1])},
        "shift_hours": shift_hours,
        "labels": {
            "ranges": len(feedback),
            "defect_frames": int(labels.sum()),
            "maintenance_frames": int((~keep).sum()),
        },
        "shifts": shifts,
        "total": block(np.ones(common.size, bool)),
    }


def sensors_without_values(
    client: InfluxV1Client, line: str, sensors: list[str], start_us: int, end_us: int
) -> list[str] | None:
    """The ``sensors`` that have no archived reading of ``line`` in the window.

    The live scores of a model whose sensor never arrived were computed with
    that sensor imputed on every frame, so a comparison of such a version
    must say so. Reads the archive (``lineguard_telemetry``).

    Returns
    -------
    list of str or None
        The sensors without a value, in the given order; None when the
        archive holds nothing of the line in the window (no archive worker:
        unknown, not "all missing").
    """
    line_lit = "'" + line.replace("\\", "\\\\").replace("'", "\\'") + "'"
    rows = client.query(
        f'SELECT COUNT(*) FROM {quote_ident(TELEMETRY_MEASUREMENT)} WHERE "line" = {line_lit} '
        f"AND time >= {int(start_us)}u AND time <= {int(end_us)}u",
        epoch="u",
    )
    if not rows:
        return None
    counts = rows[0]
    return [s for s in sensors if not counts.get(f"count_{s}")]
