"""What Grafana does with a dashboard's queries, and checks of its JSON model.

Pure functions, no I/O: the tests use them to run every panel, annotation
and variable query against a real InfluxDB exactly as Grafana would send it,
and ``lineguard dashboards push`` validates before it uploads.

Macro substitution follows Grafana's InfluxDB (InfluxQL) datasource:

* ``$timeFilter`` -> ``time >= <from>ms and time <= <to>ms``;
* ``$__interval`` / ``$interval`` -> the group-by interval Grafana derives
  from the range and the panel width, never below the datasource's minimum
  (10 s by default for InfluxDB), rounded to a "nice" step;
  ``$__interval_ms`` the same in milliseconds;
* ``$__from`` / ``$__to`` (and ``${__from}``/``${__to}``) -> epoch ms;
* ``$var`` / ``${var}`` -> the variable's value; multi-value and "All"
  variables become a regex alternation ``(a|b)`` of regex-escaped values
  (the dashboards use them as ``=~ /^$var$/``);
* a panel's ``timeFrom`` (``"24h"``) replaces the range's start.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "DashboardQuery",
    "check_model",
    "dashboard_queries",
    "grafana_interval",
    "interpolate",
    "parse_duration_ms",
]

_DURATION = re.compile(r"^(\d+)(ms|s|m|h|d|w|y)$")
_UNIT_MS = {
    "ms": 1,
    "s": 1000,
    "m": 60_000,
    "h": 3_600_000,
    "d": 86_400_000,
    "w": 604_800_000,
    "y": 31_536_000_000,
}
# Grafana's "nice" interval steps (kbn.roundInterval), as (upper bound, step) in ms.
_ROUND_STEPS: tuple[tuple[int, int], ...] = (
    (15, 10),
    (35, 20),
    (75, 50),
    (150, 100),
    (350, 200),
    (750, 500),
    (1500, 1000),
    (3500, 2000),
    (7500, 5000),
    (12500, 10000),
    (17500, 15000),
    (25000, 20000),
    (45000, 30000),
    (90000, 60000),
    (210000, 120000),
    (450000, 300000),
    (750000, 600000),
    (1050000, 900000),
    (1500000, 1200000),
    (2700000, 1800000),
    (5400000, 3600000),
    (9000000, 7200000),
    (16200000, 10800000),
    (32400000, 21600000),
    (86400000, 43200000),
    (604800000, 86400000),
    (1814400000, 604800000),
    (3628800000, 2592000000),
)


def parse_duration_ms(text: str) -> int:
    """``"10s"`` -> 10000 (Grafana's duration syntax, one unit)."""
    match = _DURATION.match(text.strip())
    if match is None:
        raise ValueError(f"expected a duration like '10s' or '24h'; got {text!r}")
    return int(match.group(1)) * _UNIT_MS[match.group(2)]


def _format_duration(ms: int) -> str:
    for unit in ("y", "w", "d", "h", "m", "s"):
        if ms >= _UNIT_MS[unit] and ms % _UNIT_MS[unit] == 0:
            return f"{ms // _UNIT_MS[unit]}{unit}"
    return f"{ms}ms"


def grafana_interval(
    range_ms: int, max_data_points: int = 1000, min_interval_ms: int = 10_000
) -> int:
    """The ``$__interval`` Grafana picks for a range, in milliseconds.

    Grafana divides the range by the number of points the panel can draw,
    rounds to a nice step and never goes below the datasource's minimum
    interval (InfluxDB's default "Min time interval" is 10 s).
    """
    raw = range_ms / max(max_data_points, 1)
    step = 31_536_000_000
    for bound, candidate in _ROUND_STEPS:
        if raw < bound:
            step = candidate
            break
    return max(step, min_interval_ms)


def _escape_regex(value: str) -> str:
    return re.sub(r"([\\^$*+?.()|\[\]{}/])", r"\\\1", value)


def interpolate(
    query: str,
    *,
    from_ms: int,
    to_ms: int,
    interval_ms: int,
    variables: Mapping[str, Sequence[str]],
    multi: frozenset[str] | set[str] = frozenset(),
) -> str:
    """Substitute Grafana's macros and template variables in an InfluxQL query.

    Parameters
    ----------
    query : str
        The query as stored in the dashboard.
    from_ms, to_ms : int
        The panel's time range, epoch milliseconds.
    interval_ms : int
        ``$__interval`` in milliseconds.
    variables : mapping of str to sequence of str
        Each template variable's selected values.
    multi : set of str
        Variables that are multi-value or have "All": formatted as a regex
        alternation of escaped values, as Grafana's InfluxDB datasource does.
    """
    macros = {
        "timeFilter": f"time >= {from_ms}ms and time <= {to_ms}ms",
        "__interval_ms": str(interval_ms),
        "__interval": _format_duration(interval_ms),
        "interval": _format_duration(interval_ms),
        "__from": str(from_ms),
        "__to": str(to_ms),
    }

    def value_of(name: str) -> str | None:
        if name in macros:
            return macros[name]
        if name not in variables:
            return None
        values = list(variables[name])
        if name in multi:
            escaped = [_escape_regex(v) for v in values]
            return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"
        return values[0] if values else ""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        value = value_of(name)
        if value is None:
            raise KeyError(f"query uses ${name}, which is neither a macro nor a variable")
        return value

    # ${name} or $name (longest identifier); $__interval_ms before $__interval.
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", replace, query)


@dataclass(frozen=True)
class DashboardQuery:
    """One query of a dashboard, with what Grafana needs to run it."""

    kind: str  # "panel", "annotation" or "variable"
    where: str  # panel title / annotation name / variable name
    ref: str  # panel id + refId, annotation name, variable name
    query: str
    result_format: str = "time_series"
    time_from: str | None = None  # a panel's relative time override
    repeat: str | None = None  # variable the panel is repeated by
    panel_id: int | None = None
    ref_id: str | None = None


def dashboard_queries(dashboard: Mapping[str, Any]) -> Iterator[DashboardQuery]:
    """Every panel target, annotation and variable query of a dashboard."""
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            query = variable["query"]
            if isinstance(query, dict):
                query = query.get("query", "")
            yield DashboardQuery("variable", variable["name"], variable["name"], query)
    for annotation in dashboard.get("annotations", {}).get("list", []):
        if annotation.get("builtIn"):
            continue
        target = annotation.get("target") or {}
        yield DashboardQuery(
            "annotation",
            annotation["name"],
            annotation["name"],
            target.get("query") or annotation.get("query", ""),
        )
    for panel in dashboard.get("panels", []):
        for target in panel.get("targets", []):
            yield DashboardQuery(
                "panel",
                panel["title"],
                f"{panel['id']}/{target['refId']}",
                target.get("query", ""),
                result_format=target.get("resultFormat", "time_series"),
                time_from=panel.get("timeFrom"),
                repeat=panel.get("repeat"),
                panel_id=panel["id"],
                ref_id=target["refId"],
            )


def _overlaps(a: Mapping[str, int], b: Mapping[str, int]) -> bool:
    return (
        a["x"] < b["x"] + b["w"]
        and b["x"] < a["x"] + a["w"]
        and a["y"] < b["y"] + b["h"]
        and b["y"] < a["y"] + a["h"]
    )


def _datasource_refs(dashboard: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    for variable in dashboard.get("templating", {}).get("list", []):
        if "datasource" in variable:
            yield f"variable {variable['name']}", variable["datasource"]
    for annotation in dashboard.get("annotations", {}).get("list", []):
        if not annotation.get("builtIn"):
            yield f"annotation {annotation['name']}", annotation.get("datasource")
    for panel in dashboard.get("panels", []):
        yield f"panel {panel.get('id')}", panel.get("datasource")
        for target in panel.get("targets", []):
            yield f"panel {panel.get('id')} target {target.get('refId')}", target.get("datasource")


def check_model(
    dashboard: Mapping[str, Any],
    datasource_uids: Sequence[str],
    min_schema_version: int = 36,
) -> list[str]:
    """Problems with a dashboard against Grafana's dashboard JSON model.

    Checks: a uid and title; ``schemaVersion`` at least ``min_schema_version``
    (36 is where datasource references became ``{type, uid}`` objects);
    unique panel ids; each ``gridPos`` inside the 24-column grid and not
    overlapping another; every datasource reference resolving, either to one
    of ``datasource_uids`` or through a ``datasource`` template variable
    whose plugin matches; every target with a non-empty query; variables
    with unique names and a query.

    Returns
    -------
    list of str
        Empty when the dashboard is sound.
    """
    problems: list[str] = []
    for key in ("uid", "title"):
        if not dashboard.get(key):
            problems.append(f"dashboard has no {key}")
    version = dashboard.get("schemaVersion")
    if not isinstance(version, int) or version < min_schema_version:
        problems.append(f"expected schemaVersion >= {min_schema_version}; got {version!r}")
    variables = dashboard.get("templating", {}).get("list", [])
    names = [v.get("name") for v in variables]
    if len(names) != len(set(names)):
        problems.append(f"duplicate variable names: {names}")
    ds_variables = {v["name"]: v.get("query") for v in variables if v.get("type") == "datasource"}
    for v in variables:
        current = (v.get("current") or {}).get("value")
        if v.get("type") == "datasource" and current not in datasource_uids:
            problems.append(
                f"datasource variable {v.get('name')} defaults to {current!r}, "
                f"expected one of {list(datasource_uids)}"
            )
        if v.get("type") == "query" and not v.get("query"):
            problems.append(f"variable {v.get('name')} has no query")
    panels = dashboard.get("panels", [])
    ids = [p.get("id") for p in panels]
    if len(ids) != len(set(ids)) or any(not isinstance(i, int) for i in ids):
        problems.append(f"expected unique integer panel ids; got {ids}")
    for i, panel in enumerate(panels):
        grid = panel.get("gridPos") or {}
        if not all(isinstance(grid.get(k), int) for k in ("x", "y", "w", "h")):
            problems.append(f"panel {panel.get('id')} has no complete gridPos: {grid}")
            continue
        if grid["x"] < 0 or grid["w"] <= 0 or grid["h"] <= 0 or grid["x"] + grid["w"] > 24:
            problems.append(f"panel {panel.get('id')} gridPos {grid} is outside the 24-column grid")
        for other in panels[:i]:
            other_grid = other.get("gridPos") or {}
            if all(k in other_grid for k in ("x", "y", "w", "h")) and _overlaps(grid, other_grid):
                problems.append(
                    f"panels {other.get('id')} and {panel.get('id')} overlap: "
                    f"{other_grid} and {grid}"
                )
        if not panel.get("targets"):
            problems.append(f"panel {panel.get('id')} ({panel.get('title')}) has no targets")
        for target in panel.get("targets", []):
            if not (target.get("query") or "").strip():
                problems.append(f"panel {panel.get('id')} target {target.get('refId')} is empty")
    for where, ref in _datasource_refs(dashboard):
        if not isinstance(ref, Mapping) or not ref.get("uid"):
            problems.append(f"{where}: expected a datasource reference {{type, uid}}; got {ref!r}")
            continue
        uid = str(ref["uid"])
        match = re.fullmatch(r"\$\{?(\w+)\}?", uid)
        if match:
            plugin = ds_variables.get(match.group(1))
            if plugin is None:
                problems.append(f"{where}: datasource {uid} names no datasource variable")
            elif ref.get("type") not in (None, plugin):
                problems.append(f"{where}: datasource type {ref.get('type')} but {uid} is {plugin}")
        elif uid not in datasource_uids:
            problems.append(
                f"{where}: datasource uid {uid!r} is not one of {list(datasource_uids)}"
            )
    return problems
