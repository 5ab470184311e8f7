"""``lineguard gateway run`` (the live site gateway) and ``lineguard sim opcua|sparkplug``.

The bodies only parse options and call :mod:`lineguard.ingest.live` and
:mod:`lineguard.ingest.sim`, where the work is done.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import click

__all__ = ["gateway_run", "sim"]

# asyncua logs every subscription step at INFO.
logging.getLogger("asyncua").setLevel(logging.WARNING)


@click.command("run")
@click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="The site's gateway.toml (see examples/gateway/gateway.toml).",
)
@click.option("--duration", type=float, default=None, help="Stop after this many seconds.")
def gateway_run(config_path: Path, duration: float | None) -> None:
    """Read live tags (OPC UA, Sparkplug B, MQTT JSON) and send them as telemetry."""
    from lineguard.ingest.gateway_config import ConfigError, load_config
    from lineguard.ingest.live import run_gateway

    try:
        config = load_config(config_path)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(2)
    summary = run_gateway(config, duration_s=duration)
    click.echo(json.dumps(summary, default=str))


@click.group()
def sim() -> None:
    """Simulators that play recorded runs as a live source."""


def _runs(paths: tuple[Path, ...]) -> list:
    from lineguard.ingest.csv_runs import read_run
    from lineguard.ingest.sim.opcua import line_name

    return [(line_name(p), read_run(p)) for p in paths]


def _faults(specs: tuple[str, ...]) -> tuple:
    from lineguard.ingest.sim.opcua import SimFault

    out = []
    for spec in specs:
        try:
            target, kind, start, stop = spec.rsplit(":", 3)
            line, sensor = target.split("/", 1)
            out.append(SimFault(line, sensor, kind, int(start), int(stop)))
        except ValueError as exc:
            raise click.BadParameter(
                f"expected LINE/SENSOR:KIND:START:STOP; got {spec!r}", param_hint="--fault"
            ) from exc
    return tuple(out)


_RUNS = click.argument(
    "runs", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
_SPEED = click.option(
    "--speed", type=float, default=1.0, show_default=True, help="Times real time."
)
_RETIME = click.option("--retime", is_flag=True, help="Stamp the first row now.")
_LOOP = click.option("--loop", is_flag=True, help="Play the runs again and again.")
_FAULT = click.option(
    "--fault", "faults", multiple=True, help="Inject LINE/SENSOR:KIND:START:STOP (tests)."
)


@sim.command("opcua")
@_RUNS
@click.option("--port", type=int, default=4840, show_default=True)
@_SPEED
@_RETIME
@_LOOP
@_FAULT
@click.option("--cert", type=click.Path(exists=True, path_type=Path), default=None)
@click.option("--key", type=click.Path(exists=True, path_type=Path), default=None)
@click.option("--user", "users", multiple=True, help="USER:PASSWORD allowed to connect.")
@click.option(
    "--security-mode",
    "security_modes",
    multiple=True,
    type=click.Choice(["Sign", "SignAndEncrypt"]),
    help="With --cert/--key: the Basic256Sha256 modes offered (default both).",
)
@click.option(
    "--wait-for-items", type=int, default=0, help="Start playing once this many tags are monitored."
)
def sim_opcua(  # type: ignore[no-untyped-def]
    runs, port, speed, retime, loop, faults, cert, key, users, security_modes, wait_for_items
) -> None:
    """Serve recorded runs as OPC UA tags (ns=<idx>;s=<line>.<sensor>)."""
    from lineguard.ingest.sim.opcua import main_serve

    main_serve(
        _runs(runs),
        port=port,
        speed=speed,
        retime=retime,
        loop=loop,
        faults=_faults(faults),
        certificate=cert,
        private_key=key,
        users=dict(u.split(":", 1) for u in users) if users else None,
        wait_for_items=wait_for_items,
        security_modes=tuple(security_modes) or ("SignAndEncrypt", "Sign"),
    )


@sim.command("sparkplug")
@_RUNS
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=1883, show_default=True)
@click.option("--group", default="LineGuard", show_default=True, help="Sparkplug group id.")
@click.option("--node", default="sim", show_default=True, help="Edge node id.")
@click.option("--username", default=None)
@click.option("--password", default=None)
@_SPEED
@_RETIME
@_LOOP
@_FAULT
@click.option("--start-after", type=float, default=0.0, help="Seconds between births and rows.")
def sim_sparkplug(
    runs, host, port, group, node, username, password, speed, retime, loop, faults, start_after
) -> None:  # type: ignore[no-untyped-def]
    """Publish recorded runs as a Sparkplug B edge node (one device per run)."""
    import signal
    import threading
    import time

    from lineguard.ingest.sim.sparkplug import EdgeNodeSim, publish_runs

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    node_sim = EdgeNodeSim(
        _runs(runs), host, port, group, node, username, password, _faults(faults)
    ).start()
    click.echo(f"sparkplug simulator: edge node {group}/{node} on {host}:{port}")
    time.sleep(start_after)
    try:
        while not stop.is_set():
            publish_runs(node_sim, speed=speed, retime=retime, should_stop=stop.is_set)
            if not loop:
                break
        click.echo("sparkplug simulator: all rows played")
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        node_sim.stop()
