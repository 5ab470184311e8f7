"""Grafana dashboards as code (plant overview, line drill-down, operations).

The dashboards read what the worker writes to InfluxDB:
``lineguard_score`` (tags ``site``, ``line``, ``model_version``; fields
``score``, ``threshold``, ``exceed``, ``anomaly``, ``historical``,
``top_sensors``) and ``lineguard_telemetry`` (tags ``site``, ``line``; one
field per sensor). Their generators and query tests are tracked in the
dashboards issue; until then Grafana can chart these measurements directly
with InfluxQL.
"""
