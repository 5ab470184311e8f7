"""``lineguard worker``: run a stream worker (Faust) until stopped."""

from __future__ import annotations

from pathlib import Path

import click

from lineguard.cli._common import registry_option, settings_for

__all__ = ["worker"]


@click.command()
@click.option(
    "--role",
    type=click.Choice(["score", "archive"]),
    default="score",
    show_default=True,
    help="score: apply line models; archive: store raw sensor values.",
)
@registry_option
@click.option("--loglevel", default="INFO", show_default=True)
def worker(role: str, registry: Path | None, loglevel: str) -> None:
    """Run a stream worker (Faust) until stopped."""
    from lineguard.stream.worker import run_worker

    run_worker(settings_for(registry), role=role, loglevel=loglevel)
