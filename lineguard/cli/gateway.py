"""``lineguard gateway replay``: send a recorded run as a line's live telemetry."""

from __future__ import annotations

from pathlib import Path

import click

from lineguard.cli._common import settings_for

__all__ = ["gateway"]


@click.group()
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

    settings = settings_for()
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
