"""Regenerate the committed dashboard JSON from the Python definitions.

``python -m lineguard.dashboards.generate`` (or ``lineguard dashboards
generate``) rewrites ``dashboards/json/*.json``; ``--check`` only reports
files that differ (the tests assert none do), so the JSON Grafana
provisions from can never drift from the code.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from lineguard.dashboards.definitions import all_dashboards

__all__ = ["JSON_DIR", "dashboard_json", "render", "stale_files", "write_all"]

#: Where the generated dashboards are committed (Grafana's provisioning reads them).
JSON_DIR = Path(__file__).resolve().parent / "json"


def dashboard_json() -> dict[str, dict[str, Any]]:
    """File stem -> Grafana dashboard JSON model, for every dashboard."""
    return {name: dash.to_json() for name, dash in all_dashboards().items()}


def render(model: dict[str, Any]) -> str:
    """The exact text committed for a dashboard (stable key order, 2-space indent)."""
    return json.dumps(model, indent=2, ensure_ascii=False) + "\n"


def stale_files(directory: Path = JSON_DIR) -> list[Path]:
    """Committed files that differ from (or are missing against) the generated ones."""
    stale = []
    for name, model in dashboard_json().items():
        path = directory / f"{name}.json"
        if not path.exists() or path.read_text(encoding="utf-8") != render(model):
            stale.append(path)
    return stale


def write_all(directory: Path = JSON_DIR) -> list[Path]:
    """Write every dashboard's JSON; returns the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, model in dashboard_json().items():
        path = directory / f"{name}.json"
        path.write_text(render(model), encoding="utf-8")
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    """``--check``: exit 1 when committed JSON is stale; else regenerate."""
    args = sys.argv[1:] if argv is None else argv
    if "--check" in args:
        stale = stale_files()
        for path in stale:
            print(f"stale: {path} (run python -m lineguard.dashboards.generate)")
        return 1 if stale else 0
    for path in write_all():
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
