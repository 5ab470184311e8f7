"""The ``lineguard`` command line."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from pathlib import Path

import click

from lineguard.settings import Settings, get_settings

__all__ = ["main"]


def _settings(registry: Path | None = None) -> Settings:
    settings = get_settings()
    if registry is not None:
        settings = settings.model_copy(update={"registry_dir": registry})
    return settings


registry_option = click.option(
    "--registry",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Model registry directory (default: $LINEGUARD_REGISTRY_DIR or ./registry).",
)


@click.group()
@click.option("-v", "--verbose", count=True, help="More log output.")
def main(verbose: int) -> None:
    """LineGuard: catch manufacturing quality problems while they happen."""
    level = logging.WARNING - 10 * verbose
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


# -- gateway ---------------------------------------------------------------
@main.group()
def gateway() -> None:
    """Edge gateway: send a line's telemetry to Kafka."""


@gateway.command("replay")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--line", "line_id", required=True, help="Production line id (the Kafka key).")
@click.option(
    "--speed",
    type=float,
    default=1.0,
    show_default=True,
    help="Times faster than recorded; 0 sends as fast as possible.",
)
@click.option("--site", default=None, help="Site id (default: $LINEGUARD_SITE).")
@click.option("--gateway-id", default="gw-replay", show_default=True)
@click.option(
    "--max-frames", type=int, default=500, show_default=True, help="Most frames per Kafka record."
)
@click.option(
    "--flush-interval",
    type=float,
    default=0.5,
    show_default=True,
    help="Longest a frame waits in the gateway, in seconds.",
)
@click.option("--retime", is_flag=True, help="Stamp frames with the current time.")
@click.option(
    "--state-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Where the gateway keeps its sequence number across restarts.",
)
@click.option(
    "--buffer-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Store-and-forward disk buffer (default: $LINEGUARD_BUFFER_DIR, or "
    "STATE_DIR/buffer-GATEWAY with --state-dir); records survive broker outages and restarts.",
)
def gateway_replay(
    file: Path,
    line_id: str,
    speed: float,
    site: str | None,
    gateway_id: str,
    max_frames: int,
    flush_interval: float,
    retime: bool,
    state_dir: Path | None,
    buffer_dir: Path | None,
) -> None:
    """Replay FILE (SKAB CSV layout) as a line's live telemetry."""
    from lineguard.ingest.buffer import DiskBuffer
    from lineguard.ingest.csv_runs import read_run
    from lineguard.ingest.gateway import SequenceCounter, StoreAndForward, make_producer, replay

    settings = _settings()
    run = read_run(file)
    sequence = SequenceCounter(state_dir / f"{gateway_id}.seq" if state_dir else None)
    producer = make_producer(settings.kafka)
    buffer_dir = buffer_dir or settings.buffer.dir
    if buffer_dir is None and state_dir is not None:
        buffer_dir = state_dir / f"buffer-{gateway_id}"
    forward = None
    if buffer_dir is not None:
        b = settings.buffer
        forward = StoreAndForward(
            producer,
            settings.topics.telemetry,
            DiskBuffer(
                buffer_dir,
                max_bytes=b.max_bytes,
                segment_bytes=b.segment_bytes,
                when_full=b.when_full,
                fsync=b.fsync,
            ),
            historical_after_s=b.historical_after_s,
            producer_factory=lambda: make_producer(settings.kafka),
        )
    try:
        stats = replay(
            run,
            producer=producer,
            topic=settings.topics.telemetry,
            site=site or settings.site,
            line=line_id,
            gateway_id=gateway_id,
            sequence=sequence,
            speed=speed,
            max_frames=max_frames,
            flush_interval_s=flush_interval,
            retime=retime,
            forward=forward,
        )
    finally:
        if forward is not None:
            forward.buffer.close()
            # Unacknowledged records are still in the disk buffer, so a broker
            # that is down must not hold the gateway's exit forever.
            if forward.producer is not producer:  # replaced: a wedged client
                forward.producer.close(timeout=10)
            producer.close(timeout=10)
        else:
            producer.close()
    click.echo(
        f"sent {stats.frames} frames of line {line_id} in {stats.records} records "
        f"({stats.bytes / 1024:.0f} KiB, {stats.seconds:.1f} s)"
    )
    if forward is not None:
        click.echo(
            f"buffer {buffer_dir}: {stats.historical} records sent as historical, "
            f"{stats.dropped} dropped (full), {stats.buffered} still buffered"
        )


# -- training and models ---------------------------------------------------
@main.command()
@click.argument(
    "file", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option("--line", "line_id", required=True, help="Production line id.")
@click.option("--rows", type=int, default=None, help="Train on the first N rows only.")
@click.option("--detector", default=None, help="Detector name (default: the library default).")
@click.option(
    "--target-far",
    type=float,
    default=None,
    help="Target false-alarm rate on normal frames, e.g. 0.005.",
)
@click.option(
    "--activate/--no-activate",
    default=None,
    help="Make the new version the one workers serve (default: only a line's first model).",
)
@click.option(
    "--from-influx", is_flag=True, help="Train on the line's archived telemetry in InfluxDB."
)
@click.option("--start", default=None, help="With --from-influx: from (ISO 8601, UTC).")
@click.option("--end", default=None, help="With --from-influx: until (inclusive).")
@registry_option
def train(
    file: Path | None,
    line_id: str,
    rows: int | None,
    detector: str | None,
    target_far: float | None,
    activate: bool | None,
    from_influx: bool,
    start: str | None,
    end: str | None,
    registry: Path | None,
) -> None:
    """Train a line's model on normal rows of FILE (or of InfluxDB history), store
    a new version and print its evaluation against the active version."""
    from lineguard.models.commands import run_training

    run_training(
        file=file,
        line_id=line_id,
        rows=rows,
        detector=detector,
        target_far=target_far,
        activate=activate,
        registry=registry,
        from_influx=from_influx,
        start=start,
        end=end,
    )


@main.group()
def models() -> None:
    """Inspect the model registry."""


@models.command("list")
@registry_option
def models_list(registry: Path | None) -> None:
    """List every line's model versions."""
    from rich.console import Console
    from rich.table import Table

    from lineguard.models.registry import Registry

    settings = _settings(registry)
    rows = Registry(settings.registry_dir).list_models()
    if not rows:
        click.echo(f"no models in {settings.registry_dir}")
        return
    table = Table(title=f"models in {settings.registry_dir}")
    for column in (
        "line",
        "version",
        "active",
        "detector",
        "sensors",
        "rows",
        "threshold",
        "target FAR",
        "created (UTC)",
    ):
        table.add_column(column)
    for m in rows:
        table.add_row(
            m["line_id"],
            m["version"],
            "*" if m["active"] else "",
            m["detector"]["name"],
            str(len(m["sensors"])),
            str(m["training"]["rows"]),
            f"{m['threshold']:.4g}",
            f"{m['target_far']:.2%}",
            m["created_at"][:19],
        )
    Console().print(table)


def _add_lifecycle_commands() -> None:
    from lineguard.models.commands import feedback, model_commands

    for command in model_commands:
        models.add_command(command)
    main.add_command(feedback)


_add_lifecycle_commands()


def _add_dashboard_commands() -> None:
    # lineguard dashboards generate|push, lineguard report incident
    from lineguard.dashboards.commands import dashboards, report

    main.add_command(dashboards)
    main.add_command(report)


_add_dashboard_commands()


def _add_evaluate_command() -> None:
    # lineguard evaluate DIR --train-rows N ... (labelled folders, the worker's path)
    from lineguard.models.evaluate_cli import evaluate

    main.add_command(evaluate)


_add_evaluate_command()


# -- worker ----------------------------------------------------------------
@main.command()
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

    run_worker(_settings(registry), role=role, loglevel=loglevel)


# -- local stack and demo --------------------------------------------------
@main.group()
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


@main.command()
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
def demo(follow: bool, speed: float, data: Path | None, max_lines: int, train_rows: int) -> None:
    """Start the stack, train, replay several lines live, and summarise."""
    from lineguard.demo import run_demo

    code = run_demo(
        data_dir=data, speed=speed, follow=follow, max_lines=max_lines, train_rows=train_rows
    )
    sys.exit(code)


if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
