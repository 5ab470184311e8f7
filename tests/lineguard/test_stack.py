"""Tests for lineguard.stack: local Tansu/InfluxDB servers and the TCP proxy."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import stat
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import KafkaTimeoutError

import lineguard.stack as stack_mod
from lineguard.stack import (
    InfluxServer,
    LocalStack,
    StackError,
    TansuBroker,
    find_influxd,
    find_tansu,
    free_port,
    influx_ping_ok,
    kafka_metadata_ok,
)
from tests.support.proxy import PausableTcpProxy


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); treat it as gone.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


# --------------------------------------------------------------------------
# No server needed
# --------------------------------------------------------------------------


def test_find_binaries() -> None:
    """The binaries found are the servers the stack needs, not just executables."""
    tansu = subprocess.run(
        [str(find_tansu()), "--version"], capture_output=True, text=True, timeout=30
    )
    assert tansu.returncode == 0 and tansu.stdout.startswith("tansu "), tansu
    influxd = subprocess.run(
        [str(find_influxd()), "version"], capture_output=True, text=True, timeout=30
    )
    assert influxd.returncode == 0 and influxd.stdout.startswith("InfluxDB v1."), influxd


def test_find_influxd_missing_explains_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stack_mod.shutil, "which", lambda *a, **k: None)
    with pytest.raises(StackError) as error:
        find_influxd()
    assert "apt-get install -y influxdb" in str(error.value)
    assert "LINEGUARD_INFLUX_URL" in str(error.value)


def test_free_port_is_bindable() -> None:
    port = free_port()
    assert 1024 <= port <= 65535
    with socket.socket() as probe:
        # Nothing listens there yet ...
        assert probe.connect_ex(("127.0.0.1", port)) != 0
    with socket.socket() as sock:
        # ... and a server can take exactly that port.
        sock.bind(("127.0.0.1", port))
        assert sock.getsockname()[1] == port


def test_startup_failure_shows_log_tail(tmp_path: Path) -> None:
    fake = tmp_path / "fake-influxd"
    fake.write_text("#!/bin/sh\necho 'fake influxd: cannot start' >&2\nexit 3\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    server = InfluxServer(workdir=tmp_path / "w", binary=fake)
    with pytest.raises(StackError, match=r"exited with code 3(.|\n)*fake influxd: cannot start"):
        server.start(timeout=10)
    assert not server.running


def test_startup_timeout_kills_process(tmp_path: Path) -> None:
    fake = tmp_path / "fake-tansu"
    fake.write_text("#!/bin/sh\necho 'never ready'\nexec sleep 60\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    broker = TansuBroker(workdir=tmp_path / "w", binary=fake)
    broker._launch()
    pid = broker.pid
    assert pid is not None
    with pytest.raises(StackError, match=r"not become ready within 0.5s(.|\n)*never ready"):
        broker._wait_ready(0.5)
    assert not _pid_alive(pid)


# --------------------------------------------------------------------------
# Real servers
# --------------------------------------------------------------------------


@pytest.mark.integration
def test_local_stack_env_and_readiness(local_stack: LocalStack) -> None:
    env = local_stack.env()
    assert env == {
        "LINEGUARD_KAFKA_BOOTSTRAP_SERVERS": local_stack.kafka_bootstrap,
        "LINEGUARD_INFLUX_URL": local_stack.influx_url,
        "LINEGUARD_STATE_DIR": str(local_stack.workdir / "state"),
    }
    host, port = local_stack.kafka_bootstrap.split(":")
    assert kafka_metadata_ok(host, int(port))
    assert local_stack.influx is not None
    assert influx_ping_ok("127.0.0.1", local_stack.influx.port)
    assert local_stack.workdir is not None and local_stack.workdir.name.startswith("lineguard-")
    assert local_stack.kafka_settings().bootstrap_servers == local_stack.kafka_bootstrap
    assert local_stack.influx_settings("x").url == local_stack.influx_url


@pytest.mark.integration
def test_broker_produce_consume(local_stack: LocalStack) -> None:
    bootstrap = local_stack.kafka_bootstrap
    topic = f"test-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
        assert topic in admin.list_topics()
    finally:
        admin.close()

    producer = KafkaProducer(bootstrap_servers=bootstrap)
    meta = producer.send(topic, key=b"L1", value=b"hello", partition=1).get(timeout=10)
    producer.close()
    assert meta.partition == 1

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, consumer_timeout_ms=10_000)
    try:
        consumer.assign([TopicPartition(topic, 1)])
        consumer.seek_to_beginning()
        record = next(iter(consumer))
    finally:
        consumer.close()
    assert (record.key, record.value) == (b"L1", b"hello")


@pytest.mark.integration
def test_servers_standalone_start_stop() -> None:
    with TansuBroker() as broker, InfluxServer() as influx:
        assert broker.running and influx.running
        pids = [broker.pid, influx.pid]
        workdirs = [broker.workdir, influx.workdir]
        assert broker.log_path.exists()
        assert influx.config_path.exists()
        assert influx.url.startswith("http://127.0.0.1:")
    assert not any(_pid_alive(pid) for pid in pids if pid is not None)
    assert not any(w is not None and w.exists() for w in workdirs)  # temp dirs removed


@pytest.mark.integration
def test_fixed_port_clash_is_reported(tmp_path: Path) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        port = blocker.getsockname()[1]
        # Not listening, so connects are refused but the bind still clashes.
        with pytest.raises(StackError, match=r"(?i)address.*in use"):
            InfluxServer(workdir=tmp_path, port=port).start(timeout=10)


@pytest.mark.integration
def test_local_stack_keep_and_cleanup() -> None:
    stack = LocalStack(keep=True).start()
    workdir = stack.workdir
    assert workdir is not None
    stack.stop()
    assert (workdir / "influx" / "influxd.log").exists()
    assert (workdir / "kafka" / "tansu.log").exists()
    with LocalStack() as stack2:
        workdir2 = stack2.workdir
    assert workdir2 is not None and not workdir2.exists()
    shutil.rmtree(workdir)


# --------------------------------------------------------------------------
# PausableTcpProxy
# --------------------------------------------------------------------------


@pytest.fixture
def echo_server() -> Iterator[int]:
    """A TCP echo server on a free port (upper-cases what it receives)."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.1)
    stop = threading.Event()

    def handle(conn: socket.socket) -> None:
        # The proxy resets this side when paused.
        with conn, contextlib.suppress(ConnectionError):
            while data := conn.recv(4096):
                conn.sendall(data.upper())

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    server.close()


def _roundtrip(port: int, payload: bytes = b"ping", timeout: float = 2.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
        conn.sendall(payload)
        return conn.recv(4096)


def test_proxy_forwards_pauses_and_resumes(echo_server: int) -> None:
    with PausableTcpProxy("127.0.0.1", echo_server) as proxy:
        assert _roundtrip(proxy.port) == b"PING"

        # A connection open across the cut is reset.
        held = socket.create_connection(("127.0.0.1", proxy.port), timeout=2)
        held.sendall(b"a")
        assert held.recv(10) == b"A"
        proxy.pause()
        assert proxy.paused
        with pytest.raises(OSError):
            held.sendall(b"b")
            if not held.recv(10):
                raise ConnectionResetError("closed")
        held.close()

        # New connections get nothing through while paused.
        with pytest.raises(OSError):
            if not _roundtrip(proxy.port):
                raise ConnectionResetError("closed")

        proxy.resume()
        assert _roundtrip(proxy.port, b"back") == b"BACK"
        # Large payloads pass intact.
        big = os.urandom(1 << 20).hex().encode()
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as conn:
            conn.sendall(big)
            conn.shutdown(socket.SHUT_WR)  # half-close reaches the server
            received = b"".join(iter(lambda: conn.recv(65536), b""))
        assert received == big.upper()


@pytest.mark.integration
def test_kafka_outage_through_proxy() -> None:
    with LocalStack(kafka_proxy=PausableTcpProxy) as stack:
        assert stack.proxy is not None
        # The broker advertises the proxy, so clients never bypass it.
        assert stack.kafka_bootstrap == stack.proxy.address
        topic = f"outage-{uuid.uuid4().hex[:8]}"
        admin = KafkaAdminClient(bootstrap_servers=stack.kafka_bootstrap)
        admin.create_topics([NewTopic(topic, 1, 1)])
        admin.close()
        producer = KafkaProducer(
            bootstrap_servers=stack.kafka_bootstrap,
            request_timeout_ms=2000,
            reconnect_backoff_max_ms=300,
        )
        try:
            producer.send(topic, b"before").get(timeout=10)
            stack.proxy.pause()
            during = producer.send(topic, b"during")
            with pytest.raises(KafkaTimeoutError):
                during.get(timeout=2)
            assert not during.is_done, "a record was delivered while the path was cut"
            stack.proxy.resume()
            producer.send(topic, b"after").get(timeout=20)
            during.get(timeout=20)  # the buffered record is delivered after resume
        finally:
            producer.close()
        consumer = KafkaConsumer(bootstrap_servers=stack.kafka_bootstrap)
        consumer.assign([TopicPartition(topic, 0)])
        consumer.seek_to_beginning()
        values: list[bytes] = []
        deadline = time.monotonic() + 10
        while len(values) < 3 and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=200).values():
                values.extend(record.value for record in batch)
        consumer.close()
        assert values == [b"before", b"during", b"after"]


def test_a_proxy_flag_instead_of_a_proxy_factory_is_refused() -> None:
    stack = LocalStack(kafka_proxy=True)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"tests\.support\.proxy\.PausableTcpProxy"):
        stack.start()
    assert stack.workdir is None and stack.proxy is None  # nothing left running
