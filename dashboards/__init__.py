"""Grafana dashboards as code (plant overview, line drill-down, operations).

:mod:`~lineguard.dashboards.definitions` defines them with the builder in
:mod:`~lineguard.dashboards.model`; :mod:`~lineguard.dashboards.generate`
writes the committed JSON (``dashboards/json``) that Grafana provisions;
:mod:`~lineguard.dashboards.grafana` substitutes Grafana's macros and checks
the JSON model; :mod:`~lineguard.dashboards.push` provisions through
Grafana's HTTP API; :mod:`~lineguard.dashboards.incident_report` renders one
incident as a PNG.
"""
