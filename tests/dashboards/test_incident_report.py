"""``lineguard report incident``: one incident from the real pipeline run's
InfluxDB, rendered to PNG."""

from __future__ import annotations

import os
import struct

import numpy as np
import pytest
from click.testing import CliRunner

from lineguard.cli import main
from lineguard.dashboards.incident_report import (
    IncidentData,
    IncidentNotFound,
    load_incident,
    plot_incident,
    rank_contributions,
    render_incident_png,
)
from lineguard.dashboards.reason_marks import HELD
from lineguard.settings import get_settings

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _png_size(path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == PNG_MAGIC, "not a PNG"
    return struct.unpack(">II", header[16:24])


def test_rank_contributions_weights_by_rank_and_sums_to_one() -> None:
    ranking = rank_contributions(["a,b,c", "a,c", "b", ""])
    shares = dict(ranking)
    # a: 3+3, b: 2+3, c: 1+2 -> 6, 5, 3 of 14
    assert [n for n, _ in ranking] == ["a", "b", "c"]
    assert shares["a"] == pytest.approx(6 / 14) and shares["c"] == pytest.approx(3 / 14)
    assert sum(shares.values()) == pytest.approx(1.0)
    assert rank_contributions([]) == []


def _reason_marks(fig) -> dict[str, object]:
    ax = fig.axes[0]  # the score axis
    return {c.get_gid(): c for c in ax.collections if (c.get_gid() or "").startswith("reason:")}


def test_an_alert_a_freeze_check_holds_under_the_threshold_is_marked_as_such() -> None:
    """Ten frames: the score crosses the threshold twice, then a frozen FT2
    holds the alert while the score stays under it; one frame is held by the
    debounce alone. The picture must show the freeze, with its sensor."""
    n = 10
    t0 = 1_700_000_000_000_000
    anomaly = np.array([0, 1, 1, 1, 1, 1, 1, 1, 0, 0], dtype=bool)
    score = np.array([0.5, 2.0, 3.0, 0.4, 0.3, 0.3, 0.2, 0.3, 0.2, 0.2])
    reasons = ["", "score", "score", "freeze", "freeze", "", "freeze", "freeze", "", ""]
    top = ["", "P1,T1", "P1,T1", "FT2,P1", "FT2", "FT2", "FT2,T1", "FT2", "", ""]
    data = IncidentData(
        incident={
            "incident_id": "L-1",
            "line": "L",
            "site": "s",
            "severity": "minor",
            "state": "closed",
            "frames": 7,
            "peak_score": 3.0,
            "threshold": 1.0,
            "reason": "freeze",
            "reason_sensor": "FT2",
            "reasons": "score:2,freeze:4",
        },
        start_us=t0 + 1_000_000,
        end_us=t0 + 7_000_000,
        score_time_us=t0 + np.arange(n) * 1_000_000,
        score=score,
        threshold=np.ones(n),
        anomaly=anomaly,
        top_sensors=top,
        sensor_time_us=np.zeros(0, dtype=np.int64),
        sensors={},
        reasons=reasons,
    )
    fig = plot_incident(data)
    marks = _reason_marks(fig)
    assert set(marks) == {"reason:score", "reason:freeze", "reason:"}
    assert marks["reason:freeze"].get_label() == "freeze (FT2)"
    assert marks["reason:"].get_label() == HELD
    frozen = marks["reason:freeze"].get_offsets()
    assert len(frozen) == 4 and (np.asarray(frozen)[:, 1] < 1.0).all()  # all under the threshold
    assert len(marks["reason:score"].get_offsets()) == 2
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "freeze (FT2)" in legend and "score (P1)" in legend
    assert any("reason freeze (FT2)" in t.get_text() for t in fig.texts)


def test_points_without_reasons_still_draw_their_alert_frames() -> None:
    t0 = 1_700_000_000_000_000
    data = IncidentData(
        incident={"incident_id": "L-1", "line": "L", "severity": "minor"},
        start_us=t0,
        end_us=t0 + 1_000_000,
        score_time_us=t0 + np.arange(3) * 1_000_000,
        score=np.array([2.0, 2.0, 0.1]),
        threshold=np.ones(3),
        anomaly=np.array([1, 1, 0], dtype=bool),
        top_sensors=["a", "a", ""],
        sensor_time_us=np.zeros(0, dtype=np.int64),
        sensors={},
    )
    fig = plot_incident(data)
    assert not _reason_marks(fig)
    assert "alert frames" in [c.get_label() for c in fig.axes[0].collections]


@pytest.mark.integration
def test_a_closed_incident_renders_with_its_sensors_score_and_window(
    dashboard_run, tmp_path
) -> None:
    client = dashboard_run.client
    rows = client.query(
        'SELECT "incident_id", "state" FROM "lineguard_incident" '
        f"WHERE \"line\" = '{dashboard_run.closed_line}' AND \"state\" = 'closed'"
    )
    incident_id = rows[0]["incident_id"]
    data = load_incident(client, incident_id)
    assert data.end_us > data.start_us
    # Score and raw sensors around the incident, before and after it.
    assert data.score_time_us.min() < data.start_us < data.end_us < data.score_time_us.max()
    assert data.anomaly.any() and len(data.sensors) == 8
    assert data.sensor_time_us.size == data.score_time_us.size
    # Its alert frames are drawn by the reasons the worker stored.
    marks = _reason_marks(plot_incident(data))
    stored = {r for r, a in zip(data.reasons, data.anomaly, strict=True) if a}
    assert set(marks) == {f"reason:{r}" for r in stored} and "reason:score" in marks
    assert data.incident["reason"] in stored - {""}

    out = render_incident_png(client, incident_id, tmp_path / "incident.png")
    width, height = _png_size(out)
    assert width >= 1000 and height >= 600
    assert out.stat().st_size > 40_000  # a real chart, not an empty canvas
    keep = os.environ.get("LINEGUARD_KEEP_INCIDENT_PNG")
    if keep:  # to look at it: LINEGUARD_KEEP_INCIDENT_PNG=/tmp/incident.png
        out.replace(keep)

    with pytest.raises(IncidentNotFound, match="no-such-incident"):
        load_incident(client, "no-such-incident")


@pytest.mark.integration
def test_the_cli_renders_the_open_incident(dashboard_run, tmp_path) -> None:
    client = dashboard_run.client
    rows = client.query(
        'SELECT "incident_id" FROM "lineguard_incident" '
        f"WHERE \"line\" = '{dashboard_run.open_line}' AND \"state\" = 'open'"
    )
    env = {
        "LINEGUARD_INFLUX_URL": dashboard_run.settings.influx.url,
        "LINEGUARD_INFLUX_DATABASE": dashboard_run.settings.influx.database,
    }
    png = tmp_path / "open.png"
    get_settings.cache_clear()  # the CLI reads the environment once per process
    result = CliRunner().invoke(
        main, ["report", "incident", rows[0]["incident_id"], "--png", str(png)], env=env
    )
    assert result.exit_code == 0, result.output
    assert png.exists() and png.stat().st_size > 40_000
    assert rows[0]["incident_id"] in result.output

    missing = CliRunner().invoke(
        main, ["report", "incident", "nope", "--png", str(tmp_path / "x.png")], env=env
    )
    get_settings.cache_clear()
    assert missing.exit_code != 0 and "nope" in missing.output
