"""The live gateway: sources -> frames -> telemetry records, until stopped.

``lineguard gateway run --config gateway.toml`` runs :func:`run_gateway`.
Each configured source reads its tags in its own thread into one
:class:`~lineguard.ingest.sources.base.TagSink`. Every ``tick_s`` the loop
takes each line's updates, closes the frames that are due
(:func:`~lineguard.ingest.live_frames.assemble_frames`, pure) and sends them
as one v3 telemetry record per line
(:func:`~lineguard.ingest.wire_v3.encode_v3`), through the same sequence
counter and store-and-forward disk buffer as the CSV replay: a Kafka outage
delays records, it does not lose them. Nothing on this path imports numpy (see
docs/gateway.md, "Memory").
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lineguard.ingest.buffer import DiskBuffer
from lineguard.ingest.gateway import SequenceCounter, StoreAndForward, make_producer
from lineguard.ingest.gateway_config import GatewayConfig, SensorConfig
from lineguard.ingest.live_frames import LineFrameState, assemble_frames, new_line_state
from lineguard.ingest.sources.base import SensorRoute, TagSink, now_us
from lineguard.ingest.wire_v3 import encode_v3

__all__ = ["LiveGateway", "LiveStats", "build_sink", "run_gateway", "source_tag_key"]

log = logging.getLogger(__name__)


def source_tag_key(config: GatewayConfig, sensor: SensorConfig) -> Any:
    """How a source names the tag feeding ``sensor`` (its route key)."""
    if config.source(sensor.source).type == "sparkplug":
        return (sensor.device, sensor.tag)
    return sensor.tag


def build_sink(config: GatewayConfig) -> TagSink:
    """A sink routing every configured tag to its line's column."""
    lines = {line: len(config.line_sensors(line)) for line in config.lines}
    routes: dict[str, dict[Any, SensorRoute]] = {s.name: {} for s in config.sources}
    for line in config.lines:
        for column, sensor in enumerate(config.line_sensors(line)):
            routes[sensor.source][source_tag_key(config, sensor)] = SensorRoute(
                line, column, sensor.name
            )
    return TagSink(lines, routes)


def _readers(config: GatewayConfig, sink: TagSink) -> list[Any]:
    readers = []
    for source in config.sources:
        tags = [source_tag_key(config, s) for s in config.sensors if s.source == source.name]
        if source.type == "opcua":
            from lineguard.ingest.sources.opcua import OpcUaReader

            readers.append(OpcUaReader(source, tags, sink))
        elif source.type == "sparkplug":
            from lineguard.ingest.sources.sparkplug import SparkplugReader

            readers.append(SparkplugReader(source, tags, sink))
        else:
            from lineguard.ingest.sources.sparkplug import MqttJsonReader

            readers.append(MqttJsonReader(source, tags, sink))
    return readers


@dataclass
class LiveStats:
    """What the gateway did so far (the run summary)."""

    records: int = 0
    frames: int = 0
    bytes: int = 0
    per_line: dict[str, dict[str, int]] = field(default_factory=dict)
    sources: dict[str, Any] = field(default_factory=dict)
    sender: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """Plain dict (for JSON)."""
        return {
            "records": self.records,
            "frames": self.frames,
            "bytes": self.bytes,
            "lines": self.per_line,
            "sources": self.sources,
            "sender": self.sender,
        }


class LiveGateway:
    """One site gateway: its sources, frame states and sender.

    Parameters
    ----------
    config : GatewayConfig
        The validated config file.
    send : callable, optional
        ``send(key, payload)``; the store-and-forward sender by default.
        (The bench passes its own to measure the gateway alone.)
    """

    def __init__(
        self, config: GatewayConfig, send: Callable[[bytes, bytes], None] | None = None
    ) -> None:
        self.config = config
        self.sink = build_sink(config)
        self.states: dict[str, LineFrameState] = {}
        self.sensors: dict[str, tuple[str, ...]] = {}
        for line, lc in config.lines.items():
            sensors = config.line_sensors(line)
            self.sensors[line] = tuple(s.name for s in sensors)
            self.states[line] = new_line_state(
                lc.period_s,
                [config.staleness_s(s) for s in sensors],
                lc.lateness_s,
                on_update=lc.frames == "on_update",
            )
        self.readers = _readers(config, self.sink)
        self.stats = LiveStats()
        self._forward: StoreAndForward | None = None
        self._send = send
        self._stop = threading.Event()
        state_dir = Path(config.state_dir)
        self.sequence = SequenceCounter(state_dir / f"seq-{config.gateway_id}")

    def _open_sender(self) -> None:
        if self._send is not None:
            return
        cfg = self.config
        kafka = cfg.kafka.settings()
        buf = cfg.buffer
        directory = buf.dir or Path(cfg.state_dir) / f"buffer-{cfg.gateway_id}"
        buffer = DiskBuffer(
            directory,
            max_bytes=buf.max_bytes,
            segment_bytes=buf.segment_bytes,
            when_full=buf.when_full,
            fsync=buf.fsync,
        )
        self._forward = StoreAndForward(
            make_producer(kafka),
            cfg.topic,
            buffer,
            historical_after_s=buf.historical_after_s,
            producer_factory=lambda: make_producer(kafka),
        )
        self._send = self._forward.send

    def start(self) -> LiveGateway:
        """Open the sender and start every source."""
        self._open_sender()
        for reader in self.readers:
            reader.start()
        return self

    def stop(self) -> None:
        """Ask :meth:`run` to end."""
        self._stop.set()

    def tick(self, now: int | None = None) -> int:
        """Close due frames of every line and send them; returns frames sent."""
        now = now_us() if now is None else now
        sent = 0
        cfg = self.config
        assert self._send is not None
        for line, state in self.states.items():
            updates = self.sink.take(line)
            state, frames = assemble_frames(state, updates, now)
            self.states[line] = state
            if len(frames) == 0:
                continue
            payload = encode_v3(
                site=cfg.site,
                line=line,
                gateway=cfg.gateway_id,
                seq=self.sequence.take(),
                sensors=self.sensors[line],
                time_us=frames.time_us,
                values=frames.values,
                sent_at_us=now_us(),
            )
            self._send(line.encode("utf-8"), payload)
            self.stats.records += 1
            self.stats.frames += len(frames)
            self.stats.bytes += len(payload)
            sent += len(frames)
        if self._forward is not None:
            self._forward.pump()
        return sent

    def snapshot(self) -> dict[str, Any]:
        """Current counters."""
        self.stats.per_line = {line: dict(s.counters) for line, s in self.states.items()}
        self.stats.sources = self.sink.stats()
        if self._forward is not None:
            self.stats.sender = self._forward.stats()
        return self.stats.as_dict()

    def run(self, duration_s: float | None = None, report_every_s: float = 60.0) -> dict[str, Any]:
        """Tick until stopped (or ``duration_s``), then stop sources and drain."""
        started = time.monotonic()
        next_report = started + report_every_s
        tick = self.config.tick_s
        try:
            while not self._stop.is_set():
                t0 = time.monotonic()
                if duration_s is not None and t0 - started >= duration_s:
                    break
                self.tick()
                if t0 >= next_report:
                    log.info("gateway %s: %s", self.config.gateway_id, self.snapshot())
                    next_report = t0 + report_every_s
                self._stop.wait(max(tick - (time.monotonic() - t0), 0.0))
        finally:
            for reader in self.readers:
                reader.stop()
            self.tick()
            if self._forward is not None:
                self._forward.drain(30.0)
        summary = self.snapshot()
        log.info("gateway %s stopped: %s", self.config.gateway_id, summary)
        return summary


def run_gateway(config: GatewayConfig, duration_s: float | None = None) -> dict[str, Any]:
    """Run a site gateway until SIGINT/SIGTERM (or ``duration_s``); the summary."""
    gateway = LiveGateway(config).start()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: gateway.stop())
    return gateway.run(duration_s)
