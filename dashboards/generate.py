"""Regenerate the committed dashboard JSON from the Python definitions.

``lineguard dashboards generate`` rewrites ``dashboards/json/*.json``
(:func:`write_all`); ``--check`` only reports files that differ
(:func:`stale_files`; the tests assert none do), so the JSON Grafana
provisions from can never drift from the code.
"""

from __future__ import annotations

import json
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
