"""Every query of every dashboard, run against the real InfluxDB after a real
pipeline run, with Grafana's macros substituted as Grafana would.

Variable queries run first and give the values the panels are run with
(chained: ``line`` is listed for the selected sites), exactly as a browser
opening the dashboard. Repeated panels run once per value of their
variable. Each query must return rows with every column the panel reads,
and each of those columns must hold at least one value.
"""

from __future__ import annotations

from typing import Any

import pytest

from lineguard.dashboards.definitions import all_dashboards
from lineguard.dashboards.generate import dashboard_json
from lineguard.dashboards.grafana import (
    DashboardQuery,
    dashboard_queries,
    grafana_interval,
    interpolate,
    parse_duration_ms,
)

pytestmark = pytest.mark.integration

RANGE_MS = 3_600_000  # the test views the last hour: the whole run


def _run(client, q: str) -> list[dict[str, Any]]:
    # Grafana asks InfluxDB for epoch milliseconds.
    return client.query(q, epoch="ms")


def _assert_columns(rows: list[dict[str, Any]], columns: tuple[str, ...], what: str) -> None:
    assert rows, f"{what}: no data"
    for column in columns:
        present = [r for r in rows if column in r]
        assert present, f"{what}: no column {column!r}; got {sorted(rows[0])}"
        assert any(r[column] is not None for r in present), f"{what}: {column!r} is always null"


def _variable_values(client, dashboard: dict, base: dict[str, list[str]], ranges: dict) -> dict:
    """Run the variable queries in order, as Grafana does when it loads."""
    values: dict[str, list[str]] = dict(base)
    multi = {v["name"] for v in dashboard["templating"]["list"] if v.get("multi")}
    for variable in dashboard["templating"]["list"]:
        if variable["type"] != "query":
            continue
        q = interpolate(variable["query"], variables=values, multi=multi, **ranges)
        rows = _run(client, q)
        column = "fieldKey" if q.upper().startswith("SHOW FIELD KEYS") else "value"
        _assert_columns(rows, (column,), f"variable {variable['name']}: {q}")
        values[variable["name"]] = sorted({r[column] for r in rows})
    return values


def test_every_dashboard_query_returns_the_columns_its_panel_uses(
    dashboard_run, record_property
) -> None:
    client = dashboard_run.client
    to_ms = dashboard_run.view_end_ms()
    ranges = {"from_ms": to_ms - RANGE_MS, "to_ms": to_ms, "interval_ms": 0}
    ranges["interval_ms"] = grafana_interval(RANGE_MS)
    columns_by_dashboard = {name: d.columns() for name, d in all_dashboards().items()}
    annotations_by_dashboard = {
        name: {a.name: a.columns for a in d.annotations} for name, d in all_dashboards().items()
    }
    executed: dict[str, int] = {}
    for name, dashboard in dashboard_json().items():
        count = 0
        values = _variable_values(client, dashboard, {}, ranges)
        count += sum(1 for q in dashboard_queries(dashboard) if q.kind == "variable")
        assert set(values["line"]) >= set(dashboard_run.lines) or name == "line-drilldown"
        multi = {v["name"] for v in dashboard["templating"]["list"] if v.get("multi")}
        if name == "line-drilldown":
            # A single-line dashboard: viewed for the line with an open incident.
            assert set(values["line"]) == {
                line for line, site in dashboard_run.lines.items() if site in values["site"]
            }
            values["line"] = [dashboard_run.open_line]
        for query in dashboard_queries(dashboard):
            if query.kind == "variable":
                continue
            for panel_values in _repeats(query, values):
                q = _interpolate(query, panel_values, multi, ranges)
                rows = _run(client, q)
                if query.kind == "annotation":
                    wanted = ("time", *annotations_by_dashboard[name][query.where])
                else:
                    wanted = columns_by_dashboard[name][(query.panel_id, query.ref_id)]
                _assert_columns(rows, wanted, f"{name} {query.kind} {query.where!r}: {q}")
                count += 1
        executed[name] = count
    total = sum(executed.values())
    record_property("dashboard_queries_executed", total)
    print(f"\ndashboard queries executed against InfluxDB: {total} {executed}")
    # Every query ran (repeated panels once per sensor): none was skipped.
    static = sum(len(list(dashboard_queries(d))) for d in dashboard_json().values())
    assert total >= static


def _repeats(query: DashboardQuery, values: dict[str, list[str]]):
    if not query.repeat:
        yield values
        return
    assert values[query.repeat], f"panel {query.where!r} repeats over no {query.repeat}"
    for value in values[query.repeat]:
        yield {**values, query.repeat: [value]}


def _interpolate(query: DashboardQuery, values, multi, ranges) -> str:
    ranges = dict(ranges)
    if query.time_from:
        ranges["from_ms"] = ranges["to_ms"] - parse_duration_ms(query.time_from)
        ranges["interval_ms"] = grafana_interval(ranges["to_ms"] - ranges["from_ms"])
    return interpolate(query.query, variables=values, multi=multi, **ranges)


def test_overview_counts_match_an_offline_scoring_of_the_same_frames(dashboard_run) -> None:
    """The dashboards show what happened: the overview's counts match the run."""
    client = dashboard_run.client
    to_ms = dashboard_run.view_end_ms()
    ranges = {"from_ms": to_ms - RANGE_MS, "to_ms": to_ms, "interval_ms": 10_000}
    overview = dashboard_json()["plant-overview"]
    values = {
        "site": sorted(set(dashboard_run.lines.values())),
        "line": sorted(dashboard_run.lines),
    }
    by_title = {q.where: q for q in dashboard_queries(overview) if q.kind == "panel"}
    q = by_title["Lines in alert"]
    rows = _run(client, _interpolate(q, values, {"site", "line"}, ranges))
    assert rows[0]["lines"] == dashboard_run.lines_in_alert >= 1
    q = by_title["Open incidents"]
    rows = _run(client, _interpolate(q, values, {"site", "line"}, ranges))
    assert rows[0]["open"] == dashboard_run.open_incidents >= 1
    q = by_title["Incidents (24 h)"]
    rows = _run(client, _interpolate(q, values, {"site", "line"}, ranges))
    assert rows[0]["incidents"] == sum(dashboard_run.incidents.values())
    q = by_title["Lines reporting (last 5 min)"]
    rows = _run(client, _interpolate(q, values, {"site", "line"}, ranges))
    assert rows[0]["lines"] == 2
