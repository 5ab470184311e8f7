"""A small typed builder for Grafana's dashboard JSON model (InfluxQL only).

Grafana stores a dashboard as JSON (``schemaVersion``, ``panels`` with
``gridPos``, ``templating``, ``annotations``). The builders here produce
exactly the subset LineGuard needs, with the conventions that keep the
dashboards portable:

* every query is raw InfluxQL (``rawQuery: true``), which InfluxDB 1.x,
  2.x (v1 compatibility with a DBRP mapping) and 3.x all answer;
* every datasource reference is ``{"type": "influxdb", "uid": "${datasource}"}``,
  resolved through a ``datasource`` template variable, so one JSON file
  works with the provisioned datasource (uid :data:`DATASOURCE_UID`) and
  with any InfluxDB datasource picked in the UI;
* panels are laid out left to right, top to bottom on Grafana's 24-column
  grid by :class:`Layout`, so positions never overlap.

(grafana-foundation-sdk has no InfluxDB query builder; this module is the
small part of it LineGuard needs, without the dependency.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "DATASOURCE",
    "DATASOURCE_UID",
    "GRID_COLUMNS",
    "SCHEMA_VERSION",
    "Annotation",
    "Dashboard",
    "Layout",
    "Panel",
    "Target",
    "Variable",
    "datasource_variable",
    "tag_variable",
]

#: Grafana 11's dashboard schema version (what Grafana 11.x writes on save).
SCHEMA_VERSION = 39
#: Width of Grafana's dashboard grid.
GRID_COLUMNS = 24
#: The uid compose/ provisions the InfluxDB datasource under.
DATASOURCE_UID = "lineguard-influxdb"
#: How panels, targets, variables and annotations name their datasource.
DATASOURCE: dict[str, str] = {"type": "influxdb", "uid": "${datasource}"}


@dataclass
class Target:
    """One raw InfluxQL query of a panel.

    ``columns`` lists the result columns the panel reads (tags included for
    ``table`` results); the query tests check that the real InfluxDB returns
    them. It is not part of Grafana's model and is not written to the JSON.
    """

    query: str
    columns: tuple[str, ...]
    result_format: str = "time_series"
    alias: str | None = None
    hide: bool = False

    def to_json(self, ref_id: str) -> dict[str, Any]:
        """The target as Grafana stores it."""
        out: dict[str, Any] = {
            "datasource": dict(DATASOURCE),
            "refId": ref_id,
            "rawQuery": True,
            "query": self.query,
            "resultFormat": self.result_format,
        }
        if self.alias:
            out["alias"] = self.alias
        if self.hide:
            out["hide"] = True
        return out


@dataclass
class Panel:
    """A panel: visualisation type, size, queries and options.

    ``time_from`` is Grafana's relative time override (``"24h"``: the panel
    always shows the last 24 hours whatever the dashboard range).
    """

    type: str
    title: str
    targets: list[Target]
    width: int = 12
    height: int = 8
    description: str = ""
    unit: str | None = None
    decimals: int | None = None
    thresholds: list[tuple[float | None, str]] | None = None
    mappings: list[dict[str, Any]] = field(default_factory=list)
    overrides: list[dict[str, Any]] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)
    custom: dict[str, Any] = field(default_factory=dict)
    transformations: list[dict[str, Any]] = field(default_factory=list)
    time_from: str | None = None
    repeat: str | None = None
    max_per_row: int | None = None
    min: float | None = None
    max: float | None = None
    no_value: str | None = None
    color_mode: str | None = None

    def to_json(self, panel_id: int, grid: dict[str, int]) -> dict[str, Any]:
        """The panel as Grafana stores it."""
        defaults: dict[str, Any] = {"custom": dict(self.custom), "mappings": self.mappings}
        if self.unit:
            defaults["unit"] = self.unit
        if self.decimals is not None:
            defaults["decimals"] = self.decimals
        if self.min is not None:
            defaults["min"] = self.min
        if self.max is not None:
            defaults["max"] = self.max
        if self.no_value is not None:
            defaults["noValue"] = self.no_value
        if self.color_mode:
            defaults["color"] = {"mode": self.color_mode}
        if self.thresholds is not None:
            defaults["thresholds"] = {
                "mode": "absolute",
                "steps": [{"color": c, "value": v} for v, c in self.thresholds],
            }
        out: dict[str, Any] = {
            "id": panel_id,
            "type": self.type,
            "title": self.title,
            "description": self.description,
            "datasource": dict(DATASOURCE),
            "gridPos": grid,
            "fieldConfig": {"defaults": defaults, "overrides": self.overrides},
            "options": self.options,
            "targets": [t.to_json(chr(ord("A") + i)) for i, t in enumerate(self.targets)],
        }
        if self.transformations:
            out["transformations"] = self.transformations
        if self.time_from:
            out["timeFrom"] = self.time_from
        if self.repeat:
            out["repeat"] = self.repeat
            out["repeatDirection"] = "h"
            if self.max_per_row:
                out["maxPerRow"] = self.max_per_row
        return out


@dataclass
class Variable:
    """A template variable: ``query`` (InfluxQL SHOW ...) or ``datasource``."""

    name: str
    label: str
    query: str
    kind: str = "query"
    multi: bool = True
    include_all: bool = True
    #: For ``query`` variables: the result column Grafana reads the values from.
    column: str = "value"

    def to_json(self) -> dict[str, Any]:
        """The variable as Grafana stores it."""
        if self.kind == "datasource":
            return {
                "name": self.name,
                "label": self.label,
                "type": "datasource",
                "query": self.query,
                "current": {"text": "LineGuard InfluxDB", "value": DATASOURCE_UID},
                "hide": 0,
                "refresh": 1,
                "regex": "",
                "options": [],
                "multi": False,
                "includeAll": False,
            }
        current = (
            {"text": ["All"], "value": ["$__all"]}
            if self.include_all
            else {"text": "", "value": ""}
        )
        return {
            "name": self.name,
            "label": self.label,
            "type": "query",
            "datasource": dict(DATASOURCE),
            "query": self.query,
            "definition": self.query,
            "current": current,
            "hide": 0,
            "refresh": 2,  # on time range change: new lines appear without a reload
            "regex": "",
            "sort": 1,
            "options": [],
            "multi": self.multi,
            "includeAll": self.include_all,
        }


def datasource_variable() -> Variable:
    """The ``datasource`` variable every panel's datasource reference uses."""
    return Variable("datasource", "InfluxDB", "influxdb", kind="datasource")


def tag_variable(
    name: str, label: str, measurement: str, where: str = "", multi: bool = True
) -> Variable:
    """A variable listing a tag's values (``SHOW TAG VALUES ... WITH KEY``)."""
    query = f'SHOW TAG VALUES FROM "{measurement}" WITH KEY = "{name}"'
    if where:
        query += f" WHERE {where}"
    return Variable(name, label, query, multi=multi, include_all=multi)


@dataclass
class Annotation:
    """An InfluxQL annotation query; column mappings name result columns."""

    name: str
    query: str
    color: str = "red"
    title_column: str = ""
    text_column: str = ""
    tags_column: str = ""
    time_end_column: str = ""

    @property
    def columns(self) -> tuple[str, ...]:
        """The result columns the annotation reads."""
        return tuple(
            c
            for c in (self.title_column, self.text_column, self.tags_column, self.time_end_column)
            if c
        )

    def to_json(self) -> dict[str, Any]:
        """The annotation as Grafana stores it (the InfluxDB plugin's target form)."""
        return {
            "name": self.name,
            "datasource": dict(DATASOURCE),
            "enable": True,
            "hide": False,
            "iconColor": self.color,
            "target": {
                "refId": "Anno",
                "query": self.query,
                "rawQuery": True,
                "fromAnnotations": True,
                "queryType": "tags",
                "titleColumn": self.title_column,
                "textColumn": self.text_column,
                "tagsColumn": self.tags_column,
                "timeEndColumn": self.time_end_column,
                "name": self.name,
            },
        }


class Layout:
    """Places panels on the 24-column grid, left to right, wrapping rows.

    A row is as tall as its tallest panel, so panels never overlap.
    """

    def __init__(self) -> None:
        self.x = 0
        self.y = 0
        self.row_height = 0

    def place(self, width: int, height: int) -> dict[str, int]:
        """Grid position for the next panel of ``width`` x ``height``."""
        if not 0 < width <= GRID_COLUMNS:
            raise ValueError(f"expected a panel width in 1..{GRID_COLUMNS}; got {width}")
        if self.x + width > GRID_COLUMNS:
            self.x, self.y, self.row_height = 0, self.y + self.row_height, 0
        grid = {"h": height, "w": width, "x": self.x, "y": self.y}
        self.x += width
        self.row_height = max(self.row_height, height)
        return grid

    def new_row(self) -> None:
        """Start the next panel on a fresh row."""
        if self.x:
            self.x, self.y, self.row_height = 0, self.y + self.row_height, 0


@dataclass
class Dashboard:
    """A dashboard: uid, title, variables, annotations and panels in order.

    ``None`` in ``panels`` starts a new grid row.
    """

    uid: str
    title: str
    description: str
    variables: list[Variable]
    panels: list[Panel | None]
    annotations: list[Annotation] = field(default_factory=list)
    tags: tuple[str, ...] = ("lineguard",)
    time_from: str = "now-6h"
    refresh: str = "30s"

    def to_json(self) -> dict[str, Any]:
        """The whole dashboard as Grafana's JSON model."""
        layout = Layout()
        panels = []
        for panel in self.panels:
            if panel is None:
                layout.new_row()
                continue
            grid = layout.place(panel.width, panel.height)
            panels.append(panel.to_json(len(panels) + 1, grid))
        builtin = {
            "builtIn": 1,
            "datasource": {"type": "grafana", "uid": "-- Grafana --"},
            "enable": True,
            "hide": True,
            "iconColor": "rgba(0, 211, 255, 1)",
            "name": "Annotations & Alerts",
            "type": "dashboard",
        }
        return {
            "uid": self.uid,
            "title": self.title,
            "description": self.description,
            "tags": list(self.tags),
            "schemaVersion": SCHEMA_VERSION,
            "version": 1,
            "editable": True,
            "graphTooltip": 1,
            "timezone": "browser",
            "time": {"from": self.time_from, "to": "now"},
            "refresh": self.refresh,
            "links": [
                {
                    "type": "dashboards",
                    "tags": ["lineguard"],
                    "asDropdown": True,
                    "title": "LineGuard",
                    "includeVars": True,
                    "keepTime": True,
                }
            ],
            "templating": {"list": [v.to_json() for v in self.variables]},
            "annotations": {"list": [builtin] + [a.to_json() for a in self.annotations]},
            "panels": panels,
        }

    def columns(self) -> dict[tuple[int, str], tuple[str, ...]]:
        """(panel id, refId) -> the columns that target must return."""
        out: dict[tuple[int, str], tuple[str, ...]] = {}
        panel_id = 0
        for panel in self.panels:
            if panel is None:
                continue
            panel_id += 1
            for i, target in enumerate(panel.targets):
                out[(panel_id, chr(ord("A") + i))] = target.columns
        return out
