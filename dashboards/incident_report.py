"""One incident as a picture, for people who don't open Grafana.

``lineguard report incident ID --png FILE`` reads the incident from
``lineguard_incident``, the line's score and threshold from
``lineguard_score`` and its raw sensors from ``lineguard_telemetry`` around
the incident, and renders one PNG for a QA e-mail or a deviation record:

* a header: line, site, severity, start and end (UTC), duration, peak score
  against threshold, model version;
* score against threshold, with the incident window shaded and the alert
  frames marked by their reason (the score, or the sensor check that fired,
  with its sensor in the legend: :mod:`lineguard.dashboards.reason_marks`),
  so an alert a check holds under the threshold is visible as such;
* the contributing sensors ranked (how often each was among a frame's top
  contributors during the incident, weighted 3/2/1 by rank, as the
  incident tracker ranks them);
* the top-ranked sensors' raw values in their own units, same time axis.

Reading (:func:`load_incident`) is separate from drawing
(:func:`plot_incident`), which takes plain arrays.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from lineguard.contracts import (
    INCIDENT_MEASUREMENT,
    REASON_FIELD,
    SCORE_MEASUREMENT,
    TELEMETRY_MEASUREMENT,
)
from lineguard.dashboards.reason_marks import mark_reasons
from lineguard.errors import LineGuardError
from lineguard.extras import require
from lineguard.influx import InfluxV1Client

__all__ = [
    "IncidentData",
    "IncidentNotFound",
    "load_incident",
    "plot_incident",
    "rank_contributions",
    "render_incident_png",
]

INCIDENT = INCIDENT_MEASUREMENT
SCORE = SCORE_MEASUREMENT
TELEMETRY = TELEMETRY_MEASUREMENT
# Context shown before and after the incident: at least this, or half its length.
MIN_CONTEXT_S = 120.0
SENSOR_PANELS = 4
_RANK_WEIGHTS = (3.0, 2.0, 1.0)


class IncidentNotFound(LineGuardError, LookupError):
    """No incident with that id in InfluxDB."""


@dataclass
class IncidentData:
    """Everything the picture shows, as plain values and arrays (times in µs)."""

    incident: dict[str, Any]
    start_us: int
    end_us: int
    score_time_us: np.ndarray
    score: np.ndarray
    threshold: np.ndarray
    anomaly: np.ndarray
    top_sensors: list[str]
    sensor_time_us: np.ndarray
    sensors: dict[str, np.ndarray]
    #: Each score frame's reason ("" where it does not exceed); empty: unknown
    #: (points written before the reason existed), all alert frames drawn alike.
    reasons: list[str] = field(default_factory=list)


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def rank_contributions(top_sensors: Sequence[str]) -> list[tuple[str, float]]:
    """Sensors ranked by their share of contribution over alert frames.

    Parameters
    ----------
    top_sensors : sequence of str
        Each alert frame's top contributing sensors, comma-separated, most
        contributing first (the ``top_sensors`` field).

    Returns
    -------
    list of (sensor, share)
        Shares sum to 1; most contributing first, ties by name.
    """
    weights: Counter[str] = Counter()
    for entry in top_sensors:
        for rank, name in enumerate(s for s in (entry or "").split(",") if s):
            if rank < len(_RANK_WEIGHTS):
                weights[name] += _RANK_WEIGHTS[rank]
    total = sum(weights.values())
    if not total:
        return []
    return sorted(((n, w / total) for n, w in weights.items()), key=lambda p: (-p[1], p[0]))


def load_incident(client: InfluxV1Client, incident_id: str) -> IncidentData:
    """Read one incident and its surroundings from InfluxDB.

    Raises
    ------
    IncidentNotFound
        When no ``lineguard_incident`` point has that ``incident_id``.
    """
    rows = client.query(
        f'SELECT * FROM "{INCIDENT}" WHERE "incident_id" = {_quote(incident_id)}', epoch="u"
    )
    if not rows:
        raise IncidentNotFound(
            f"expected an incident {incident_id!r} in {INCIDENT} of database "
            f"{client.settings.database!r}; found none"
        )
    incident = rows[-1]
    start_us = int(incident["time"])
    end_us = int(incident.get("end_us") or start_us)
    context_us = int(max(MIN_CONTEXT_S, 0.5 * (end_us - start_us) / 1e6) * 1e6)
    window = f"time >= {start_us - context_us}u AND time <= {end_us + context_us}u"
    line = f'"line" = {_quote(str(incident["line"]))}'
    scores = client.query(
        f'SELECT "score", "threshold", "anomaly", "top_sensors", "{REASON_FIELD}" FROM "{SCORE}" '
        f"WHERE {line} AND \"role\" != 'shadow' AND {window}",
        epoch="u",
    )
    telemetry = client.query(f'SELECT * FROM "{TELEMETRY}" WHERE {line} AND {window}', epoch="u")
    skip = {"time", "line", "site"}
    names = sorted({k for r in telemetry for k in r if k not in skip})
    return IncidentData(
        incident=incident,
        start_us=start_us,
        end_us=end_us,
        score_time_us=np.array([r["time"] for r in scores], dtype=np.int64),
        score=np.array([r.get("score", np.nan) for r in scores], dtype=float),
        threshold=np.array([r.get("threshold", np.nan) for r in scores], dtype=float),
        anomaly=np.array([bool(r.get("anomaly")) for r in scores], dtype=bool),
        top_sensors=[r.get("top_sensors") or "" for r in scores],
        sensor_time_us=np.array([r["time"] for r in telemetry], dtype=np.int64),
        sensors={
            n: np.array([np.nan if r.get(n) is None else r[n] for r in telemetry], dtype=float)
            for n in names
        },
        reasons=[r.get(REASON_FIELD) or "" for r in scores],
    )


def _dates(time_us: np.ndarray) -> np.ndarray:
    return (np.asarray(time_us, dtype=np.int64) // 1000).astype("datetime64[ms]")


def _utc(time_us: int) -> str:
    return datetime.fromtimestamp(time_us / 1e6, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


SEVERITY_COLOURS = {"minor": "#d4a017", "major": "#e8710a", "critical": "#c5221f"}


def plot_incident(data: IncidentData) -> Any:
    """Draw the incident; returns a matplotlib Figure (nothing is written)."""
    matplotlib = require("matplotlib", "reports")
    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    inc = data.incident
    in_window = (data.score_time_us >= data.start_us) & (data.score_time_us <= data.end_us)
    alert_tops = [
        t for t, a, w in zip(data.top_sensors, data.anomaly, in_window, strict=True) if a and w
    ]
    ranking = rank_contributions(alert_tops) or rank_contributions(
        str(inc.get("top_sensors") or "").split(",")
    )
    shown = [name for name, _ in ranking if name in data.sensors][:SENSOR_PANELS]

    fig = plt.figure(figsize=(12, 3.2 + 1.7 * max(len(shown), 1)), dpi=110)
    grid = fig.add_gridspec(
        1 + max(len(shown), 1),
        2,
        width_ratios=(3.4, 1),
        height_ratios=[2.2] + [1.0] * max(len(shown), 1),
        hspace=0.15,
        wspace=0.42,
    )
    severity = str(inc.get("severity", "?"))
    colour = SEVERITY_COLOURS.get(severity, "#c5221f")
    duration = float(inc.get("duration_s") or (data.end_us - data.start_us) / 1e6)
    fig.suptitle(
        f"Incident {inc.get('incident_id')}  —  line {inc.get('line')}, site {inc.get('site')}",
        x=0.02,
        ha="left",
        fontsize=13,
        fontweight="bold",
    )
    fig.text(
        0.02,
        0.945,
        f"{severity.upper()} ({inc.get('state')})   {_utc(data.start_us)} → {_utc(data.end_us)}"
        f"   ({duration:.0f} s, {inc.get('frames')} alert frames)\n"
        f"peak score {float(inc.get('peak_score', np.nan)):.3g} vs threshold "
        f"{float(inc.get('threshold', np.nan)):.3g}   model {inc.get('model_version')}"
        + (
            f"   reason {inc[REASON_FIELD]}"
            + (f" ({inc['reason_sensor']})" if inc.get("reason_sensor") else "")
            + (f", frames {inc['reasons']}" if inc.get("reasons") else "")
            if inc.get(REASON_FIELD)
            else ""
        ),
        fontsize=9.5,
        va="top",
        color="#333333",
    )
    fig.text(
        0.985,
        0.965,
        severity.upper(),
        ha="right",
        color="white",
        fontsize=11,
        fontweight="bold",
        bbox={"facecolor": colour, "edgecolor": "none", "pad": 4},
    )

    start, end = _dates(np.array([data.start_us, data.end_us]))
    ax_score = fig.add_subplot(grid[0, 0])
    t = _dates(data.score_time_us)
    ax_score.plot(t, data.score, color="#1a73e8", lw=1.0, label="score")
    ax_score.plot(t, data.threshold, color="#c5221f", lw=1.4, ls="--", label="threshold")
    if data.anomaly.any() and len(data.reasons) == len(data.anomaly):
        mark_reasons(ax_score, t, data.score, data.anomaly, data.reasons, data.top_sensors)
    elif data.anomaly.any():
        ax_score.scatter(
            t[data.anomaly],
            data.score[data.anomaly],
            s=4,
            color=colour,
            zorder=3,
            label="alert frames",
        )
    ax_score.axvspan(start, end, color=colour, alpha=0.15, lw=0, label="incident")
    finite = data.score[np.isfinite(data.score)]
    if finite.size and finite.max() > 20 * np.nanmedian(data.threshold):
        ax_score.set_yscale("log")  # a huge peak would flatten the threshold crossing
    ax_score.set_ylabel("anomaly score")
    ax_score.legend(loc="upper left", fontsize=8, ncol=4, frameon=False)
    ax_score.grid(alpha=0.3)

    ax_rank = fig.add_subplot(grid[:, 1])
    if ranking:
        names = [n for n, _ in ranking][:8][::-1]
        shares = [s for _, s in ranking][:8][::-1]
        bars = ax_rank.barh(names, shares, color=["#9aa0a6"] * len(names))
        for bar, name in zip(bars, names, strict=True):
            if name in shown:
                bar.set_color(colour)
        for bar, share in zip(bars, shares, strict=True):
            ax_rank.text(
                bar.get_width(),
                bar.get_y() + bar.get_height() / 2,
                f" {share:.0%}",
                va="center",
                fontsize=8,
            )
        ax_rank.set_xlim(0, max(shares) * 1.3)
    ax_rank.set_title("contributing sensors\n(share over alert frames)", fontsize=9.5)
    ax_rank.tick_params(axis="y", labelsize=8.5)
    ax_rank.tick_params(axis="x", labelsize=8)
    ax_rank.xaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:.0%}"))

    ts = _dates(data.sensor_time_us)
    axes = [ax_score]
    for i, name in enumerate(shown or [None]):
        ax = fig.add_subplot(grid[1 + i, 0], sharex=ax_score)
        axes.append(ax)
        if name is not None:
            ax.plot(ts, data.sensors[name], color="#3c4043", lw=0.9)
            ax.text(
                0.005,
                0.93,
                name,
                transform=ax.transAxes,
                va="top",
                fontsize=8.5,
                fontweight="bold",
                bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 1},
            )
        else:
            ax.text(
                0.5,
                0.5,
                "no raw telemetry archived for this window",
                ha="center",
                va="center",
                transform=ax.transAxes,
                color="#777777",
            )
        ax.axvspan(start, end, color=colour, alpha=0.15, lw=0)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=8)
    for ax in axes[:-1]:
        ax.tick_params(labelbottom=False)
    axes[-1].xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S"))
    axes[-1].set_xlabel("time (UTC)")
    fig.subplots_adjust(left=0.06, right=0.97, top=0.86, bottom=0.07)
    return fig


def render_incident_png(client: InfluxV1Client, incident_id: str, path: Path) -> Path:
    """Load an incident from InfluxDB and write its picture as a PNG."""
    plt = require("matplotlib.pyplot", "reports")

    fig = plot_incident(load_incident(client, incident_id))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    plt.close(fig)
    return path
