"""``lineguard dashboards ...`` and ``lineguard report incident`` (click)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

__all__ = ["dashboards", "report"]


@click.group()
def dashboards() -> None:
    """Grafana dashboards: regenerate the JSON, push it to a Grafana."""


@dashboards.command("generate")
@click.option("--check", is_flag=True, help="Only report committed JSON that is out of date.")
def dashboards_generate(check: bool) -> None:
    """Regenerate dashboards/json/*.json from the Python definitions."""
    from lineguard.dashboards.generate import stale_files, write_all

    if check:
        stale = stale_files()
        for path in stale:
            click.echo(f"stale: {path} (run lineguard dashboards generate)")
        sys.exit(1 if stale else 0)
    for path in write_all():
        click.echo(f"wrote {path}")


@dashboards.command("push")
@click.option("--grafana-url", required=True, help="e.g. https://grafana.plant.example")
@click.option(
    "--token",
    envvar="GRAFANA_TOKEN",
    default=None,
    help="Service-account token (default: $GRAFANA_TOKEN).",
)
@click.option("--folder-uid", default=None, help="Folder to put the dashboards in.")
@click.option("--dry-run", is_flag=True, help="Print the diff against the server; change nothing.")
def dashboards_push(
    grafana_url: str, token: str | None, folder_uid: str | None, dry_run: bool
) -> None:
    """Provision the dashboards through Grafana's HTTP API."""
    from lineguard.dashboards.generate import dashboard_json
    from lineguard.dashboards.grafana import check_model
    from lineguard.dashboards.model import DATASOURCE_UID
    from lineguard.dashboards.push import connect, push_dashboards

    models = dashboard_json()
    for name, model in models.items():
        problems = check_model(model, [DATASOURCE_UID])
        if problems:
            raise click.ClickException(f"dashboard {name} is invalid: {'; '.join(problems)}")
    try:
        plans = push_dashboards(
            connect(grafana_url, token), models, folder_uid=folder_uid, dry_run=dry_run
        )
    except Exception as exc:  # grafana-client and transport errors alike
        raise click.ClickException(f"Grafana at {grafana_url}: {exc}") from exc
    for plan in plans:
        if dry_run and plan.diff:
            click.echo(plan.diff, nl=False)
        verb = {"new": "create", "changed": "update", "unchanged": "unchanged"}[plan.status]
        if not dry_run and plan.status != "unchanged":
            verb = {"create": "created", "update": "updated"}[verb]
        click.echo(f"{plan.uid}: {verb}{' (dry run)' if dry_run and plan.diff else ''}")


@click.group()
def report() -> None:
    """Reports for people who don't open Grafana."""


@report.command("incident")
@click.argument("incident_id")
@click.option(
    "--png",
    "png",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the picture.",
)
def report_incident(incident_id: str, png: Path) -> None:
    """Render incident INCIDENT_ID (sensors, score, threshold, contributions) as a PNG."""
    from lineguard.cli._common import settings_for
    from lineguard.dashboards.incident_report import IncidentNotFound, render_incident_png
    from lineguard.influx import InfluxV1Client

    with InfluxV1Client(settings_for().influx) as client:
        try:
            out = render_incident_png(client, incident_id, png)
        except IncidentNotFound as exc:
            raise click.ClickException(str(exc)) from exc
    click.echo(f"incident {incident_id}: {out} ({out.stat().st_size / 1024:.0f} KiB)")
