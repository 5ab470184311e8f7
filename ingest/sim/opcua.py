"""An OPC UA server (asyncua) that plays recorded runs as live tags.

For the demo, the tests, the bench and a site's commissioning: every run
(SKAB-layout CSV) becomes an object ``<line>`` under ``Objects`` with one
Double variable per sensor, node id ``ns=<idx>;s=<line>.<sensor>`` (browse
path ``/Objects/<idx>:<line>/<idx>:<sensor>``), where ``idx`` is the index of
the namespace :data:`NAMESPACE`. Row by row, at the run's own pace divided
by ``speed``, each variable is written with the recorded value and the row's
time as ``SourceTimestamp`` (kept as recorded, or shifted so the first row is
now with ``retime``). An empty cell is written with status ``BadNoData``.

``faults`` inject bad input for the tests: ``(line, sensor, kind, start,
stop)`` with kind ``bad_quality``, ``string``, ``bool``, ``nan`` or ``inf``
for rows ``start <= i < stop``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from lineguard.ingest.csv_runs import RecordedRun

__all__ = ["NAMESPACE", "SimFault", "line_name", "serve_runs"]

log = logging.getLogger(__name__)

NAMESPACE = "urn:lineguard:sim"


@dataclass(frozen=True)
class SimFault:
    """Bad input to inject: ``kind`` on ``line``/``sensor`` for rows [start, stop)."""

    line: str
    sensor: str
    kind: str
    start: int
    stop: int


def line_name(path: Path) -> str:
    """The line id a run plays as: ``valve1/0.csv`` -> ``valve1-0``."""
    return f"{path.parent.name}-{path.stem}"


async def _build(
    server: object, runs: list[tuple[str, RecordedRun]], idx: int
) -> dict[str, list[object]]:
    objects = server.nodes.objects  # type: ignore[attr-defined]
    nodes: dict[str, list[object]] = {}
    for line, run in runs:
        obj = await objects.add_object(idx, line)
        nodes[line] = [
            await obj.add_variable(f"ns={idx};s={line}.{sensor}", f"{idx}:{sensor}", 0.0)
            for sensor in run.sensors
        ]
    return nodes


async def serve_runs(
    runs: list[tuple[str, RecordedRun]],
    *,
    port: int,
    speed: float = 1.0,
    retime: bool = False,
    loop: bool = False,
    faults: tuple[SimFault, ...] = (),
    certificate: Path | None = None,
    private_key: Path | None = None,
    users: dict[str, str] | None = None,
    stop: asyncio.Event | None = None,
    wait_for_items: int = 0,
    security_modes: tuple[str, ...] = ("SignAndEncrypt", "Sign"),
) -> None:
    """Serve ``runs`` (line id, run) on ``opc.tcp://127.0.0.1:port`` until stopped.

    With ``certificate`` and ``private_key`` only Basic256Sha256 endpoints
    are offered, in the ``security_modes`` given (``Sign``,
    ``SignAndEncrypt``: a server offering only one tests that the gateway
    asks for exactly the mode it is configured with); with ``users`` only
    those user/password pairs may connect.
    """
    from asyncua import Server, ua
    from asyncua.crypto.permission_rules import User, UserRole
    from asyncua.server.user_managers import UserManager

    _hand_over_without_copy()

    class _Users(UserManager):
        def get_user(self, iserver, username=None, password=None, certificate=None):  # type: ignore[no-untyped-def]
            if users is None:
                return User(role=UserRole.User)
            if username in users and users[username] == password:
                return User(role=UserRole.User)
            return None

    server = Server(user_manager=_Users())
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/lineguard/")
    server.set_server_name("LineGuard simulator")
    if certificate is not None and private_key is not None:
        await server.load_certificate(str(certificate))
        await server.load_private_key(str(private_key))
        unknown = set(security_modes) - {"Sign", "SignAndEncrypt"}
        if unknown or not security_modes:
            raise ValueError(
                f"expected security modes Sign and/or SignAndEncrypt; got {security_modes!r}"
            )
        server.set_security_policy(
            [getattr(ua.SecurityPolicyType, f"Basic256Sha256_{m}") for m in security_modes]
        )
    if users is not None:
        server.set_identity_tokens([ua.UserNameIdentityToken])
    idx = await server.register_namespace(NAMESPACE)
    nodes = await _build(server, runs, idx)
    # Until the first row is played the tags hold no reading: a client that
    # subscribes early gets "waiting for initial data", stamped just before
    # the run starts, not a made-up 0.0 stamped now.
    first_us = time.time_ns() // 1000 if retime else min(int(r.time_us[0]) for _, r in runs)
    waiting = ua.DataValue(
        ua.Variant(math.nan, ua.VariantType.Double),
        StatusCode=ua.StatusCode(ua.StatusCodes.BadWaitingForInitialData),
        SourceTimestamp=datetime.fromtimestamp((first_us - 1_000_000) / 1e6, tz=timezone.utc),
    )
    for line_nodes in nodes.values():
        for node in line_nodes:
            await _write(server, node.nodeid, waiting)
    fault_map: dict[tuple[str, int], list[SimFault]] = {}
    for fault in faults:
        line_sensors = dict(runs)[fault.line].sensors
        fault_map.setdefault((fault.line, line_sensors.index(fault.sensor)), []).append(fault)
    stop = stop or asyncio.Event()
    async with server:
        print(f"opcua simulator serving on opc.tcp://127.0.0.1:{port}/lineguard/", flush=True)
        if wait_for_items:
            # Commissioning and tests: play only once a client monitors the
            # tags, so it sees the run from its first row.
            await _wait_for_items(server, wait_for_items, stop)
        while True:
            await _play(server, runs, nodes, speed, retime, fault_map, stop, ua)
            if not loop or stop.is_set():
                break
        print("opcua simulator: all rows played", flush=True)
        await stop.wait()


async def _wait_for_items(server, count: int, stop: asyncio.Event) -> None:  # type: ignore[no-untyped-def]
    subs = server.iserver.subscription_service.subscriptions
    while not stop.is_set():
        items = sum(len(s.monitored_item_srv._monitored_items) for s in list(subs.values()))
        if items >= count:
            return
        await asyncio.sleep(0.05)


async def _play(server, runs, nodes, speed, retime, fault_map, stop, ua) -> None:  # type: ignore[no-untyped-def]
    # All runs in one timeline, by row time relative to each run's start.
    if retime:
        # Start on a whole second: rows are written when they are stamped.
        await asyncio.sleep(1.0 - (time.time_ns() // 1000 % 1_000_000) / 1e6)
    started = time.monotonic()
    now_us = time.time_ns() // 1000
    events = []
    for line, run in runs:
        offset = (now_us - now_us % 1_000_000 - int(run.time_us[0])) if retime else 0
        for i in range(len(run)):
            events.append((int(run.time_us[i] - run.time_us[0]), line, run, i, offset))
    events.sort(key=lambda e: (e[0], e[1]))
    for rel_us, line, run, i, offset in events:
        if stop.is_set():
            return
        due = rel_us / 1e6 / speed if speed > 0 else 0.0
        wait = due - (time.monotonic() - started)
        # Behind schedule, still yield every row: the server publishes from
        # the same event loop, and a writer that never awaits starves it.
        await asyncio.sleep(max(wait, 0.0))
        stamp = datetime.fromtimestamp((int(run.time_us[i]) + offset) / 1e6, tz=timezone.utc)
        for column, node in enumerate(nodes[line]):
            value = float(run.values[i, column])
            status = ua.StatusCode(ua.StatusCodes.Good)
            variant = ua.Variant(value, ua.VariantType.Double)
            if math.isnan(value):
                status = ua.StatusCode(ua.StatusCodes.BadNoData)
            for fault in fault_map.get((line, column), ()):
                if fault.start <= i < fault.stop:
                    variant, status = _faulty(fault.kind, value, ua)
            dv = ua.DataValue(variant, StatusCode=status, SourceTimestamp=stamp)
            await _write(server, node.nodeid, dv)


def _hand_over_without_copy() -> None:
    """Let the server keep the simulator's DataValues without deep-copying them.

    asyncua's monitored items deep-copy every written value, so that a
    caller that later mutates its object cannot change what was reported:
    that copy is three quarters of the simulator's CPU time (profiled at
    20k updates/s). The simulator builds a new DataValue per write and never
    touches it again, so in this process the copy protects nothing; the
    simulator can then offer the gateway several times the updates per
    second on one core (``bench/gateway.py``). Only the simulator's process
    is changed; the gateway is an ordinary client.
    """
    from asyncua.server import monitored_item_service as mis

    def set_current_datavalue(self, cur_val):  # type: ignore[no-untyped-def]
        self.old_dvalue = self.current_dvalue
        self.current_dvalue = cur_val

    mis.MonitoredItemValues.set_current_datavalue = set_current_datavalue


async def _write(server, nodeid, dv) -> None:  # type: ignore[no-untyped-def]
    """Set a variable's value and notify its monitored items.

    asyncua's own write refuses a value whose type differs from the
    variable's (a string into a Double): the simulator plays a PLC that
    serves exactly that, so it sets the value itself and runs the same
    data-change callbacks the server's write runs.
    """
    from asyncua import ua

    attval = server.iserver.aspace._nodes[nodeid].attributes[ua.AttributeIds.Value]
    attval.value = dv
    attval.value_callback = None
    for handle, callback in list(attval.datachange_callbacks.items()):
        await callback(handle, dv)


def _faulty(kind: str, value: float, ua):  # type: ignore[no-untyped-def]
    good = ua.StatusCode(ua.StatusCodes.Good)
    if kind == "bad_quality":
        return ua.Variant(value, ua.VariantType.Double), ua.StatusCode(
            ua.StatusCodes.BadSensorFailure
        )
    if kind == "string":
        return ua.Variant(f"{value:.3f}", ua.VariantType.String), good
    if kind == "bool":
        return ua.Variant(True, ua.VariantType.Boolean), good
    if kind == "nan":
        return ua.Variant(math.nan, ua.VariantType.Double), good
    if kind == "inf":
        return ua.Variant(math.inf, ua.VariantType.Double), good
    raise ValueError(f"expected a fault kind bad_quality, string, bool, nan or inf; got {kind!r}")


def main_serve(runs: list[tuple[str, RecordedRun]], **kwargs: object) -> None:
    """Blocking entry point for the CLI (Ctrl-C / SIGTERM end it)."""
    import signal

    async def _main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await serve_runs(runs, stop=stop, **kwargs)  # type: ignore[arg-type]

    logging.getLogger("asyncua").setLevel(logging.WARNING)
    asyncio.run(_main())
    sys.stdout.flush()
