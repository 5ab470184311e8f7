"""``lineguard feedback ...``: QA labels stored in InfluxDB."""

from __future__ import annotations

from typing import Any

import click

from lineguard.cli._common import iso, settings_for, time_range, time_us
from lineguard.settings import Settings

__all__ = ["feedback"]


@click.group()
def feedback() -> None:
    """QA labels: real defect, false alarm, maintenance (stored in InfluxDB)."""


def _store_feedback(settings: Settings, item: Any) -> None:
    from lineguard.influx import InfluxV1Client

    with InfluxV1Client(settings.influx) as client:
        client.create_database()
        client.write(item.to_point(), precision="ns")
    click.echo(
        f"{item.line}: {item.label} from {iso(item.start_us)[:19]} to {iso(item.end_us)[:19]} "
        "UTC stored"
    )


_label_option = click.option(
    "--label",
    type=click.Choice(["real_defect", "false_alarm", "maintenance"]),
    required=True,
)


@feedback.command("mark")
@click.argument("line")
@_label_option
@click.option("--start", required=True, help="ISO 8601 (UTC if no offset) or microseconds.")
@click.option("--end", required=True)
@click.option("--author", default="", help="Who labelled it.")
@click.option("--note", default="")
def feedback_mark(line: str, label: str, start: str, end: str, author: str, note: str) -> None:
    """Label a time range of LINE."""
    from lineguard.models.feedback import Feedback, InvalidFeedback

    start_us, end_us = time_range(start, end, required=True)
    assert start_us is not None and end_us is not None
    try:
        item = Feedback(line, label, start_us, end_us, author, note, "cli")
    except InvalidFeedback as exc:
        raise click.ClickException(str(exc)) from exc
    _store_feedback(settings_for(), item)


@feedback.command("alert")
@click.argument("line")
@_label_option
@click.option("--at", "at", required=True, help="Any time inside the alert.")
@click.option("--author", default="")
@click.option("--note", default="")
def feedback_alert(line: str, label: str, at: str, author: str, note: str) -> None:
    """Label the alert of LINE that was on at time --at (its whole run of alerted frames)."""
    from lineguard.influx import InfluxV1Client
    from lineguard.models.feedback import Feedback, alert_range

    settings = settings_for()
    at_us = time_us(at, "at")
    assert at_us is not None
    with InfluxV1Client(settings.influx) as client:
        try:
            start_us, end_us = alert_range(client, line, at_us)
        except LookupError as exc:
            raise click.ClickException(str(exc)) from exc
    _store_feedback(settings, Feedback(line, label, start_us, end_us, author, note, "cli"))


@feedback.command("list")
@click.argument("line")
@click.option("--start", default=None)
@click.option("--end", default=None)
def feedback_list(line: str, start: str | None, end: str | None) -> None:
    """List LINE's QA labels."""
    from lineguard.influx import InfluxV1Client
    from lineguard.models.feedback import read_feedback

    with InfluxV1Client(settings_for().influx) as client:
        items = read_feedback(client, line, *time_range(start, end))
    if not items:
        click.echo(f"no labels for {line}")
    for f in items:
        click.echo(
            f"{iso(f.start_us)[:19]} .. {iso(f.end_us)[:19]}  {f.label:<12} "
            f"{f.source:<6} {f.author} {f.note}"
        )
