"""OPC UA source: subscribe to a server's tags with asyncua, reconnect on loss.

The source runs an asyncio loop in its own thread. Per connection it resolves
every configured tag (a node id such as ``ns=2;s=Valve1.Pressure``, or a
browse path such as ``/Objects/2:Valve1/2:Pressure``), creates one
subscription (publishing interval) with one monitored item per tag (sampling
interval, queue size, a data-change filter: trigger on status, value *and*
source timestamp, so a steady reading still proves it is fresh; with a
deadband, on status and value beyond the absolute deadband), and hands each
notification's value, status and ``SourceTimestamp`` to the
:class:`~lineguard.ingest.sources.base.TagSink`.

A tag the server does not know (``BadNodeIdUnknown``, a browse path with no
such child) is counted as ``unknown_tag`` and logged once; the other tags are
subscribed. The connection is watched by reading the server state every
``timeout_s``; a failed read, a closed socket or a server restart ends the
connection: the sink marks the source down (its sensors read null), and the
loop reconnects with exponential backoff (``reconnect_min_s`` doubling to
``reconnect_max_s``), re-creating the subscription from scratch (a restarted
server has no session or subscription to resume).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from typing import Any

from lineguard.ingest.gateway_config import OpcUaSource
from lineguard.ingest.sources.base import TagSink
from lineguard.retry import Backoff, async_retrying

__all__ = ["OpcUaReader"]

log = logging.getLogger(__name__)


class OpcUaReader:
    """Read one OPC UA server's tags into a sink, reconnecting as needed.

    Parameters
    ----------
    config : OpcUaSource
        The source section of the gateway config.
    tags : list of str
        The tags to subscribe (node ids or browse paths).
    sink : TagSink
        Where updates go.
    """

    def __init__(self, config: OpcUaSource, tags: list[str], sink: TagSink) -> None:
        self.config = config
        self.tags = list(tags)
        self.sink = sink
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.connected = threading.Event()
        self.connections = 0

    def start(self) -> OpcUaReader:
        """Start the reader thread."""
        self._thread = threading.Thread(
            target=self._run, name=f"opcua-{self.config.name}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Disconnect and end the thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        cfg = self.config
        with contextlib.suppress(Exception):  # stopped during an outage: already logged
            async for attempt in async_retrying(
                f"OPC UA {cfg.endpoint}",
                Backoff(cfg.reconnect_min_s, max(cfg.reconnect_min_s, cfg.reconnect_max_s)),
                until=self._stop.is_set,
                sleep=self._sleep,
                logger=log,
                level=logging.INFO,
            ):
                with attempt:
                    if not self._stop.is_set():
                        await self._connection()

    async def _connection(self) -> None:
        """One connection until it ends; any failure ends it, never the gateway."""
        try:
            await self._session()
        except Exception as exc:
            self.connected.clear()
            self.sink.source_down(self.config.name, f"{type(exc).__name__}: {exc}")
            raise

    async def _sleep(self, seconds: float) -> None:
        end = asyncio.get_running_loop().time() + seconds
        while not self._stop.is_set() and asyncio.get_running_loop().time() < end:
            await asyncio.sleep(0.05)

    async def _client(self) -> Any:
        from asyncua import Client, ua
        from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256

        cfg = self.config
        client = Client(cfg.endpoint, timeout=cfg.timeout_s)
        client.session_timeout = 30_000
        client.application_uri = cfg.application_uri
        client.name = client.description = f"LineGuard gateway ({cfg.name})"
        if cfg.security_policy == "Basic256Sha256":
            mode = getattr(ua.MessageSecurityMode, cfg.security_mode)
            await client.set_security(
                SecurityPolicyBasic256Sha256,
                certificate=str(cfg.certificate),
                private_key=str(cfg.private_key),
                server_certificate=str(cfg.server_certificate) if cfg.server_certificate else None,
                mode=mode,
            )
        if cfg.username:
            client.set_user(cfg.username)
        if cfg.password is not None:
            client.set_password(cfg.password.get_secret_value())
        return client

    async def _resolve(self, client: Any) -> dict[Any, str]:
        """Node -> tag, for every tag the server knows."""
        from asyncua import ua

        nodes: dict[Any, str] = {}
        for tag in self.tags:
            try:
                if tag.startswith("/"):
                    parts = [p for p in tag.split("/") if p]
                    if parts and parts[0] in ("Objects", "0:Objects"):
                        parts = parts[1:]
                    node = await client.nodes.objects.get_child(parts)
                else:
                    node = client.get_node(tag)
                    await node.read_browse_name()  # fails for an unknown node id
            except (ua.UaStatusCodeError, ua.UaError, ValueError) as exc:
                self.sink.fault(
                    "unknown_tag",
                    f"{self.config.name}:{tag}",
                    f"expected a node on {self.config.endpoint}; the server answered {exc!r}",
                )
                continue
            nodes[node] = tag
        return nodes

    async def _session(self) -> None:
        from asyncua import ua

        cfg = self.config
        client = await self._client()
        await client.connect()
        try:
            nodes = await self._resolve(client)
            handler = _Handler(self, nodes)
            sub = await client.create_subscription(cfg.publishing_interval_s * 1000, handler)
            if cfg.deadband > 0:
                mfilter = ua.DataChangeFilter(
                    Trigger=ua.DataChangeTrigger.StatusValue,
                    DeadbandType=ua.DeadbandType.Absolute,
                    DeadbandValue=cfg.deadband,
                )
            else:
                mfilter = ua.DataChangeFilter(Trigger=ua.DataChangeTrigger.StatusValueTimestamp)
            results = await sub._subscribe(
                list(nodes),
                ua.AttributeIds.Value,
                mfilter=mfilter,
                queuesize=cfg.queue_size,
                sampling_interval=cfg.sampling_interval_s * 1000,
            )
            for node, result in zip(list(nodes), results, strict=True):
                if isinstance(result, ua.StatusCode):
                    self.sink.fault(
                        "unknown_tag",
                        f"{cfg.name}:{nodes[node]}",
                        f"expected a monitorable value node; the server answered {result!r}",
                    )
            self.connections += 1
            self.sink.source_up(cfg.name)
            self.connected.set()
            log.info(
                "OPC UA %s: subscribed to %d of %d tags", cfg.endpoint, len(nodes), len(self.tags)
            )
            while not self._stop.is_set():
                await self._sleep(cfg.timeout_s / 2)
                # A read proves the session; a restarted server fails it.
                await asyncio.wait_for(
                    client.nodes.server_state.read_value(), timeout=cfg.timeout_s
                )
        finally:
            self.connected.clear()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.disconnect(), timeout=2.0)


class _Handler:
    """asyncua subscription handler: notifications -> sink."""

    def __init__(self, reader: OpcUaReader, nodes: dict[Any, str]) -> None:
        self.reader = reader
        self.nodes = nodes
        self.source = reader.config.name

    def datachange_notification(self, node: Any, val: Any, data: Any) -> None:
        dv = data.monitored_item.Value
        stamp = dv.SourceTimestamp or dv.ServerTimestamp
        # asyncua gives naive datetimes in UTC; epoch microseconds from them.
        source_us = _epoch_us(stamp) if stamp is not None else -1
        good = dv.StatusCode is None or dv.StatusCode.is_good()
        if not good and dv.StatusCode.value == _WAITING_FOR_INITIAL_DATA:
            return  # no reading yet (a server starting up): nothing to hold or count
        if not good:
            val = f"status {dv.StatusCode.name}"  # what the log shows instead of a value
        self.reader.sink.push(self.source, self.nodes.get(node), val, source_us, good)

    def status_change_notification(self, status: Any) -> None:
        log.warning("OPC UA %s: subscription status %s", self.reader.config.endpoint, status)


_EPOCH = None
_WAITING_FOR_INITIAL_DATA = 0x80320000  # StatusCodes.BadWaitingForInitialData


def _epoch_us(stamp: Any) -> int:
    global _EPOCH
    if _EPOCH is None:
        from datetime import datetime, timezone

        _EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
    if stamp.tzinfo is None:
        from datetime import timezone

        stamp = stamp.replace(tzinfo=timezone.utc)
    delta = stamp - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds
