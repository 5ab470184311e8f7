"""``lineguard dashboards push``: the diff logic, and the HTTP exchange with
grafana-client against a tiny in-process server implementing the Grafana
endpoints push uses (GET /api/dashboards/uid/<uid>, POST /api/dashboards/db)."""

from __future__ import annotations

import copy
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from click.testing import CliRunner

from lineguard.cli import main
from lineguard.dashboards.generate import dashboard_json
from lineguard.dashboards.push import connect, dashboard_diff, plan_push, push_dashboards

TOKEN = "glsa_test_token"


# -- pure diff logic -------------------------------------------------------
def test_diff_ignores_server_managed_keys_and_shows_real_changes() -> None:
    local = dashboard_json()["operations"]
    remote = {**copy.deepcopy(local), "id": 42, "version": 7}
    assert dashboard_diff(local, remote) == ""
    remote["panels"][0]["title"] = "Old title"
    diff = dashboard_diff(local, remote, "operations")
    assert diff.startswith("--- grafana:operations\n+++ local:operations\n")
    assert '-      "title": "Old title"' in diff
    assert f'+      "title": "{local["panels"][0]["title"]}"' in diff
    new = dashboard_diff(local, None, "operations")
    assert new.startswith("--- /dev/null") and new.count("\n+") > 100


# -- a tiny Grafana ----------------------------------------------------------
class FakeGrafana(ThreadingHTTPServer):
    """The few Grafana HTTP API endpoints push uses, with token auth."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.dashboards: dict[str, dict] = {}
        self.posts: list[dict] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: FakeGrafana

    def log_message(self, *args: object) -> None:  # quiet
        pass

    def _reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _authorised(self) -> bool:
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            self._reply(401, {"message": "invalid API key"})
            return False
        return True

    def do_GET(self) -> None:
        if not self._authorised():
            return
        prefix = "/api/dashboards/uid/"
        if self.path.startswith(prefix):
            uid = self.path[len(prefix) :]
            found = self.server.dashboards.get(uid)
            if found is None:
                self._reply(404, {"message": "Dashboard not found"})
            else:
                self._reply(200, {"dashboard": found, "meta": {"slug": uid, "folderUid": ""}})
            return
        self._reply(404, {"message": "Not found"})

    def do_POST(self) -> None:
        if not self._authorised():
            return
        if self.path != "/api/dashboards/db":
            self._reply(404, {"message": "Not found"})
            return
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.posts.append(body)
        dashboard = body["dashboard"]
        uid = dashboard["uid"]
        old = self.server.dashboards.get(uid)
        if old is not None and not body.get("overwrite"):
            self._reply(412, {"message": "The dashboard has been changed by someone else"})
            return
        version = (old or {}).get("version", 0) + 1
        self.server.dashboards[uid] = {**dashboard, "id": 1, "version": version}
        self._reply(200, {"id": 1, "uid": uid, "status": "success", "version": version})


@pytest.fixture
def grafana():
    server = FakeGrafana()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_push_creates_then_skips_unchanged_then_updates_changed(grafana) -> None:
    api = connect(grafana.url, TOKEN)
    models = dashboard_json()
    plans = push_dashboards(api, models, folder_uid="lineguard")
    assert [p.status for p in plans] == ["new"] * len(models)
    assert set(grafana.dashboards) == {m["uid"] for m in models.values()}
    assert all(p["overwrite"] and p["folderUid"] == "lineguard" for p in grafana.posts)
    stored = grafana.dashboards["lineguard-operations"]
    assert stored["panels"] == models["operations"]["panels"]

    # Nothing changed: nothing is posted (no new version in Grafana's history).
    grafana.posts.clear()
    assert {p.status for p in push_dashboards(api, models)} == {"unchanged"}
    assert grafana.posts == []

    # Someone edited a dashboard in the UI: dry run shows it, push restores it.
    grafana.dashboards["lineguard-operations"]["title"] = "edited in the UI"
    plans = {p.uid: p for p in plan_push(api, models)}
    assert plans["lineguard-operations"].status == "changed"
    assert '-  "title": "edited in the UI"' in plans["lineguard-operations"].diff
    push_dashboards(api, models, dry_run=True)
    assert grafana.posts == []
    push_dashboards(api, models)
    assert [p["dashboard"]["uid"] for p in grafana.posts] == ["lineguard-operations"]
    assert grafana.dashboards["lineguard-operations"]["version"] == 2


def test_cli_dry_run_prints_the_diff_and_changes_nothing(grafana) -> None:
    runner = CliRunner()
    args = ["dashboards", "push", "--grafana-url", grafana.url, "--token", TOKEN]
    dry = runner.invoke(main, [*args, "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "+++ local:plant-overview" in dry.output
    assert "lineguard-plant-overview: create (dry run)" in dry.output
    assert grafana.dashboards == {}

    done = runner.invoke(main, args)
    assert done.exit_code == 0, done.output
    assert "lineguard-line-drilldown: created" in done.output
    again = runner.invoke(main, [*args, "--dry-run"])
    assert "unchanged" in again.output and "+++" not in again.output

    denied = runner.invoke(
        main, ["dashboards", "push", "--grafana-url", grafana.url, "--token", "x"]
    )
    assert denied.exit_code != 0 and "Unauthorized" in denied.output
