"""``lineguard demo``: start the stack, train, replay lines live and summarise."""

from __future__ import annotations

import sys
from pathlib import Path

import click

__all__ = ["demo"]


@click.command()
@click.option("--follow", is_flag=True, help="Keep replaying until Ctrl-C.")
@click.option(
    "--speed", type=float, default=60.0, show_default=True, help="Replay speed (times real time)."
)
@click.option(
    "--data",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Folder of SKAB-layout runs (default: the bundled samples).",
)
@click.option(
    "--lines",
    "max_lines",
    type=int,
    default=5,
    show_default=True,
    help="How many runs to replay as lines.",
)
@click.option(
    "--train-rows",
    type=int,
    default=400,
    show_default=True,
    help="Rows of each run used for training (SKAB's protocol).",
)
@click.option(
    "--source",
    type=click.Choice(["opcua", "sparkplug", "replay"]),
    default="opcua",
    show_default=True,
    help="How the runs reach the gateway: a live OPC UA server or Sparkplug B edge node "
    "(simulators), or the CSV replay.",
)
def demo(
    follow: bool, speed: float, data: Path | None, max_lines: int, train_rows: int, source: str
) -> None:
    """Start the stack, train, play several lines live, and summarise."""
    from lineguard.demo import run_demo

    code = run_demo(
        data_dir=data,
        speed=speed,
        follow=follow,
        max_lines=max_lines,
        train_rows=train_rows,
        source=source,
    )
    sys.exit(code)
