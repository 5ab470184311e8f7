"""LineGuard's three Grafana dashboards, as code.

What the panels read (written by :mod:`lineguard.detectors.points` and
:mod:`lineguard.stream`):

* ``lineguard_score``: tags ``site``, ``line``, ``model_version`` (and
  ``role=shadow`` for shadow points); fields ``score``, ``threshold`` and
  ``anomaly`` on every frame, ``exceed`` and ``historical`` only where true,
  ``top_sensors`` on exceeding or alerted frames, ``reason`` (the score or
  the sensor check that fired) on exceeding frames. Live panels select
  ``"role" != 'shadow'`` (active points carry no ``role`` tag).
* ``lineguard_telemetry``: tags ``site``, ``line``; one field per sensor.
* ``lineguard_incident``: tags ``site``, ``line``; one point per incident at
  its start, rewritten in place on every update; fields ``incident_id``,
  ``state``, ``severity``, ``peak_score``, ``threshold``, ``end_us``,
  ``duration_s``, ``frames``, ``top_sensors``, ``model_version``, and once
  its frames had one ``reason``, ``reason_sensor``, ``reasons``.
* ``lineguard_worker``: tags ``worker``, ``role``; cumulative counters
  (``records``, ``frames``, ``dead_letters``, ``alerts``, ``incidents``,
  ``write_retries``, ``write_errors``) and gauges (``batch_ms``,
  ``frames_per_s``, ``lag``, ``uptime_s``, ``models``) every 5 s.

Counters restart at zero with a worker, so per-interval panels use
``non_negative_difference`` (a restart is a drop, not a negative rate).
"Current" values are taken relative to ``${__to}`` (the end of the
dashboard's range, i.e. now when live), never ``now()``, so a dashboard
looked at for a past range shows that range's state.
"""

from __future__ import annotations

from lineguard.contracts import (
    INCIDENT_MEASUREMENT,
    REASON_FIELD,
    REASON_SENSOR_FIELD,
    SCORE_MEASUREMENT,
    TELEMETRY_MEASUREMENT,
    WORKER_MEASUREMENT,
)
from lineguard.dashboards.model import (
    Annotation,
    Dashboard,
    Panel,
    Target,
    Variable,
    datasource_variable,
    tag_variable,
)

__all__ = ["all_dashboards", "line_drilldown", "operations", "plant_overview"]

SCORE = SCORE_MEASUREMENT
TELEMETRY = TELEMETRY_MEASUREMENT
INCIDENT = INCIDENT_MEASUREMENT
WORKER = WORKER_MEASUREMENT

SITE = '"site" =~ /^$site$/'
LINE = '"line" =~ /^$line$/'
ACTIVE = "\"role\" != 'shadow'"
ROLE = '"role" =~ /^$role$/'
WORKER_F = '"worker" =~ /^$worker$/'
# The last few minutes before the end of the range: "now" on a live dashboard.
RECENT = "time > ${__to}ms - 5m AND time <= ${__to}ms"
LAST_DAY = "time > ${__to}ms - 24h AND time <= ${__to}ms"
# An incident still open started at most this long ago (the hysteresis
# closes quiet ones after a minute; a month-long open incident is a bug).
OPEN_WINDOW = "time > ${__to}ms - 30d AND time <= ${__to}ms"

GREEN, YELLOW, ORANGE, RED = "green", "yellow", "orange", "red"
STATUS_MAPPING = {
    "type": "value",
    "options": {
        "true": {"text": "ALERT", "color": RED, "index": 0},
        "false": {"text": "OK", "color": GREEN, "index": 1},
    },
}
STALE_MAPPING = {
    "type": "special",
    "options": {"match": "null", "result": {"text": "STALE", "color": RED, "index": 0}},
}
RATIO_THRESHOLDS: list[tuple[float | None, str]] = [(None, GREEN), (0.8, YELLOW), (1.0, RED)]
REASON = REASON_FIELD
REASON_SENSOR = REASON_SENSOR_FIELD


def _site_line_variables(line_multi: bool = True) -> list[Variable]:
    return [
        datasource_variable(),
        tag_variable("site", "Site", SCORE),
        tag_variable("line", "Line", SCORE, where=SITE, multi=line_multi),
    ]


def _stat(
    title: str,
    target: Target,
    *,
    width: int = 6,
    description: str = "",
    **kwargs: object,
) -> Panel:
    options = {
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "colorMode": "background",
        "graphMode": "none",
        "textMode": "auto",
        "justifyMode": "center",
        "orientation": "auto",
    }
    options.update(kwargs.pop("options", {}))  # type: ignore[arg-type]
    return Panel(
        "stat",
        title,
        [target],
        width=width,
        height=4,
        description=description,
        options=options,
        **kwargs,  # type: ignore[arg-type]
    )


def _field_override(name: str, **properties: object) -> dict[str, object]:
    return {
        "matcher": {"id": "byName", "options": name},
        "properties": [{"id": k.replace("__", "."), "value": v} for k, v in properties.items()],
    }


def _timeseries_custom(**extra: object) -> dict[str, object]:
    custom: dict[str, object] = {
        "drawStyle": "line",
        "lineWidth": 1,
        "fillOpacity": 0,
        "showPoints": "never",
        "spanNulls": False,
    }
    custom.update(extra)
    return custom


# --------------------------------------------------------------------------
# Plant overview
# --------------------------------------------------------------------------


def plant_overview() -> Dashboard:
    """Each line's health at a glance: status, score against threshold, open
    incidents, incidents over 24 h, frames/s and time of last data."""
    where = f"{SITE} AND {LINE} AND {ACTIVE}"
    where_inc = f"{SITE} AND {LINE}"
    panels: list[Panel | None] = [
        _stat(
            "Lines reporting (last 5 min)",
            Target(
                f'SELECT count("n") AS "lines" FROM (SELECT count("score") AS "n" '
                f'FROM "{SCORE}" WHERE {where} AND {RECENT} GROUP BY "line")',
                ("lines",),
            ),
            description="Lines with scored frames in the 5 minutes before the end of the range.",
            thresholds=[(None, RED), (1, GREEN)],
            no_value="0",
        ),
        _stat(
            "Lines in alert",
            Target(
                f'SELECT count("a") AS "lines" FROM (SELECT last("anomaly") AS "a" '
                f'FROM "{SCORE}" WHERE {where} AND $timeFilter GROUP BY "line") '
                f'WHERE "a" = true',
                ("lines",),
            ),
            description="Lines whose latest frame is in (debounced) alert.",
            thresholds=[(None, GREEN), (1, RED)],
            no_value="0",
        ),
        _stat(
            "Open incidents",
            Target(
                f'SELECT count("incident_id") AS "open" FROM "{INCIDENT}" '
                f"WHERE {where_inc} AND \"state\" = 'open' AND {OPEN_WINDOW}",
                ("open",),
            ),
            thresholds=[(None, GREEN), (1, RED)],
            no_value="0",
        ),
        _stat(
            "Incidents (24 h)",
            Target(
                f'SELECT count("incident_id") AS "incidents" FROM "{INCIDENT}" '
                f"WHERE {where_inc} AND $timeFilter",
                ("incidents",),
            ),
            description=(
                "Incidents that started in the last 24 hours. A rolling day, not the "
                "calendar day: a night shift's incident at 23:50 must not vanish at 00:00."
            ),
            thresholds=[(None, GREEN), (1, ORANGE), (5, RED)],
            no_value="0",
            time_from="24h",
        ),
        None,
        Panel(
            "table",
            "Line health",
            [
                Target(
                    f'SELECT last("score") AS "score" FROM "{SCORE}" '
                    f'WHERE {where} AND $timeFilter GROUP BY "line"',
                    ("time", "line", "score"),
                    result_format="table",
                ),
                Target(
                    f'SELECT last("threshold") AS "threshold", last("anomaly") AS "alert", '
                    f'last("score") / last("threshold") AS "score_ratio" FROM "{SCORE}" '
                    f'WHERE {where} AND $timeFilter GROUP BY "line"',
                    ("line", "threshold", "alert", "score_ratio"),
                    result_format="table",
                ),
                Target(
                    f'SELECT count("score") / 300 AS "frames_per_s" FROM "{SCORE}" '
                    f'WHERE {where} AND {RECENT} GROUP BY "line"',
                    ("line", "frames_per_s"),
                    result_format="table",
                ),
                Target(
                    f'SELECT count("incident_id") AS "open_incidents" FROM "{INCIDENT}" '
                    f"WHERE {where_inc} AND \"state\" = 'open' AND {OPEN_WINDOW} "
                    f'GROUP BY "line"',
                    ("line", "open_incidents"),
                    result_format="table",
                ),
                Target(
                    f'SELECT count("incident_id") AS "incidents_24h" FROM "{INCIDENT}" '
                    f'WHERE {where_inc} AND {LAST_DAY} GROUP BY "line"',
                    ("line", "incidents_24h"),
                    result_format="table",
                ),
            ],
            width=24,
            height=9,
            description=(
                "One row per line. 'Last data' is the newest scored frame; a line with "
                "no frame in the last 5 minutes shows STALE in red."
            ),
            transformations=[
                {"id": "joinByField", "options": {"byField": "line", "mode": "outer"}},
                {
                    "id": "organize",
                    "options": {
                        "excludeByName": {f"Time {i}": True for i in range(1, 5)},
                        "indexByName": {
                            "line": 0,
                            "alert": 1,
                            "score": 2,
                            "threshold": 3,
                            "score_ratio": 4,
                            "open_incidents": 5,
                            "incidents_24h": 6,
                            "frames_per_s": 7,
                            "Time": 8,
                        },
                        "renameByName": {
                            "Time": "Last data",
                            "alert": "Status",
                            "score_ratio": "Score / threshold",
                            "open_incidents": "Open incidents",
                            "incidents_24h": "Incidents (24 h)",
                            "frames_per_s": "Frames/s (5 min)",
                        },
                    },
                },
                {"id": "sortBy", "options": {"sort": [{"field": "line"}]}},
            ],
            overrides=[
                _field_override(
                    "Status",
                    mappings=[STATUS_MAPPING],
                    custom__cellOptions={"type": "color-background"},
                ),
                _field_override(
                    "Score / threshold",
                    unit="percentunit",
                    decimals=0,
                    thresholds={
                        "mode": "absolute",
                        "steps": [{"color": c, "value": v} for v, c in RATIO_THRESHOLDS],
                    },
                    custom__cellOptions={"type": "gauge", "mode": "basic"},
                    max=2,
                    min=0,
                ),
                _field_override(
                    "Frames/s (5 min)",
                    mappings=[STALE_MAPPING],
                    decimals=2,
                    custom__cellOptions={"type": "color-text"},
                ),
                _field_override("Last data", unit="dateTimeFromNow"),
                _field_override("Open incidents", noValue="0"),
                _field_override("Incidents (24 h)", noValue="0"),
            ],
            thresholds=[(None, GREEN)],
            options={"showHeader": True, "cellHeight": "sm"},
        ),
        None,
        Panel(
            "status-history",
            "Data flow (frames per interval; red = no data)",
            [
                Target(
                    f'SELECT count("score") AS "frames" FROM "{SCORE}" WHERE {where} '
                    f'AND $timeFilter GROUP BY time($__interval), "line" fill(0)',
                    ("time", "frames"),
                    alias="$tag_line",
                )
            ],
            width=24,
            height=7,
            description="A line that stops sending turns red from the moment it went quiet.",
            thresholds=[(None, RED), (1, GREEN)],
            color_mode="thresholds",
            options={"showValue": "never", "rowHeight": 0.8, "legend": {"showLegend": False}},
        ),
        None,
        Panel(
            "timeseries",
            "Score / threshold by line (above 100% = over threshold)",
            [
                Target(
                    f'SELECT max("score") / last("threshold") AS "score_ratio" '
                    f'FROM "{SCORE}" WHERE {where} AND $timeFilter '
                    f'GROUP BY time($__interval), "line" fill(null)',
                    ("time", "score_ratio"),
                    alias="$tag_line",
                )
            ],
            width=24,
            height=8,
            unit="percentunit",
            thresholds=[(None, GREEN), (1.0, RED)],
            custom=_timeseries_custom(thresholdsStyle={"mode": "dashed"}),
            options={"legend": {"displayMode": "list", "placement": "bottom"}},
        ),
    ]
    return Dashboard(
        uid="lineguard-plant-overview",
        title="LineGuard / Plant overview",
        description="Every line's health: status, score, incidents, data flow.",
        variables=_site_line_variables(),
        panels=panels,
    )


# --------------------------------------------------------------------------
# Line drill-down
# --------------------------------------------------------------------------


def line_drilldown() -> Dashboard:
    """One line: its sensors, score against threshold, contributing sensors,
    incidents (also as annotations) and model version."""
    line = LINE
    where = f"{line} AND {ACTIVE}"
    variables = [
        *_site_line_variables(line_multi=False),
        Variable("sensor", "Sensors", f'SHOW FIELD KEYS FROM "{TELEMETRY}"', column="fieldKey"),
    ]
    annotations = [
        Annotation(
            "Incidents",
            f'SELECT "incident_id", "severity", "top_sensors", "end_us" / 1000 AS "end_ms" '
            f'FROM "{INCIDENT}" WHERE {line} AND $timeFilter',
            color="red",
            title_column="incident_id",
            text_column="top_sensors",
            tags_column="severity",
            time_end_column="end_ms",
        )
    ]
    panels: list[Panel | None] = [
        _stat(
            "Status",
            Target(
                f'SELECT last("anomaly") AS "alert" FROM "{SCORE}" WHERE {where} AND $timeFilter',
                ("alert",),
            ),
            width=4,
            mappings=[STATUS_MAPPING],
            thresholds=[(None, GREEN)],
        ),
        _stat(
            "Score / threshold",
            Target(
                f'SELECT last("score") / last("threshold") AS "score_ratio" FROM "{SCORE}" '
                f"WHERE {where} AND $timeFilter",
                ("score_ratio",),
            ),
            width=4,
            unit="percentunit",
            decimals=0,
            thresholds=RATIO_THRESHOLDS,
        ),
        _stat(
            "Model version",
            Target(
                f'SELECT last("threshold") AS "threshold" FROM "{SCORE}" '
                f'WHERE {where} AND $timeFilter GROUP BY "model_version"',
                ("model_version", "threshold"),
                alias="$tag_model_version",
            ),
            width=4,
            description="Versions that scored this line in the range (the threshold as value).",
            thresholds=[(None, "blue")],
            options={"textMode": "value_and_name", "colorMode": "none"},
        ),
        _stat(
            "Open incidents",
            Target(
                f'SELECT count("incident_id") AS "open" FROM "{INCIDENT}" '
                f"WHERE {line} AND \"state\" = 'open' AND {OPEN_WINDOW}",
                ("open",),
            ),
            width=4,
            thresholds=[(None, GREEN), (1, RED)],
            no_value="0",
        ),
        _stat(
            "Incidents in range",
            Target(
                f'SELECT count("incident_id") AS "incidents" FROM "{INCIDENT}" '
                f"WHERE {line} AND $timeFilter",
                ("incidents",),
            ),
            width=4,
            thresholds=[(None, GREEN), (1, ORANGE)],
            no_value="0",
        ),
        _stat(
            "Frames/s (last 5 min)",
            Target(
                f'SELECT count("score") / 300 AS "frames_per_s" FROM "{SCORE}" '
                f"WHERE {where} AND {RECENT}",
                ("frames_per_s",),
            ),
            width=4,
            decimals=2,
            mappings=[STALE_MAPPING],
            no_value="STALE",
            thresholds=[(None, RED), (0.001, GREEN)],
        ),
        None,
        Panel(
            "timeseries",
            "Score vs threshold",
            [
                Target(
                    f'SELECT max("score") AS "score", last("threshold") AS "threshold" '
                    f'FROM "{SCORE}" WHERE {where} AND $timeFilter '
                    f"GROUP BY time($__interval) fill(null)",
                    ("time", "score", "threshold"),
                    alias="$col",
                )
            ],
            width=24,
            height=9,
            description="Incident regions are shaded (annotation 'Incidents').",
            custom=_timeseries_custom(),
            overrides=[
                _field_override(
                    "threshold",
                    color={"mode": "fixed", "fixedColor": RED},
                    custom__lineStyle={"fill": "dash", "dash": [10, 10]},
                    custom__lineWidth=2,
                ),
                _field_override("score", color={"mode": "fixed", "fixedColor": "blue"}),
            ],
            options={"legend": {"displayMode": "list", "placement": "bottom"}},
        ),
        None,
        Panel(
            "timeseries",
            "$sensor",
            [
                Target(
                    f'SELECT mean("$sensor") AS "mean" FROM "{TELEMETRY}" '
                    f"WHERE {line} AND $timeFilter GROUP BY time($__interval) fill(null)",
                    ("time", "mean"),
                    alias="$sensor",
                )
            ],
            width=6,
            height=6,
            repeat="sensor",
            max_per_row=4,
            custom=_timeseries_custom(),
            options={"legend": {"showLegend": False}},
        ),
        None,
        Panel(
            "table",
            "Contributing sensors during alerts",
            [
                Target(
                    f'SELECT "{REASON}", "top_sensors", "score" FROM "{SCORE}" '
                    f'WHERE {where} AND "anomaly" = true AND $timeFilter',
                    ("time", REASON, "top_sensors", "score"),
                    result_format="table",
                )
            ],
            width=12,
            height=9,
            description=(
                "Alert frames grouped by why they exceeded (the score or the sensor "
                "check that fired; empty: held in alert by the debounce) and their top "
                "contributing sensors (the check's own sensor first), most frequent first."
            ),
            transformations=[
                {
                    "id": "groupBy",
                    "options": {
                        "fields": {
                            REASON: {"aggregations": [], "operation": "groupby"},
                            "top_sensors": {"aggregations": [], "operation": "groupby"},
                            "score": {"aggregations": ["count", "max"], "operation": "aggregate"},
                        }
                    },
                },
                {"id": "sortBy", "options": {"sort": [{"field": "score (count)", "desc": True}]}},
                {
                    "id": "organize",
                    "options": {
                        "renameByName": {
                            REASON: "Reason",
                            "top_sensors": "Top sensors",
                            "score (count)": "Alert frames",
                            "score (max)": "Peak score",
                        }
                    },
                },
            ],
            thresholds=[(None, GREEN)],
        ),
        Panel(
            "table",
            "Incidents",
            [
                Target(
                    'SELECT "incident_id", "state", "severity", "peak_score", "threshold", '
                    f'"duration_s", "frames", "{REASON}", "{REASON_SENSOR}", "top_sensors", '
                    f'"model_version" FROM "{INCIDENT}" WHERE {line} AND $timeFilter',
                    (
                        "time",
                        "incident_id",
                        "state",
                        "severity",
                        "peak_score",
                        "threshold",
                        "duration_s",
                        "frames",
                        REASON,
                        REASON_SENSOR,
                        "top_sensors",
                        "model_version",
                    ),
                    result_format="table",
                )
            ],
            width=12,
            height=9,
            description="Render one for an e-mail: lineguard report incident ID --png FILE",
            transformations=[
                {"id": "sortBy", "options": {"sort": [{"field": "Time", "desc": True}]}},
                {
                    "id": "organize",
                    "options": {
                        "renameByName": {
                            "Time": "Start",
                            REASON: "Reason",
                            REASON_SENSOR: "Reason sensor",
                        }
                    },
                },
            ],
            overrides=[
                _field_override(
                    "severity",
                    mappings=[
                        {
                            "type": "value",
                            "options": {
                                "minor": {"color": YELLOW, "index": 0},
                                "major": {"color": ORANGE, "index": 1},
                                "critical": {"color": RED, "index": 2},
                            },
                        }
                    ],
                    custom__cellOptions={"type": "color-background"},
                ),
                _field_override("duration_s", unit="s"),
            ],
            thresholds=[(None, GREEN)],
        ),
        None,
        Panel(
            "barchart",
            "Alerts by reason",
            [
                Target(
                    f'SELECT "{REASON}", "score" FROM "{SCORE}" '
                    f'WHERE {where} AND "anomaly" = true AND "exceed" = true AND $timeFilter',
                    ("time", REASON, "score"),
                    result_format="table",
                )
            ],
            width=8,
            height=6,
            description=(
                "Alert frames by why they exceeded: the multivariate score, or the sensor "
                "check that fired (freeze, step, relation) or a mode never seen in training. "
                "A check can hold an alert while the score sits under the threshold; "
                "this is where it shows."
            ),
            transformations=[
                {
                    "id": "groupBy",
                    "options": {
                        "fields": {
                            REASON: {"aggregations": [], "operation": "groupby"},
                            "score": {"aggregations": ["count"], "operation": "aggregate"},
                        }
                    },
                },
                {"id": "sortBy", "options": {"sort": [{"field": "score (count)", "desc": True}]}},
                {
                    "id": "organize",
                    "options": {
                        "renameByName": {REASON: "Reason", "score (count)": "Alert frames"}
                    },
                },
            ],
            options={
                "xField": "Reason",
                "orientation": "horizontal",
                "showValue": "always",
                "legend": {"showLegend": False},
            },
            thresholds=[(None, RED)],
        ),
        Panel(
            "table",
            "Model versions in range",
            [
                Target(
                    f'SELECT count("score") AS "frames", last("threshold") AS "threshold" '
                    f'FROM "{SCORE}" WHERE {line} AND $timeFilter GROUP BY "model_version", "role"',
                    ("model_version", "frames", "threshold"),
                    result_format="table",
                )
            ],
            width=16,
            height=6,
            description="Role 'shadow' rows are candidates scored beside the active version.",
            transformations=[
                {"id": "organize", "options": {"excludeByName": {"Time": True}}},
            ],
            thresholds=[(None, GREEN)],
        ),
    ]
    return Dashboard(
        uid="lineguard-line-drilldown",
        title="LineGuard / Line drill-down",
        description="One line: sensors, score vs threshold, contributions, incidents, model.",
        variables=variables,
        panels=panels,
        annotations=annotations,
        time_from="now-3h",
    )


# --------------------------------------------------------------------------
# Operations
# --------------------------------------------------------------------------


def operations() -> Dashboard:
    """The workers: throughput, consumer lag, dead letters, write errors and
    model versions in service."""
    wf = f"{ROLE} AND {WORKER_F}"
    variables = [
        *_site_line_variables(),
        tag_variable("role", "Role", WORKER),
        tag_variable("worker", "Worker", WORKER, where=ROLE),
    ]
    recent_1m = "time > ${__to}ms - 1m AND time <= ${__to}ms"
    by_worker = 'GROUP BY time($__interval), "role", "worker" fill(none)'
    panels: list[Panel | None] = [
        _stat(
            "Workers reporting (last min)",
            Target(
                f'SELECT count("u") AS "workers" FROM (SELECT last("uptime_s") AS "u" '
                f'FROM "{WORKER}" WHERE {wf} AND {recent_1m} GROUP BY "worker")',
                ("workers",),
            ),
            thresholds=[(None, RED), (1, GREEN)],
            no_value="0",
        ),
        _stat(
            "Frames/s scored",
            Target(
                f'SELECT sum("fps") AS "frames_per_s" FROM (SELECT last("frames_per_s") '
                f'AS "fps" FROM "{WORKER}" WHERE "role" = \'score\' AND {WORKER_F} '
                f'AND {recent_1m} GROUP BY "worker")',
                ("frames_per_s",),
            ),
            decimals=1,
            thresholds=[(None, "blue")],
        ),
        _stat(
            "Consumer lag (max, records)",
            Target(
                f'SELECT max("lag") AS "lag" FROM "{WORKER}" WHERE {wf} AND {recent_1m}',
                ("lag",),
            ),
            description="-1: the worker had no partitions assigned (rebalancing).",
            thresholds=[(None, GREEN), (1000, ORANGE), (10000, RED)],
        ),
        _stat(
            "Dead letters in range",
            Target(
                f'SELECT sum("n") AS "dead_letters" FROM (SELECT spread("dead_letters") '
                f'AS "n" FROM "{WORKER}" WHERE {wf} AND $timeFilter GROUP BY "worker")',
                ("dead_letters",),
            ),
            thresholds=[(None, GREEN), (1, ORANGE)],
            no_value="0",
        ),
        None,
        Panel(
            "timeseries",
            "Throughput (frames/s)",
            [
                Target(
                    f'SELECT mean("frames_per_s") AS "frames_per_s" FROM "{WORKER}" '
                    f"WHERE {wf} AND $timeFilter {by_worker}",
                    ("time", "frames_per_s"),
                    alias="$tag_role $tag_worker",
                )
            ],
            custom=_timeseries_custom(),
        ),
        Panel(
            "timeseries",
            "Consumer lag (records behind)",
            [
                Target(
                    f'SELECT max("lag") AS "lag" FROM "{WORKER}" '
                    f"WHERE {wf} AND $timeFilter {by_worker}",
                    ("time", "lag"),
                    alias="$tag_role $tag_worker",
                )
            ],
            custom=_timeseries_custom(),
        ),
        Panel(
            "timeseries",
            "Dead letters (per interval)",
            [
                Target(
                    f'SELECT non_negative_difference(max("dead_letters")) AS "dead_letters" '
                    f'FROM "{WORKER}" WHERE {wf} AND $timeFilter {by_worker}',
                    ("time", "dead_letters"),
                    alias="$tag_role $tag_worker",
                )
            ],
            custom=_timeseries_custom(drawStyle="bars", fillOpacity=80),
        ),
        Panel(
            "timeseries",
            "InfluxDB write errors and retries (per interval)",
            [
                Target(
                    f'SELECT non_negative_difference(max("write_errors")) AS "write_errors", '
                    f'non_negative_difference(max("write_retries")) AS "write_retries" '
                    f'FROM "{WORKER}" WHERE {wf} AND $timeFilter {by_worker}',
                    ("time", "write_errors", "write_retries"),
                    alias="$tag_worker $col",
                )
            ],
            custom=_timeseries_custom(drawStyle="bars", fillOpacity=80),
        ),
        Panel(
            "timeseries",
            "Batch time (ms)",
            [
                Target(
                    f'SELECT mean("batch_ms") AS "batch_ms" FROM "{WORKER}" '
                    f"WHERE {wf} AND $timeFilter {by_worker}",
                    ("time", "batch_ms"),
                    alias="$tag_role $tag_worker",
                )
            ],
            unit="ms",
            custom=_timeseries_custom(),
        ),
        Panel(
            "timeseries",
            "Alerts and incidents (per interval)",
            [
                Target(
                    f'SELECT non_negative_difference(max("alerts")) AS "alerts", '
                    f'non_negative_difference(max("incidents")) AS "incidents" '
                    f'FROM "{WORKER}" WHERE "role" = \'score\' AND {WORKER_F} AND $timeFilter '
                    f'GROUP BY time($__interval), "worker" fill(none)',
                    ("time", "alerts", "incidents"),
                    alias="$tag_worker $col",
                )
            ],
            custom=_timeseries_custom(drawStyle="bars", fillOpacity=80),
        ),
        None,
        Panel(
            "table",
            "Workers",
            [
                Target(
                    f'SELECT last("uptime_s") AS "uptime_s" FROM "{WORKER}" '
                    f'WHERE {wf} AND $timeFilter GROUP BY "worker", "role"',
                    ("time", "worker", "role", "uptime_s"),
                    result_format="table",
                ),
                Target(
                    f'SELECT last("models") AS "models", last("records") AS "records", '
                    f'last("frames") AS "frames" FROM "{WORKER}" '
                    f'WHERE {wf} AND $timeFilter GROUP BY "worker"',
                    ("worker", "models", "records", "frames"),
                    result_format="table",
                ),
            ],
            description="Last report of each worker and the model version it serves per line.",
            transformations=[
                {"id": "joinByField", "options": {"byField": "worker", "mode": "outer"}},
                {
                    "id": "organize",
                    "options": {
                        "excludeByName": {"Time 1": True},
                        "renameByName": {"Time": "Last report", "models": "Models (line:version)"},
                    },
                },
            ],
            overrides=[
                _field_override("Last report", unit="dateTimeFromNow"),
                _field_override("uptime_s", unit="s"),
            ],
            thresholds=[(None, GREEN)],
        ),
        Panel(
            "table",
            "Model versions in service",
            [
                Target(
                    f'SELECT count("score") AS "frames", last("threshold") AS "threshold" '
                    f'FROM "{SCORE}" WHERE {SITE} AND {LINE} AND $timeFilter '
                    f'GROUP BY "line", "model_version", "role"',
                    ("line", "model_version", "frames", "threshold"),
                    result_format="table",
                )
            ],
            description="Frames scored per line and model version in the range (shadows too).",
            transformations=[{"id": "organize", "options": {"excludeByName": {"Time": True}}}],
            thresholds=[(None, GREEN)],
        ),
    ]
    return Dashboard(
        uid="lineguard-operations",
        title="LineGuard / Operations",
        description="Workers: throughput, lag, dead letters, write errors, models in service.",
        variables=variables,
        panels=panels,
        time_from="now-1h",
    )


def all_dashboards() -> dict[str, Dashboard]:
    """File stem -> dashboard, for every LineGuard dashboard."""
    return {
        "plant-overview": plant_overview(),
        "line-drilldown": line_drilldown(),
        "operations": operations(),
    }
