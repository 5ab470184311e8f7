"""Provision the dashboards through Grafana's HTTP API (grafana-client).

``lineguard dashboards push --grafana-url URL --token T`` uploads every
dashboard whose JSON differs from what the server has (by uid), into one
folder, overwriting the server's copy; ``--dry-run`` only prints the
unified diff of each dashboard against the server's. Server-managed keys
(``id``, ``version``) are left out of the comparison, so an unchanged
dashboard shows no diff and is not re-uploaded (no new version in
Grafana's history).

compose/ does not need this: Grafana there provisions from files.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lineguard.extras import require

__all__ = ["PushPlan", "comparable", "connect", "dashboard_diff", "plan_push", "push_dashboards"]

# Keys Grafana assigns itself; a local file never has meaningful values for them.
SERVER_KEYS = ("id", "version")


@dataclass(frozen=True)
class PushPlan:
    """What push does with one dashboard: ``new``, ``changed`` or ``unchanged``."""

    uid: str
    title: str
    status: str
    diff: str


def comparable(dashboard: Mapping[str, Any] | None) -> str:
    """Canonical text of a dashboard for diffing: server keys dropped, keys sorted."""
    if dashboard is None:
        return ""
    data = {k: v for k, v in dashboard.items() if k not in SERVER_KEYS}
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def dashboard_diff(
    local: Mapping[str, Any], remote: Mapping[str, Any] | None, name: str = ""
) -> str:
    """Unified diff from the server's dashboard to the local one ("" if equal).

    Parameters
    ----------
    local : mapping
        The dashboard JSON model to push.
    remote : mapping or None
        The server's dashboard model (``GET /api/dashboards/uid/<uid>`` ->
        ``dashboard``), or None when the server has no such uid.
    """
    label = name or str(local.get("uid"))
    lines = difflib.unified_diff(
        comparable(remote).splitlines(keepends=True),
        comparable(local).splitlines(keepends=True),
        fromfile=f"grafana:{label}" if remote is not None else "/dev/null",
        tofile=f"local:{label}",
    )
    return "".join(lines)


def connect(url: str, token: str | None, timeout: float = 10.0) -> Any:
    """A :class:`grafana_client.GrafanaApi` for ``url`` with a service-account token."""
    GrafanaApi = require("grafana_client", "grafana").GrafanaApi

    return GrafanaApi.from_url(url, credential=token, timeout=timeout)


def _remote(api: Any, uid: str) -> dict[str, Any] | None:
    GrafanaClientError = require("grafana_client.client", "grafana").GrafanaClientError

    try:
        found = api.dashboard.get_dashboard(uid)
    except GrafanaClientError as exc:
        if exc.status_code == 404:
            return None
        raise
    return found.get("dashboard")


def plan_push(api: Any, dashboards: Mapping[str, Mapping[str, Any]]) -> list[PushPlan]:
    """Compare each local dashboard with the server's copy (reads only)."""
    plans = []
    for name, local in dashboards.items():
        remote = _remote(api, str(local["uid"]))
        diff = dashboard_diff(local, remote, name)
        status = "new" if remote is None else ("changed" if diff else "unchanged")
        plans.append(PushPlan(str(local["uid"]), str(local.get("title")), status, diff))
    return plans


def push_dashboards(
    api: Any,
    dashboards: Mapping[str, Mapping[str, Any]],
    folder_uid: str | None = None,
    dry_run: bool = False,
    message: str = "lineguard dashboards push",
) -> list[PushPlan]:
    """Upload new and changed dashboards (all of them unless ``dry_run``).

    Returns the plan, one entry per dashboard, in the order given.
    """
    plans = plan_push(api, dashboards)
    if dry_run:
        return plans
    by_uid = {str(d["uid"]): d for d in dashboards.values()}
    for plan in plans:
        if plan.status == "unchanged":
            continue
        body: dict[str, Any] = {
            "dashboard": {**by_uid[plan.uid], "id": None},
            "overwrite": True,
            "message": message,
        }
        if folder_uid:
            body["folderUid"] = folder_uid
        api.dashboard.update_dashboard(body)
    return plans
