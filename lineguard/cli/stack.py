"""``lineguard stack up``: a local broker and InfluxDB for trying LineGuard out."""

from __future__ import annotations

import signal
import threading

import click

__all__ = ["stack"]


@click.group()
def stack() -> None:
    """A local Kafka-protocol broker and InfluxDB, for trying LineGuard out."""


@stack.command("up")
@click.option("--keep", is_flag=True, help="Keep the data directory on exit.")
def stack_up(keep: bool) -> None:
    """Start the broker and InfluxDB; print their settings; stop on Ctrl-C."""
    from lineguard.stack import LocalStack

    with LocalStack(keep=keep) as local:
        click.echo("LocalStack running; in another shell:")
        for name, value in local.env().items():
            click.echo(f"  export {name}={value}")
        click.echo(f"data in {local.workdir}; Ctrl-C stops it")
        done = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: done.set())
        done.wait()
