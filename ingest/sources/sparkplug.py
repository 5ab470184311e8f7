"""MQTT sources (paho-mqtt): Sparkplug B edge nodes, and plain JSON topics.

**Sparkplug B.** The reader subscribes to one edge node's topics
(``spBv1.0/<group>/{NBIRTH,NDEATH,NDATA,DBIRTH,DDEATH,DDATA}/<node>[/<device>]``)
and decodes payloads with the protobuf classes generated from the official
``sparkplug_b.proto`` (``sparkplug_b_pb2.py`` beside this file; why not a
Sparkplug package: ``docs/gateway.md``). Births carry each metric's name and
alias; data messages may carry aliases only, resolved through the birth.
Every message of the node carries ``seq`` (0-255, wrapping): a gap means
messages were lost, so the reader counts it and asks the node for a rebirth
(NCMD ``Node Control/Rebirth``), as it does for an alias no birth declared.
A second birth without a death in between is counted (``duplicate_birth``)
and replaces the first. A payload that does not parse is counted
(``malformed_payload``) and dropped; nothing else is affected. NDEATH, a lost
connection or a broker restart mark the source down (its sensors read null)
until the next birth; paho reconnects with backoff and the reader
re-subscribes and requests a rebirth, so it never works from a stale birth.

**Plain JSON** (sites without Sparkplug): one topic per tag, the payload a
number or an object with a value, optional timestamp (epoch milliseconds or
ISO-8601 with a zone) and optional quality.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from datetime import datetime
from typing import Any

import orjson

from lineguard.ingest.gateway_config import MqttJsonSource, SparkplugSource
from lineguard.ingest.sources.base import TagSink

__all__ = [
    "REBIRTH_METRIC",
    "MqttJsonReader",
    "SparkplugReader",
    "metric_value",
    "rebirth_payload",
]

log = logging.getLogger(__name__)

REBIRTH_METRIC = "Node Control/Rebirth"
_BOOLEAN = 11
_REBIRTH_EVERY_S = 2.0  # at most one rebirth request per this long
# Births this soon after a rebirth request are answers, not duplicates. A node
# may send two in that time: its own start-up birth crossing our request, then
# the answer to it.
_REBIRTH_ANSWER_S = 10.0


def _pb() -> Any:
    from lineguard.ingest.sources import sparkplug_b_pb2

    return sparkplug_b_pb2


def metric_value(metric: Any) -> Any:
    """A metric's value as Python (float, int, bool, str, bytes, or None if null)."""
    if metric.is_null:
        return None
    kind = metric.WhichOneof("value")
    return None if kind is None else getattr(metric, kind)


def rebirth_payload() -> bytes:
    """The NCMD payload asking an edge node to publish its births again."""
    payload = _pb().Payload()
    payload.timestamp = int(time.time() * 1000)
    metric = payload.metrics.add()
    metric.name = REBIRTH_METRIC
    metric.datatype = _BOOLEAN
    metric.boolean_value = True
    return payload.SerializeToString()


def _mqtt_client(config: SparkplugSource | MqttJsonSource, role: str) -> Any:
    import paho.mqtt.client as mqtt

    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=config.client_id or f"lineguard-{role}-{config.name}-{time.time_ns() % 10**9}",
        clean_session=True,
    )
    if config.username:
        client.username_pw_set(
            config.username, config.password.get_secret_value() if config.password else None
        )
    if config.tls or config.ca_file or config.cert_file:
        client.tls_set(
            ca_certs=str(config.ca_file) if config.ca_file else None,
            certfile=str(config.cert_file) if config.cert_file else None,
            keyfile=str(config.key_file) if config.key_file else None,
        )
    client.reconnect_delay_set(round(config.reconnect_min_s) or 1, round(config.reconnect_max_s))
    return client


class _MqttReader:
    config: SparkplugSource | MqttJsonSource
    sink: TagSink

    def __init__(self, config: Any, sink: TagSink, role: str) -> None:
        self.config = config
        self.sink = sink
        self.client = _mqtt_client(config, role)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_subscribe = self._on_subscribe
        self.connected = threading.Event()
        #: Set once the broker acknowledged this connection's subscriptions.
        self.subscribed = threading.Event()
        self.connections = 0
        #: Connection attempts that failed before MQTT (TCP or TLS), retried.
        self.connect_failures = 0

    def start(self) -> _MqttReader:
        """Connect (asynchronously; paho retries with backoff) and start the loop."""
        self.client.connect_async(self.config.host, self.config.port, self.config.keepalive_s)
        self.client.loop_start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Disconnect and stop the network thread."""
        self.client.disconnect()
        self.client.loop_stop()

    def _on_disconnect(
        self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        self.connected.clear()
        self.subscribed.clear()
        self.sink.source_down(self.config.name, f"MQTT disconnected: {reason}")

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            self.sink.source_down(self.config.name, f"MQTT connection refused: {reason}")
            return
        self.connections += 1
        self.connected.set()
        self._subscribe(client)

    def _on_connect_fail(self, client: Any, userdata: Any) -> None:
        # paho calls this inside its ``except OSError`` around the connect
        # (then retries with backoff), so the error is the one being handled:
        # a refused TCP connection, or a TLS handshake that failed, e.g. a
        # broker certificate the configured CA did not sign.
        exc = sys.exc_info()[1]
        self.connect_failures += 1
        cfg = self.config
        what = (
            f"a TLS connection to {cfg.host}:{cfg.port} verified with "
            f"{cfg.ca_file or 'the system CAs'}"
            if cfg.tls or cfg.ca_file or cfg.cert_file
            else f"an MQTT connection to {cfg.host}:{cfg.port}"
        )
        self.sink.source_down(
            cfg.name, f"MQTT connection failed: expected {what}; got {type(exc).__name__}: {exc}"
        )

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, reasons: Any, props: Any) -> None:
        self.subscribed.set()

    def _subscribe(self, client: Any) -> None:
        raise NotImplementedError

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        raise NotImplementedError


class SparkplugReader(_MqttReader):
    """Read one Sparkplug B edge node's metrics into a sink.

    Parameters
    ----------
    config : SparkplugSource
    tags : list of (device or None, metric name)
    sink : TagSink
    """

    def __init__(self, config: SparkplugSource, tags: list[Any], sink: TagSink) -> None:
        super().__init__(config, sink, "spb")
        self.tags = set(tags)
        base = f"spBv1.0/{config.group_id}"
        self._node = config.edge_node
        self._topics = [
            f"{base}/NBIRTH/{self._node}",
            f"{base}/NDEATH/{self._node}",
            f"{base}/NDATA/{self._node}",
            f"{base}/DBIRTH/{self._node}/+",
            f"{base}/DDEATH/{self._node}/+",
            f"{base}/DDATA/{self._node}/+",
        ]
        self._ncmd = f"{base}/NCMD/{self._node}"
        self._aliases: dict[int, tuple[str | None, str]] = {}
        self._born = False
        self._devices_born: set[str] = set()
        self._seq: int | None = None
        self._last_rebirth = 0.0
        self._rebirth_asked_at: float | None = None
        self._payload_cls = _pb().Payload

    def _subscribe(self, client: Any) -> None:
        client.subscribe([(t, 0) for t in self._topics])
        # Joined late or after a broker restart: the birth we hold (if any)
        # may be stale; the node republishes it on request.
        self._born = False
        self._request_rebirth("connected", force=True)

    def _request_rebirth(self, why: str, force: bool = False) -> None:
        if not self.config.request_rebirth:
            return
        now = time.monotonic()
        if not force and now - self._last_rebirth < _REBIRTH_EVERY_S:
            return
        self._last_rebirth = now
        self._rebirth_asked_at = now
        self.sink.faults["rebirth_requests"] += 1
        log.info("Sparkplug %s/%s: requesting rebirth (%s)", self.config.group_id, self._node, why)
        self.client.publish(self._ncmd, rebirth_payload(), qos=0)

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        try:
            self.handle(msg.topic, msg.payload)
        except Exception as exc:  # a bug in one message's handling must not stop the reader
            self.sink.fault(
                "malformed_payload", f"{self.config.name}:{msg.topic}", f"unhandled: {exc!r}"
            )

    def handle(self, topic: str, data: bytes) -> None:
        """Process one message (the network thread calls this)."""
        parts = topic.split("/")
        kind = parts[2] if len(parts) > 2 else ""
        device = parts[4] if len(parts) > 4 else None
        name = self.config.name
        payload = self._payload_cls()
        try:
            payload.ParseFromString(data)
        except Exception as exc:  # protobuf's DecodeError
            self.sink.fault(
                "malformed_payload",
                f"{name}:{topic}",
                f"expected a Sparkplug B protobuf payload; got {len(data)} bytes that do not "
                f"parse ({exc})",
            )
            return
        if kind == "NDEATH":
            self._born = False
            self._devices_born.clear()
            self.sink.source_down(name, "NDEATH")
            return
        if kind == "NBIRTH":
            # A birth we asked for (rebirth) is expected -- every birth within
            # _REBIRTH_ANSWER_S of the request, since the node's own start-up
            # birth may cross the request and the answer follow it; one out of the blue
            # while the node is alive means two nodes share an id, or a
            # restart whose NDEATH was lost.
            asked = self._rebirth_asked_at
            answer = asked is not None and time.monotonic() - asked <= _REBIRTH_ANSWER_S
            if self._born and not answer:
                self.sink.fault(
                    "duplicate_birth",
                    f"{name}:{topic}",
                    "expected NDEATH before a new NBIRTH; got a second NBIRTH "
                    "(it replaces the first)",
                )
            self._aliases = {a: k for a, k in self._aliases.items() if k[0] is not None}
            self._born = True
            self._devices_born.clear()
            self._seq = payload.seq
            self._learn(payload, None)
            self.sink.source_up(name)
            self._push(payload, None)
            return
        if not self._born:
            # Data before (or without) a birth cannot be resolved: ask for one.
            self._request_rebirth(f"{kind} before NBIRTH")
            return
        self._check_seq(payload.seq, topic)
        if kind == "DBIRTH" and device is not None:
            if device in self._devices_born:
                self.sink.fault(
                    "duplicate_birth",
                    f"{name}:{topic}",
                    f"expected DDEATH before a new DBIRTH of {device}; got a second DBIRTH",
                )
            self._devices_born.add(device)
            self._learn(payload, device)
            self._push(payload, device)
        elif kind == "DDEATH" and device is not None:
            self._devices_born.discard(device)
            items = [(tag, None, -1, False) for tag in self.tags if tag[0] == device]
            self.sink.push_many(name, items)
        elif kind in ("NDATA", "DDATA"):
            self._push(payload, device)

    def _check_seq(self, seq: int, topic: str) -> None:
        expected = ((self._seq if self._seq is not None else -1) + 1) % 256
        self._seq = seq
        if seq != expected:
            self.sink.fault(
                "seq_gap",
                f"{self.config.name}:{topic}",
                f"expected seq {expected}; got {seq} (messages lost)",
            )
            self._request_rebirth(f"seq gap: expected {expected}, got {seq}")

    def _learn(self, payload: Any, device: str | None) -> None:
        names = set()
        for metric in payload.metrics:
            names.add(metric.name)
            if metric.HasField("alias"):
                self._aliases[metric.alias] = (device, metric.name)
        for tag in self.tags:
            if tag[0] == device and tag[1] not in names:
                self.sink.fault(
                    "unknown_tag",
                    f"{self.config.name}:{tag[0] or ''}/{tag[1]}",
                    f"expected metric {tag[1]!r} in the birth of "
                    f"{device or self._node}; its birth has {len(names)} other metrics",
                )

    def _push(self, payload: Any, device: str | None) -> None:
        default_ms = payload.timestamp if payload.HasField("timestamp") else -1
        aliases = self._aliases
        items = []
        unknown = 0
        for metric in payload.metrics:
            if metric.name:
                key = (device, metric.name)
            else:
                key = aliases.get(metric.alias)
                if key is None:
                    unknown += 1
                    continue
            if metric.is_null:
                value, good = None, False
            else:
                kind = metric.WhichOneof("value")
                value, good = (None, False) if kind is None else (getattr(metric, kind), True)
            ms = metric.timestamp if metric.timestamp else default_ms
            items.append((key, value, ms * 1000 if ms >= 0 else -1, good))
        if items:
            self.sink.push_many(self.config.name, items)
        if unknown:
            self.sink.fault(
                "unknown_alias",
                f"{self.config.name}:{device or self._node}",
                f"expected aliases declared by the birth; got {unknown} unknown",
                count=unknown,
            )
            self._request_rebirth("unknown alias")


class MqttJsonReader(_MqttReader):
    """Read plain MQTT topics (one per tag, JSON payloads) into a sink."""

    def __init__(self, config: MqttJsonSource, tags: list[str], sink: TagSink) -> None:
        super().__init__(config, sink, "json")
        self.tags = list(tags)

    def _subscribe(self, client: Any) -> None:
        client.subscribe([(t, 0) for t in self.tags])
        self.sink.source_up(self.config.name)

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        cfg = self.config
        try:
            doc = orjson.loads(msg.payload)
        except orjson.JSONDecodeError as exc:
            self.sink.fault(
                "malformed_payload",
                f"{cfg.name}:{msg.topic}",
                f"expected JSON (a number or an object with {cfg.value_field!r}); got "
                f"{bytes(msg.payload[:40])!r} ({exc})",
            )
            return
        stamp, good = -1, True
        if isinstance(doc, dict):
            value = doc.get(cfg.value_field)
            quality = doc.get(cfg.quality_field)
            if quality is not None:
                good = quality is True or str(quality).lower() == "good"
            stamp = _stamp_us(doc.get(cfg.time_field))
        else:
            value = doc
        self.sink.push(cfg.name, msg.topic, value, stamp, good)


def _stamp_us(raw: Any) -> int:
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        return int(raw * 1000)
    if isinstance(raw, str):
        try:
            parsed = datetime.fromisoformat(raw)
        except ValueError:
            return -1
        if parsed.tzinfo is None:
            return -1
        return int(parsed.timestamp() * 1_000_000)
    return -1
