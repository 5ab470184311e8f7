"""``lineguard report incident``: one incident from the real pipeline run's
InfluxDB, rendered to PNG."""

from __future__ import annotations

import os
import struct

import pytest
from click.testing import CliRunner

from lineguard.cli import main
from lineguard.dashboards.incident_report import (
    IncidentNotFound,
    load_incident,
    rank_contributions,
    render_incident_png,
)
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
