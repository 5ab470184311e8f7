"""The alert reason, online against offline, on the dashboards' real pipeline run.

The session's run (``conftest.py``) sent two SKAB runs through the real
broker to a real scoring worker and into a real InfluxDB. Here the same
frames are scored offline (``evaluate_with_active_model``: the line's
registry model, streamed through a fresh processor in this process) and
compared with what the worker published: the reason of every exceeding
frame in ``lineguard_score``, the reason and sensor of every raised alert
on the alerts topic, the incidents' reasons, and the "Alerts by reason"
panel's counts.
"""

from __future__ import annotations

import json
import time
from collections import Counter

import numpy as np
import pytest

from lineguard.contracts import ALERT_REASONS
from lineguard.dashboards.generate import dashboard_json
from lineguard.dashboards.grafana import dashboard_queries, interpolate
from lineguard.models.evaluation import evaluate_with_active_model
from lineguard.models.registry import Registry
from tests.pipeline_support import consume_all

pytestmark = pytest.mark.integration

NAMES = ("", *ALERT_REASONS)


@pytest.fixture(scope="module")
def offline(dashboard_run):
    registry = Registry(dashboard_run.settings.registry_dir)
    return {
        line: evaluate_with_active_model(run, line, registry)
        for line, run in dashboard_run.runs.items()
    }


def test_every_exceeding_frame_has_the_same_reason_online_and_offline(
    dashboard_run, offline
) -> None:
    for line, result in offline.items():
        rows = dashboard_run.client.query(
            f'SELECT "reason", "exceed" FROM "lineguard_score" WHERE "line" = \'{line}\' '
            "AND \"role\" != 'shadow'",
            epoch="u",
        )
        online = {r["time"]: r.get("reason") or "" for r in rows if r.get("exceed")}
        want = {
            t: NAMES[c]
            for t, c in zip(result.time_us.tolist(), result.reason.tolist(), strict=True)
            if c
        }
        assert online == want, line
        # More than the score alone reached InfluxDB (valve1-1 trips the step check).
    reasons = {n for r in offline.values() for n in np.asarray(NAMES, dtype=object)[r.reason]}
    assert {"score", "step"} <= reasons


def test_every_raised_alert_names_the_offline_reason_and_sensor(dashboard_run, offline) -> None:
    want = []
    for line, result in offline.items():
        flags = result.anomaly.astype(bool)
        raised = np.flatnonzero(flags & ~np.concatenate(([False], flags[:-1])))
        for i in raised.tolist():
            top = result.top_sensors[i]
            want.append((line, int(result.time_us[i]), NAMES[result.reason[i]], top.split(",")[0]))
    assert want
    settings = dashboard_run.settings
    deadline = time.monotonic() + 60
    got: list[tuple] = []
    while len(got) < len(want) and time.monotonic() < deadline:
        got = []
        for m in consume_all(settings, settings.topics.alerts, 10**6, timeout=2):
            alert = json.loads(m.value)
            if alert["state"] == "raised" and alert.get("reason") != "dead_or_unmapped_sensor":
                got.append(
                    (alert["line"], alert["time_us"], alert["reason"], alert["reason_sensor"])
                )
    assert len(got) >= len(want), f"only {len(got)} of {len(want)} raised alerts were published"
    assert sorted(got) == sorted(want)


def test_incidents_carry_the_dominant_reason_of_their_frames(dashboard_run, offline) -> None:
    rows = dashboard_run.client.query(
        'SELECT "reason", "reason_sensor", "reasons", "end_us", "line" FROM "lineguard_incident"',
        epoch="u",
    )
    assert rows
    for row in rows:
        result = offline[row["line"]]
        inside = (result.time_us >= row["time"]) & (result.time_us <= row["end_us"])
        codes = result.reason[inside & result.anomaly.astype(bool)]
        counts = Counter(NAMES[c] for c in codes.tolist() if c)
        assert dict(kv.split(":") for kv in row["reasons"].split(",")) == {
            k: str(v) for k, v in counts.items()
        }
        top = max(counts.values())
        first = next(NAMES[c] for c in codes.tolist() if c and counts[NAMES[c]] == top)
        assert row["reason"] == first
        assert row["reason_sensor"]


def test_the_alerts_by_reason_panel_counts_the_offline_alert_frames(dashboard_run, offline) -> None:
    drilldown = dashboard_json()["line-drilldown"]
    (query,) = [q for q in dashboard_queries(drilldown) if q.where == "Alerts by reason"]
    to_ms = dashboard_run.view_end_ms()
    line = dashboard_run.open_line
    q = interpolate(
        query.query,
        variables={"site": [dashboard_run.lines[line]], "line": [line]},
        multi={"site"},
        from_ms=to_ms - 3_600_000,
        to_ms=to_ms,
        interval_ms=10_000,
    )
    rows = dashboard_run.client.query(q, epoch="ms")
    # The panel's groupBy transformation, done here: frames per reason.
    shown = Counter(r["reason"] for r in rows)
    result = offline[line]
    alerted = result.anomaly.astype(bool) & (result.reason > 0)
    assert shown == Counter(NAMES[c] for c in result.reason[alerted].tolist())
    assert sum(shown.values()) >= 10  # the line was cut in alert
