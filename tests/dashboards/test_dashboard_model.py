"""The committed dashboard JSON against the code and Grafana's model (no servers)."""

from __future__ import annotations

import copy
import json

import pytest

from lineguard.dashboards.generate import JSON_DIR, dashboard_json, render, stale_files
from lineguard.dashboards.grafana import (
    check_model,
    dashboard_queries,
    grafana_interval,
    interpolate,
    parse_duration_ms,
)
from lineguard.dashboards.model import DATASOURCE_UID, SCHEMA_VERSION

UIDS = [DATASOURCE_UID]


def test_committed_json_is_what_the_code_generates() -> None:
    assert stale_files() == [], "run: lineguard dashboards generate"
    for name, model in dashboard_json().items():
        assert json.loads((JSON_DIR / f"{name}.json").read_text()) == model
        assert render(model) == render(json.loads(render(model)))  # stable text


@pytest.mark.parametrize("name", sorted(dashboard_json()))
def test_dashboards_follow_grafanas_model(name) -> None:
    model = dashboard_json()[name]
    assert check_model(model, UIDS) == []
    assert model["schemaVersion"] == SCHEMA_VERSION
    names = [v["name"] for v in model["templating"]["list"]]
    assert {"datasource", "site", "line"} <= set(names)
    for query in dashboard_queries(model):
        assert query.query.strip(), query
        text = query.query.upper()
        # InfluxQL only: no Flux, no SQL-only syntax.
        assert text.startswith(("SELECT ", "SHOW ")), query
        assert "|>" not in query.query
        if query.kind in ("panel", "annotation") and "GROUP BY TIME(" in text:
            assert "$timeFilter" in query.query or "${__to}" in query.query


def test_check_model_catches_what_grafana_would_reject() -> None:
    model = dashboard_json()["operations"]
    broken = copy.deepcopy(model)
    broken["panels"][1]["id"] = broken["panels"][0]["id"]
    broken["panels"][2]["gridPos"] = dict(broken["panels"][3]["gridPos"])
    broken["panels"][4]["datasource"] = {"type": "influxdb", "uid": "nope"}
    broken["panels"][5]["targets"][0]["query"] = " "
    broken["panels"][6]["gridPos"]["x"] = 20  # w=12 -> past column 24
    broken["schemaVersion"] = 16
    problems = "\n".join(check_model(broken, UIDS))
    assert "unique integer panel ids" in problems
    assert "overlap" in problems
    assert "'nope' is not one of" in problems
    assert "is empty" in problems
    assert "outside the 24-column grid" in problems
    assert "schemaVersion" in problems
    unresolved = copy.deepcopy(model)
    unresolved["templating"]["list"] = [
        v for v in unresolved["templating"]["list"] if v["name"] != "datasource"
    ]
    assert any("names no datasource variable" in p for p in check_model(unresolved, UIDS))
    assert any("defaults to" in p for p in check_model(model, ["other-uid"]))


def test_interpolate_substitutes_like_grafana() -> None:
    q = (
        'SELECT mean("x") FROM "m" WHERE "line" =~ /^$line$/ AND "site" =~ /^${site}$/ '
        "AND $timeFilter AND time > ${__to}ms - 5m GROUP BY time($__interval) LIMIT $__interval_ms"
    )
    out = interpolate(
        q,
        from_ms=1000,
        to_ms=5000,
        interval_ms=10_000,
        variables={"line": ["a/1", "b.2"], "site": ["s1"]},
        multi={"line", "site"},
    )
    assert '"line" =~ /^(a\\/1|b\\.2)$/' in out
    assert '"site" =~ /^s1$/' in out
    assert "time >= 1000ms and time <= 5000ms" in out
    assert "time > 5000ms - 5m" in out
    assert "GROUP BY time(10s)" in out and "LIMIT 10000" in out
    with pytest.raises(KeyError, match="unknown"):
        interpolate("SELECT $unknown", from_ms=0, to_ms=1, interval_ms=1, variables={})


def test_grafana_interval_and_durations() -> None:
    assert grafana_interval(3_600_000) == 10_000  # min interval wins
    assert grafana_interval(7 * 86_400_000) == 600_000  # 7 d / 1000 points ~ 10 min
    assert grafana_interval(3_600_000, min_interval_ms=1000) == 5000
    assert parse_duration_ms("24h") == 86_400_000
    with pytest.raises(ValueError, match="duration"):
        parse_duration_ms("yesterday")
