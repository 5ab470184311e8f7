"""A Sparkplug B edge node that publishes recorded runs into an MQTT broker.

Each run is a device (``<line>``, e.g. ``valve1-0``) of the edge node
``<group>/<node>``: NBIRTH, then one DBIRTH per device declaring every
sensor as a Double metric with an alias, then one DDATA per row (aliases
only, the row time as each metric's timestamp), ``seq`` counting 0-255. The
node answers a rebirth request (NCMD ``Node Control/Rebirth``) by
publishing its births again, and leaves an NDEATH as its MQTT will.

``faults`` (tests): ``(line, sensor, kind, start, stop)`` with a value fault
(``bad_quality`` = ``is_null``, ``string``, ``bool``, ``nan``, ``inf``), or a
message fault at row ``start`` with any sensor: ``seq_gap`` (skips a seq),
``malformed`` (a payload that is not protobuf), ``duplicate_birth`` (a second
DBIRTH), ``unknown_alias`` (a metric with an undeclared alias).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import Any

from lineguard.ingest.csv_runs import RecordedRun
from lineguard.ingest.sim.opcua import SimFault
from lineguard.ingest.sources.sparkplug import REBIRTH_METRIC

__all__ = ["EdgeNodeSim", "publish_runs"]

log = logging.getLogger(__name__)

_DOUBLE, _INT64, _BOOLEAN, _STRING = 10, 4, 11, 12
_MESSAGE_FAULTS = ("seq_gap", "malformed", "duplicate_birth", "unknown_alias")


class EdgeNodeSim:
    """A simulated Sparkplug B edge node.

    Parameters
    ----------
    runs : list of (line, RecordedRun)
    host, port : broker address
    group, node : Sparkplug group id and edge node id
    username, password : optional MQTT credentials
    """

    def __init__(
        self,
        runs: list[tuple[str, RecordedRun]],
        host: str,
        port: int,
        group: str = "LineGuard",
        node: str = "sim",
        username: str | None = None,
        password: str | None = None,
        faults: tuple[SimFault, ...] = (),
    ) -> None:
        import paho.mqtt.client as mqtt

        from lineguard.ingest.sources import sparkplug_b_pb2

        self.pb = sparkplug_b_pb2
        self.runs = runs
        self.group, self.node = group, node
        self.base = f"spBv1.0/{group}"
        self.faults = faults
        self._seq = 0
        self._bd_seq = 0
        self._lock = threading.Lock()
        self.aliases: dict[str, list[int]] = {}
        self._last: dict[str, tuple[int, int]] = {}
        alias = 1
        for line, run in runs:
            self.aliases[line] = list(range(alias, alias + len(run.sensors)))
            alias += len(run.sensors)
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"sim-{group}-{node}", clean_session=True
        )
        if username:
            self.client.username_pw_set(username, password)
        self.client.will_set(f"{self.base}/NDEATH/{node}", self._death(), qos=0)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.connected = threading.Event()
        self.host, self.port = host, port

    # -- payloads ------------------------------------------------------------
    def _payload(self, seq: bool = True) -> Any:
        p = self.pb.Payload()
        p.timestamp = int(time.time() * 1000)
        if seq:
            p.seq = self._next_seq()
        return p

    def _next_seq(self) -> int:
        seq = self._seq
        self._seq = (self._seq + 1) % 256
        return seq

    def _death(self) -> bytes:
        p = self.pb.Payload()
        p.timestamp = int(time.time() * 1000)
        m = p.metrics.add()
        m.name, m.datatype, m.long_value = "bdSeq", _INT64, self._bd_seq
        return p.SerializeToString()

    def births(self) -> None:
        """Publish NBIRTH and every DBIRTH (seq restarts at 0)."""
        with self._lock:
            self._seq = 0
            p = self._payload()
            m = p.metrics.add()
            m.name, m.datatype, m.long_value = "bdSeq", _INT64, self._bd_seq
            m = p.metrics.add()
            m.name, m.datatype, m.boolean_value = REBIRTH_METRIC, _BOOLEAN, False
            self.client.publish(f"{self.base}/NBIRTH/{self.node}", p.SerializeToString())
            for line, _run in self.runs:
                self._dbirth(line)

    def _dbirth(self, line: str) -> None:
        run = dict(self.runs)[line]
        p = self._payload()
        # A birth carries the current values: the last row played, or, before
        # the first row, null stamped just before the run starts.
        last = self._last.get(line)
        for column, (sensor, alias) in enumerate(zip(run.sensors, self.aliases[line], strict=True)):
            m = p.metrics.add()
            m.name, m.alias, m.datatype = sensor, alias, _DOUBLE
            if last is None:
                m.timestamp = (int(run.time_us[0]) - 1_000_000) // 1000
                m.is_null = True
            else:
                i, offset = last
                m.timestamp = (int(run.time_us[i]) + offset) // 1000
                value = float(run.values[i, column])
                if math.isnan(value):
                    m.is_null = True
                else:
                    m.double_value = value
        self.client.publish(f"{self.base}/DBIRTH/{self.node}/{line}", p.SerializeToString())

    def ddata(self, line: str, run: RecordedRun, i: int, offset_us: int) -> None:
        """Publish row ``i`` of ``line`` as one DDATA."""
        with self._lock:
            for fault in self.faults:
                if fault.line == line and fault.start == i and fault.kind in _MESSAGE_FAULTS:
                    self._message_fault(fault.kind, line)
            p = self._payload()
            stamp_ms = (int(run.time_us[i]) + offset_us) // 1000
            for column, alias in enumerate(self.aliases[line]):
                m = p.metrics.add()
                m.alias, m.timestamp, m.datatype = alias, stamp_ms, _DOUBLE
                value = float(run.values[i, column])
                kind = None
                for fault in self.faults:
                    if (
                        fault.line == line
                        and fault.sensor == run.sensors[column]
                        and fault.start <= i < fault.stop
                        and fault.kind not in _MESSAGE_FAULTS
                    ):
                        kind = fault.kind
                if math.isnan(value) or kind == "bad_quality":
                    m.is_null = True
                elif kind == "string":
                    m.datatype, m.string_value = _STRING, f"{value:.3f}"
                elif kind == "bool":
                    m.datatype, m.boolean_value = _BOOLEAN, True
                elif kind in ("nan", "inf"):
                    m.double_value = math.nan if kind == "nan" else math.inf
                else:
                    m.double_value = value
            self.client.publish(f"{self.base}/DDATA/{self.node}/{line}", p.SerializeToString())
            self._last[line] = (i, offset_us)

    def _message_fault(self, kind: str, line: str) -> None:
        topic = f"{self.base}/DDATA/{self.node}/{line}"
        if kind == "seq_gap":
            self._next_seq()  # a message "lost"
        elif kind == "malformed":
            self.client.publish(topic, b"\xff\xfenot a protobuf payload")
        elif kind == "duplicate_birth":
            self._dbirth(line)
        elif kind == "unknown_alias":
            p = self._payload()
            m = p.metrics.add()
            m.alias, m.datatype, m.double_value = 999_999, _DOUBLE, 1.0
            self.client.publish(topic, p.SerializeToString())

    # -- MQTT ------------------------------------------------------------------
    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            log.warning("simulator: broker refused the connection: %s", reason)
            return
        client.subscribe(f"{self.base}/NCMD/{self.node}")
        self.births()
        self.connected.set()

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        p = self.pb.Payload()
        try:
            p.ParseFromString(msg.payload)
        except Exception:
            return
        if any(m.name == REBIRTH_METRIC and m.boolean_value for m in p.metrics):
            self.births()

    def start(self, timeout: float = 10.0) -> EdgeNodeSim:
        """Connect and publish the births."""
        self.client.connect(self.host, self.port, keepalive=30)
        self.client.loop_start()
        if not self.connected.wait(timeout):
            raise TimeoutError(f"simulator: no MQTT connection to {self.host}:{self.port}")
        return self

    def stop(self) -> None:
        """Publish NDEATH and disconnect."""
        info = self.client.publish(f"{self.base}/NDEATH/{self.node}", self._death())
        info.wait_for_publish(2.0)
        self.client.disconnect()
        self.client.loop_stop()


def publish_runs(
    sim: EdgeNodeSim,
    *,
    speed: float = 1.0,
    retime: bool = False,
    should_stop: Any = None,
) -> int:
    """Play the sim's runs row by row (all runs on one timeline); rows sent."""
    if retime:
        # Start on a whole second: rows are published when they are stamped.
        time.sleep(1.0 - (time.time_ns() // 1000 % 1_000_000) / 1e6)
    started = time.monotonic()
    now = time.time_ns() // 1000
    events = []
    for line, run in sim.runs:
        offset = (now - now % 1_000_000 - int(run.time_us[0])) if retime else 0
        for i in range(len(run)):
            events.append((int(run.time_us[i] - run.time_us[0]), line, run, i, offset))
    events.sort(key=lambda e: (e[0], e[1]))
    for rel_us, line, run, i, offset in events:
        if should_stop is not None and should_stop():
            break
        if speed > 0:
            wait = rel_us / 1e6 / speed - (time.monotonic() - started)
            if wait > 0:
                time.sleep(wait)
        sim.ddata(line, run, i, offset)
    return len(events)
