"""``lineguard settings``: the settings in effect, or their reference as Markdown."""

from __future__ import annotations

import click

from lineguard.cli._common import settings_for

__all__ = ["settings"]


def _flat(prefix: str, values: dict[str, object]) -> list[tuple[str, object]]:
    from lineguard.settings import _NESTED

    rows: list[tuple[str, object]] = []
    for name, value in values.items():
        if isinstance(value, dict):
            rows += _flat(prefix + _NESTED.get(name, f"{name.upper()}_"), value)
        else:
            rows.append((f"{prefix}{name.upper()}", value))
    return rows


@click.command("settings")
@click.option(
    "--markdown",
    is_flag=True,
    help="Print the reference of every setting (docs/settings.md is this output).",
)
def settings(markdown: bool) -> None:
    """Show every LINEGUARD_* setting in effect (secrets redacted)."""
    from lineguard.settings import settings_reference

    if markdown:
        click.echo(settings_reference())
        return
    # model_dump keeps SecretStr objects (shown as **********) and the URL
    # serializer redacts a password in it.
    values = settings_for().model_dump(mode="json")
    for name, value in _flat("LINEGUARD_", values):
        click.echo(f"{name}={'' if value is None else value}")
