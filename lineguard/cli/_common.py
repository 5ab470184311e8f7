"""What every ``lineguard`` command shares: the settings override, the
``--registry`` option, time parsing and table output."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import click

from lineguard.settings import Settings, get_settings

__all__ = [
    "console",
    "fmt",
    "iso",
    "noise_window_option",
    "registry_option",
    "settings_for",
    "time_range",
    "time_us",
]


def settings_for(registry: Path | None = None) -> Settings:
    """The process settings, with ``--registry`` (when given) in place of the setting."""
    current = get_settings()
    if registry is not None:
        current = current.model_copy(update={"registry_dir": registry})
    return current


registry_option = click.option(
    "--registry",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Model registry directory (default: $LINEGUARD_REGISTRY_DIR, else "
    "$LINEGUARD_STATE_DIR/registry).",
)


noise_window_option = click.option(
    "--noise-window",
    type=click.IntRange(min=2),
    default=None,
    help="Train with the noise check on, over N rows (e.g. 20): a noisy transmitter, a "
    "sticking valve. Off by default (it costs about a tenth of scoring).",
)


def time_us(text: str | None, what: str) -> int | None:
    """``--start``/``--end``/``--at``: ISO 8601 (UTC if no offset) or epoch microseconds."""
    from lineguard.models.feedback import InvalidFeedback, parse_time_us

    if text is None:
        return None
    try:
        return parse_time_us(int(text) if text.lstrip("-").isdigit() else text, what)
    except InvalidFeedback as exc:
        raise click.BadParameter(str(exc), param_hint=f"--{what}") from exc


def time_range(
    start: str | None, end: str | None, *, required: bool = False
) -> tuple[int | None, int | None]:
    """``--start``/``--end`` as microseconds, refused in the user's own words
    when reversed (``--end`` before ``--start``) or, with ``required``, missing."""
    start_us, end_us = time_us(start, "start"), time_us(end, "end")
    if required and (start_us is None or end_us is None):
        raise click.UsageError("expected both --start and --end (ISO 8601, UTC if no offset)")
    if start_us is not None and end_us is not None and end_us < start_us:
        raise click.BadParameter(
            f"expected a time after --start {start}; got --end {end}", param_hint="--end"
        )
    return start_us, end_us


def iso(us: int) -> str:
    """Epoch microseconds as an ISO 8601 UTC time."""
    return datetime.fromtimestamp(us / 1e6, timezone.utc).isoformat()


def console() -> Any:
    """A rich console for tables (wide enough for version columns when piped)."""
    from rich.console import Console

    return Console(width=120)


def fmt(value: Any) -> str:
    """A table cell: ``-`` for missing, 4 significant digits for floats."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
