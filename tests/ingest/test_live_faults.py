"""Faults at the live sources, against the real servers: bad input, a server or
broker restart, a network cut, and security (OPC UA SignAndEncrypt with
certificates made here, MQTT with a mosquitto password file).

The gateway runs with a capturing sender (these tests are about the sources
and the frames; the Kafka path is covered by test_live_sources.py and the
store-and-forward tests). The servers are real: an asyncua server subprocess
(``lineguard sim opcua``), mosquitto started by :mod:`lineguard.stack`, and
the Sparkplug edge-node simulator publishing through it.
"""

from __future__ import annotations

import datetime as dt
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from lineguard.ingest.contract import decode
from lineguard.ingest.csv_runs import read_run
from lineguard.ingest.gateway_config import parse_config
from lineguard.ingest.live import LiveGateway
from lineguard.stack import MosquittoServer, free_port
from tests.support.proxy import PausableTcpProxy

pytestmark = pytest.mark.integration

RUN = Path(__file__).resolve().parents[2] / "examples" / "data" / "skab" / "valve1" / "0.csv"


def _short_run(tmp_path: Path, rows: int) -> Path:
    lines = RUN.read_text().splitlines()[: rows + 1]
    path = tmp_path / "valve1" / "0.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


class _Sim:
    """``lineguard sim opcua`` as a subprocess that can be stopped and restarted."""

    def __init__(self, args: list[str]) -> None:
        self.args = args
        self.proc: subprocess.Popen[str] | None = None
        self.output: list[str] = []

    def start(self) -> _Sim:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lineguard.cli", "sim", "opcua", *self.args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        threading.Thread(target=lambda: self.output.extend(self.proc.stdout), daemon=True).start()
        deadline = time.monotonic() + 60
        while not any("serving on" in x for x in self.output):
            assert self.proc.poll() is None, "".join(self.output)
            assert time.monotonic() < deadline, "".join(self.output)
            time.sleep(0.05)
        return self

    def played(self) -> bool:
        return any("all rows played" in x for x in self.output)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(15)


class _Gateway:
    """A live gateway ticking in a thread, keeping the records it would send."""

    def __init__(self, text: str) -> None:
        self.records: list[bytes] = []
        self.gateway = LiveGateway(parse_config(text), send=lambda k, p: self.records.append(p))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.gateway.tick()
            time.sleep(0.05)

    def __enter__(self) -> _Gateway:
        self.gateway.start()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        for reader in self.gateway.readers:
            reader.stop()

    @property
    def sources(self) -> dict:
        return self.gateway.sink.stats()

    def line(self, name: str = "l1") -> dict:
        return self.gateway.states[name].counters

    def frames(self) -> tuple[np.ndarray, np.ndarray]:
        batches = [decode(p) for p in list(self.records)]
        if not batches:
            return np.empty(0, np.int64), np.empty((0, 0))
        return np.concatenate([b.time_us for b in batches]), np.vstack([b.values for b in batches])

    def wait(self, condition, timeout: float = 60.0, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, f"timed out waiting for {what}: {self.snapshot()}"
            time.sleep(0.1)

    def snapshot(self) -> dict:
        return {
            "sources": self.sources,
            "lines": {k: dict(s.counters) for k, s in self.gateway.states.items()},
        }


_DEFAULT_LINE = "lateness_s = 0.5\nstaleness_s = 3.0\n"


def _opcua_config(
    port: int, sensors: list[tuple[str, str]], *, line: str = "", source: str = ""
) -> str:
    body = "".join(
        f'[[sensors]]\nline = "l1"\nname = "{name}"\nsource = "plc"\ntag = "{tag}"\n'
        for name, tag in sensors
    )
    return (
        'site = "s1"\ngateway_id = "gw1"\nstate_dir = "/tmp/lineguard-test-unused"\n'
        '[[sources]]\ntype = "opcua"\nname = "plc"\n'
        f'endpoint = "opc.tcp://127.0.0.1:{port}/lineguard/"\n'
        "publishing_interval_s = 0.05\nsampling_interval_s = 0.0\nqueue_size = 1000\n"
        "timeout_s = 2.0\nreconnect_min_s = 0.5\nreconnect_max_s = 2.0\n"
        f"{source}[lines.l1]\n{line or _DEFAULT_LINE}{body}"
    )


def _node(sensor: str) -> str:
    return f"ns=2;s=valve1-0.{sensor}"


# -- OPC UA ------------------------------------------------------------------------


def test_opcua_bad_inputs_are_counted_and_the_other_sensors_keep_flowing(tmp_path, state_dir):
    path = _short_run(tmp_path, 60)
    run = read_run(path)
    port = free_port()
    faults = {
        "Pressure": ("bad_quality", 10, 20),
        "Temperature": ("string", 20, 25),
        "Current": ("bool", 25, 30),
        "Voltage": ("nan", 30, 35),
        "Thermocouple": ("inf", 35, 40),
    }
    args = [str(path), "--port", str(port), "--speed", "20", "--wait-for-items", "8"]
    for sensor, (kind, a, b) in faults.items():
        args += ["--fault", f"valve1-0/{sensor}:{kind}:{a}:{b}"]
    sim = _Sim(args).start()
    sensors = [(s, _node(s)) for s in run.sensors] + [("Ghost", _node("Ghost"))]
    config = _opcua_config(
        port, sensors, line='lateness_s = 3.0\nstaleness_s = 5.0\nframes = "on_update"\n'
    )
    try:
        with _Gateway(config.replace("/tmp/lineguard-test-unused", str(state_dir))) as gw:
            gw.wait(lambda: sim.played() and len(gw.frames()[0]) >= len(run), 90, "all frames")
            src = gw.sources
    finally:
        sim.stop()
    # The injected ones, each counted under its kind ("waiting for initial
    # data" at subscription is no reading, not a fault).
    assert src["bad_quality"] == 10, src
    assert src["wrong_type"] == 10, src  # 5 strings, 5 bools
    assert src["not_finite"] == 10, src  # 5 NaN, 5 infinities
    assert src["unknown_tag"] == 1, src  # the Ghost node
    times, values = gw.frames()
    expected = np.hstack([run.values, np.full((len(run), 1), np.nan)])
    for sensor, (_kind, a, b) in faults.items():
        expected[a:b, run.sensors.index(sensor)] = np.nan
    np.testing.assert_array_equal(times, run.time_us)
    np.testing.assert_array_equal(values, expected)


def _outage_checks(gw: _Gateway, frames_before: int) -> None:
    src = gw.sources
    assert src["outages"] >= 1 and src["reconnects"] >= 1, src
    assert src["outage_seconds"]["plc"] > 1.0, src
    assert gw.line()["gap_frames"] >= 2, gw.snapshot()
    times, values = gw.frames()
    assert len(times) > frames_before
    # No frame was invented for the outage: a hole of at least two periods.
    assert np.diff(times).max() >= 3_000_000, np.diff(times)
    assert not np.isnan(values).all(axis=1).any()


def test_opcua_server_restart_ends_in_reconnection_and_a_reported_gap(tmp_path, state_dir):
    path = _short_run(tmp_path, 600)
    port = free_port()
    args = [str(path), "--port", str(port), "--speed", "1", "--retime"]
    run = read_run(path)
    config = _opcua_config(port, [(s, _node(s)) for s in run.sensors])
    sim = _Sim(args).start()
    try:
        with _Gateway(config.replace("/tmp/lineguard-test-unused", str(state_dir))) as gw:
            gw.wait(lambda: len(gw.frames()[0]) >= 3, 60, "first frames")
            sim.stop()
            gw.wait(lambda: gw.sources["down"] == ["plc"], 30, "the outage to be seen")
            time.sleep(3.0)
            before = len(gw.frames()[0])
            sim = _Sim(args).start()
            gw.wait(lambda: gw.sources["reconnects"] >= 1, 60, "reconnection")
            gw.wait(lambda: len(gw.frames()[0]) >= before + 3, 60, "frames after the restart")
            _outage_checks(gw, before)
    finally:
        sim.stop()


def test_opcua_network_cut_ends_in_reconnection_and_a_reported_gap(tmp_path, state_dir):
    path = _short_run(tmp_path, 600)
    port = free_port()
    run = read_run(path)
    sim = _Sim([str(path), "--port", str(port), "--speed", "1", "--retime"]).start()
    proxy = PausableTcpProxy("127.0.0.1", port).start()
    config = _opcua_config(proxy.port, [(s, _node(s)) for s in run.sensors])
    try:
        with _Gateway(config.replace("/tmp/lineguard-test-unused", str(state_dir))) as gw:
            gw.wait(lambda: len(gw.frames()[0]) >= 3, 60, "first frames")
            proxy.pause()
            gw.wait(lambda: gw.sources["down"] == ["plc"], 30, "the outage to be seen")
            time.sleep(3.0)
            before = len(gw.frames()[0])
            proxy.resume()
            gw.wait(lambda: gw.sources["reconnects"] >= 1, 60, "reconnection")
            gw.wait(lambda: len(gw.frames()[0]) >= before + 3, 60, "frames after the cut")
            _outage_checks(gw, before)
    finally:
        proxy.stop()
        sim.stop()


def _builder(subject, issuer, public_key):  # type: ignore[no-untyped-def]
    """A certificate builder valid from yesterday for 30 days (test certificates)."""
    from cryptography import x509

    now = dt.datetime.now(dt.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
    )


def _certificate(directory: Path, name: str, uri: str) -> tuple[Path, Path]:
    """A self-signed OPC UA application certificate (DER) and its key (PEM)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        _builder(subject, subject, key.public_key())
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier(uri), x509.DNSName(socket.gethostname())]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,
                key_encipherment=True,
                data_encipherment=True,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / f"{name}-cert.der", directory / f"{name}-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.DER))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def _certificate_pair(directory: Path) -> tuple[Path, Path, Path, Path]:
    """The simulator's and the gateway's certificates and keys (server first)."""
    return (
        *_certificate(directory, "server", "urn:lineguard:sim"),
        *_certificate(directory, "gateway", "urn:lineguard:gateway"),
    )


def test_opcua_sign_and_encrypt_with_certificates_and_a_password(tmp_path, state_dir):
    path = _short_run(tmp_path, 600)
    run = read_run(path)
    port = free_port()
    server_cert, server_key, client_cert, client_key = _certificate_pair(tmp_path)
    sim = _Sim(
        [
            str(path),
            "--port",
            str(port),
            "--speed",
            "1",
            "--retime",
            "--cert",
            str(server_cert),
            "--key",
            str(server_key),
            "--user",
            "lineguard:s3cret",
        ]
    ).start()
    security = (
        'security_policy = "Basic256Sha256"\nsecurity_mode = "SignAndEncrypt"\n'
        f'certificate = "{client_cert}"\nprivate_key = "{client_key}"\n'
        'username = "lineguard"\n'
    )
    sensors = [(s, _node(s)) for s in run.sensors]
    good = _opcua_config(port, sensors, source=security + 'password = "s3cret"\n')
    bad = _opcua_config(port, sensors, source=security + 'password = "wrong"\n')
    plain = _opcua_config(port, sensors)  # no security: the server offers none
    try:
        with _Gateway(good.replace("/tmp/lineguard-test-unused", str(state_dir / "a"))) as gw:
            gw.wait(lambda: len(gw.frames()[0]) >= 3, 60, "frames over SignAndEncrypt")
            assert gw.sources["unknown_tag"] == 0
        for text, sub in ((bad, "b"), (plain, "c")):
            with _Gateway(text.replace("/tmp/lineguard-test-unused", str(state_dir / sub))) as gw:
                gw.wait(lambda gw=gw: gw.sources["outages"] >= 1, 30, "the refusal")
                time.sleep(2.0)
                assert len(gw.frames()[0]) == 0 and gw.sources["updates"] == 0
    finally:
        sim.stop()


@pytest.fixture
def state_dir(tmp_path):
    return tmp_path / "state"


# -- Sparkplug B over mosquitto ---------------------------------------------------------


def _spb_config(
    port: int, sensors: tuple[str, ...], state: Path, extra: str = "", line: str = ""
) -> str:
    body = "".join(
        f'[[sensors]]\nline = "l1"\nname = "{s}"\nsource = "plc"\n'
        f'device = "valve1-0"\ntag = "{s}"\n'
        for s in sensors
    )
    return (
        f'site = "s1"\ngateway_id = "gw1"\nstate_dir = "{state}"\n'
        '[[sources]]\ntype = "sparkplug"\nname = "plc"\nhost = "127.0.0.1"\n'
        f'port = {port}\ngroup_id = "Plant"\nedge_node = "sim"\nreconnect_min_s = 0.5\n'
        f"reconnect_max_s = 2.0\n{extra}[lines.l1]\n{line or _DEFAULT_LINE}{body}"
    )


class _Node:
    """The Sparkplug edge-node simulator playing a run in a thread."""

    def __init__(self, run, port: int, speed: float, retime: bool, faults=(), **auth) -> None:
        from lineguard.ingest.sim.sparkplug import EdgeNodeSim

        self.sim = EdgeNodeSim(
            [("valve1-0", run)], "127.0.0.1", port, "Plant", "sim", faults=faults, **auth
        )
        self.speed, self.retime = speed, retime
        self.done = threading.Event()
        self._stop = threading.Event()

    def start(self, gw: _Gateway | None = None) -> _Node:
        from lineguard.ingest.sim.sparkplug import publish_runs

        self.sim.start()
        if gw is not None:  # rows only once the gateway holds the births
            reader = gw.gateway.readers[0]
            gw.wait(lambda: reader._born and "valve1-0" in reader._devices_born, 30, "births")

        def play() -> None:
            publish_runs(
                self.sim, speed=self.speed, retime=self.retime, should_stop=self._stop.is_set
            )
            self.done.set()

        threading.Thread(target=play, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.sim.stop()


def _spb_outage_checks(gw: _Gateway, before: int) -> None:
    src = gw.sources
    assert src["outages"] >= 1 and src["reconnects"] >= 1, src
    assert src["outage_seconds"]["plc"] > 1.0, src
    assert src["rebirth_requests"] >= 2, src  # one per connection
    assert gw.line()["gap_frames"] >= 2, gw.snapshot()
    times, values = gw.frames()
    assert len(times) > before
    assert np.diff(times).max() >= 3_000_000, np.diff(times)
    assert not np.isnan(values).all(axis=1).any()


def _spb_outage(gw, node, cut, restore, after: str) -> None:
    """Frames flow, the path to the broker goes away for 3 s, then comes back."""
    try:
        gw.wait(lambda: len(gw.frames()[0]) >= 3, 60, "first frames")
        cut()
        gw.wait(lambda: gw.sources["down"] == ["plc"], 30, "the outage to be seen")
        time.sleep(3.0)  # the outage itself: long enough for a gap of frames
        before = len(gw.frames()[0])
        restore()
        gw.wait(lambda: gw.sources["reconnects"] >= 1, 60, "reconnection")
        gw.wait(lambda: len(gw.frames()[0]) >= before + 3, 60, f"frames after the {after}")
        _spb_outage_checks(gw, before)
    finally:
        node.stop()


def test_sparkplug_broker_restart_ends_in_reconnection_and_a_reported_gap(tmp_path):
    run = read_run(_short_run(tmp_path, 600))
    with (
        MosquittoServer() as broker,
        _Gateway(_spb_config(broker.port, run.sensors, tmp_path / "state")) as gw,
    ):
        node = _Node(run, broker.port, speed=1, retime=True).start(gw)
        _spb_outage(gw, node, broker.stop, broker.start, "restart")


def test_sparkplug_network_cut_ends_in_reconnection_and_a_reported_gap(tmp_path):
    run = read_run(_short_run(tmp_path, 600))
    with (
        MosquittoServer() as broker,
        PausableTcpProxy("127.0.0.1", broker.port) as proxy,
        _Gateway(_spb_config(proxy.port, run.sensors, tmp_path / "state")) as gw,
    ):
        node = _Node(run, broker.port, speed=1, retime=True).start(gw)
        _spb_outage(gw, node, proxy.pause, proxy.resume, "cut")


def test_sparkplug_with_a_mosquitto_password_file(tmp_path):
    run = read_run(_short_run(tmp_path, 600))
    passwords = tmp_path / "passwd"
    subprocess.run(
        ["mosquitto_passwd", "-c", "-b", str(passwords), "lineguard", "s3cret"],
        check=True,
        capture_output=True,
    )
    with MosquittoServer(password_file=passwords) as broker:
        auth = 'username = "lineguard"\npassword = "s3cret"\n'
        good = _spb_config(broker.port, run.sensors, tmp_path / "a", extra=auth)
        with _Gateway(good) as gw:
            node = _Node(run, broker.port, 1, True, username="lineguard", password="s3cret").start(
                gw
            )
            try:
                gw.wait(lambda: len(gw.frames()[0]) >= 3, 60, "frames with a password")
            finally:
                node.stop()
        for extra, sub in (('username = "lineguard"\npassword = "wrong"\n', "b"), ("", "c")):
            with _Gateway(_spb_config(broker.port, run.sensors, tmp_path / sub, extra=extra)) as gw:
                gw.wait(lambda gw=gw: gw.sources["outages"] >= 1, 30, "the refusal")
                assert gw.sources["updates"] == 0 and len(gw.frames()[0]) == 0


def test_sparkplug_bad_messages_through_the_broker_are_counted_and_rows_keep_flowing(tmp_path):
    from lineguard.ingest.sim.opcua import SimFault

    run = read_run(_short_run(tmp_path, 80))
    faults = (
        SimFault("valve1-0", "Pressure", "seq_gap", 10, 11),
        SimFault("valve1-0", "Pressure", "malformed", 20, 21),
        SimFault("valve1-0", "Pressure", "duplicate_birth", 30, 31),
        SimFault("valve1-0", "Pressure", "unknown_alias", 40, 41),
        SimFault("valve1-0", "Current", "string", 50, 53),
        SimFault("valve1-0", "Voltage", "bool", 53, 55),
        SimFault("valve1-0", "Temperature", "nan", 55, 57),
        SimFault("valve1-0", "Thermocouple", "inf", 57, 59),
        SimFault("valve1-0", "Accelerometer1RMS", "bad_quality", 60, 62),
    )
    line = 'lateness_s = 5.0\nstaleness_s = 5.0\nframes = "on_update"\n'
    with MosquittoServer() as broker:
        config = _spb_config(broker.port, (*run.sensors, "Ghost"), tmp_path / "s", line=line)
        with _Gateway(config) as gw:
            node = _Node(run, broker.port, speed=10, retime=False, faults=faults).start(gw)
            try:
                gw.wait(lambda: node.done.is_set() and len(gw.frames()[0]) >= len(run), 60, "rows")
            finally:
                node.stop()
            src = gw.sources
    assert src["seq_gap"] >= 1 and src["malformed_payload"] == 1, src
    assert src["duplicate_birth"] == 1 and src["unknown_alias"] == 1, src
    assert src["wrong_type"] == 5 and src["not_finite"] == 4, src
    assert src["unknown_tag"] >= 1, src  # Ghost is in no birth
    times, values = gw.frames()
    expected = np.hstack([run.values, np.full((len(run), 1), np.nan)])
    for f in faults:
        if f.kind in ("string", "bool", "nan", "inf", "bad_quality"):
            expected[f.start : f.stop, run.sensors.index(f.sensor)] = np.nan
    # Every row once: lost or malformed messages cost no row here, because
    # each fault is an extra message, not a replaced one.
    np.testing.assert_array_equal(times, run.time_us)
    np.testing.assert_array_equal(values, expected)


# -- OPC UA Sign only, and the deadband -----------------------------------------


def test_opcua_sign_only_gets_data_and_the_mode_is_the_one_configured(tmp_path, state_dir):
    path = _short_run(tmp_path, 600)
    run = read_run(path)
    port = free_port()
    server_cert, server_key, client_cert, client_key = _certificate_pair(tmp_path)
    # The server offers Basic256Sha256 Sign and nothing else: a gateway that
    # asked for another mode than the configured one would be refused.
    secure = ["--cert", str(server_cert), "--key", str(server_key), "--security-mode", "Sign"]
    sim = _Sim([str(path), "--port", str(port), "--speed", "1", "--retime", *secure]).start()
    keys = f'certificate = "{client_cert}"\nprivate_key = "{client_key}"\n'
    sensors = [(s, _node(s)) for s in run.sensors]
    sign = _opcua_config(
        port, sensors, source=f'security_policy = "Basic256Sha256"\nsecurity_mode = "Sign"\n{keys}'
    )
    encrypt = _opcua_config(
        port,
        sensors,
        source=f'security_policy = "Basic256Sha256"\nsecurity_mode = "SignAndEncrypt"\n{keys}',
    )
    try:
        with _Gateway(sign.replace("/tmp/lineguard-test-unused", str(state_dir / "a"))) as gw:
            gw.wait(lambda: len(gw.frames()[0]) >= 3, 60, "frames over Sign")
            assert gw.sources["outages"] == 0, gw.sources
            _times, values = gw.frames()
            assert not np.isnan(values).any()
        with _Gateway(encrypt.replace("/tmp/lineguard-test-unused", str(state_dir / "b"))) as gw:
            gw.wait(lambda: gw.sources["outages"] >= 1, 30, "the refusal of SignAndEncrypt")
            assert gw.sources["updates"] == 0 and len(gw.frames()[0]) == 0
    finally:
        sim.stop()


def _level_run(tmp_path: Path) -> Path:
    """One sensor: a level with jitter below 0.1, and steps of 1.0 between levels.

    Jitter rows come back to their level, so "beyond the deadband" means the
    same against the previous value and against the last reported one.
    """
    levels = [10.0, 10.0, 10.03, 10.0, 10.04, 11.0, 11.02, 11.0, 10.0, 10.05, 10.0, 12.0]
    # Ends on a step: once its frame is in, every earlier notification is.
    levels += [12.03, 12.0, 11.96, 12.0, 13.0, 13.01, 13.0, 13.02, 13.0, 14.0, 14.04, 14.0, 15.0]
    start = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    path = tmp_path / "level" / "0.csv"
    path.parent.mkdir(parents=True)
    rows = [
        f"{(start + dt.timedelta(seconds=i)).strftime('%Y-%m-%d %H:%M:%S')};{v}"
        for i, v in enumerate(levels)
    ]
    path.write_text("datetime;Level\n" + "\n".join(rows) + "\n")
    return path


def test_opcua_absolute_deadband_drops_changes_below_it_and_keeps_those_above(tmp_path, state_dir):
    path = _level_run(tmp_path)
    run = read_run(path)
    port = free_port()
    sim = _Sim([str(path), "--port", str(port), "--speed", "10", "--wait-for-items", "1"]).start()
    config = _opcua_config(
        port,
        [("Level", "ns=2;s=level-0.Level")],
        line='lateness_s = 3.0\nstaleness_s = 60.0\nframes = "on_update"\n',
        source="deadband = 0.1\n",
    )
    values = run.values[:, 0]
    steps = [i for i in range(1, len(run)) if abs(values[i] - values[i - 1]) > 0.5]
    try:
        with _Gateway(config.replace("/tmp/lineguard-test-unused", str(state_dir))) as gw:
            gw.wait(lambda: run.time_us[-1] in gw.frames()[0], 60, "the frame of the last step")
            times, got = gw.frames()
    finally:
        sim.stop()
    # asyncua's server applies the deadband to the first value too (against
    # the NaN placeholder of "waiting for initial data"), so the first row
    # may or may not be reported; every other row is decided by the deadband.
    later = times > run.time_us[0]
    np.testing.assert_array_equal(times[later], run.time_us[steps])
    np.testing.assert_array_equal(got[later, 0], values[steps])
    assert gw.sources["updates"] <= len(steps) + 1, gw.sources


# -- MQTT over TLS -------------------------------------------------------------------


def _tls_ca(directory: Path, name: str) -> tuple[Path, object, object]:
    """A self-signed CA: its PEM certificate file, certificate and key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        _builder(subject, subject, key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    path = directory / f"{name}.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path, cert, key


def _tls_server(directory: Path, ca_cert, ca_key) -> tuple[Path, Path]:  # type: ignore[no-untyped-def]
    """The broker's certificate for 127.0.0.1, signed by the CA, and its key."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    cert = (
        _builder(subject, ca_cert.subject, key.public_key())
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    cert_path, key_path = directory / "broker-cert.pem", directory / "broker-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_sparkplug_over_tls_verifies_the_broker_and_a_wrong_ca_is_refused_and_logged(
    tmp_path, caplog
):
    run = read_run(_short_run(tmp_path, 600))
    ca_path, ca_cert, ca_key = _tls_ca(tmp_path, "plant-ca")
    other_ca, _, _ = _tls_ca(tmp_path, "other-ca")
    cert, key = _tls_server(tmp_path, ca_cert, ca_key)
    with MosquittoServer(tls_certfile=cert, tls_keyfile=key) as broker:
        assert broker.tls_port is not None
        good = _spb_config(
            broker.tls_port,
            run.sensors,
            tmp_path / "a",
            extra=f'tls = true\nca_file = "{ca_path}"\n',
        )
        with _Gateway(good) as gw:
            # The edge node publishes on the plain listener; the gateway
            # reads through the TLS one.
            node = _Node(run, broker.port, speed=1, retime=True).start(gw)
            try:
                gw.wait(lambda: len(gw.frames()[0]) >= 3, 60, "frames over TLS")
                assert gw.sources["outages"] == 0, gw.sources
            finally:
                node.stop()
        bad = _spb_config(
            broker.tls_port,
            run.sensors,
            tmp_path / "b",
            extra=f'tls = true\nca_file = "{other_ca}"\n',
        )
        caplog.clear()
        with (
            caplog.at_level("WARNING", logger="lineguard.ingest.sources.base"),
            _Gateway(bad) as gw,
        ):
            gw.wait(lambda: gw.sources["outages"] >= 1, 30, "the refused handshake")
            # paho keeps retrying (backoff 0.5 s to 2 s here): let it fail a few
            # more times.
            reader = gw.gateway.readers[0]
            gw.wait(lambda: reader.connect_failures >= 3, 30, "three failed handshakes")
            assert gw._thread.is_alive() and gw.sources["down"] == ["plc"]
            assert gw.sources["updates"] == 0 and len(gw.frames()[0]) == 0
    failed = [r.getMessage() for r in caplog.records if "MQTT connection failed" in r.getMessage()]
    # Logged once for the outage, however many retries; the message says what
    # was expected (a broker verified with this CA) and what the handshake got.
    assert len(failed) == 1, failed
    assert f"verified with {other_ca}" in failed[0] and "CERTIFICATE_VERIFY_FAILED" in failed[0]


# -- MQTT plain JSON topics ----------------------------------------------------------


def test_mqtt_json_topics_reach_telemetry_and_malformed_json_is_counted_and_logged_once(
    tmp_path, caplog
):
    import orjson
    import paho.mqtt.client as mqtt

    rows = 12
    malformed = {3, 4}  # rows whose "b" message is not JSON
    t0 = (int(time.time()) - 60) * 1_000_000  # whole seconds, a minute ago
    a = np.round(np.linspace(1.0, 2.1, rows), 3)
    b = np.round(np.linspace(50.0, 61.0, rows), 3)
    c = np.round(np.linspace(-3.0, -1.9, rows), 3)
    sensors = "".join(
        f'[[sensors]]\nline = "l1"\nname = "{s}"\nsource = "mq"\ntag = "plant/l1/{s}"\n'
        for s in "abc"
    )
    with MosquittoServer() as broker:
        config = (
            f'site = "s1"\ngateway_id = "gw1"\nstate_dir = "{tmp_path / "state"}"\n'
            '[[sources]]\ntype = "mqtt_json"\nname = "mq"\nhost = "127.0.0.1"\n'
            f"port = {broker.port}\nreconnect_min_s = 0.5\nreconnect_max_s = 2.0\n"
            # Stamped mid-period, a reading is 0.5 s old at its period's end
            # and 1.5 s at the next one's: fresh in its own frame only.
            '[lines.l1]\nlateness_s = 3.0\nstaleness_s = 0.75\nframes = "on_update"\n'
            f"{sensors}"
        )
        publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-publisher")
        publisher.connect("127.0.0.1", broker.port)
        publisher.loop_start()
        caplog.clear()
        try:
            with (
                caplog.at_level("WARNING", logger="lineguard.ingest.sources.base"),
                _Gateway(config) as gw,
            ):
                reader = gw.gateway.readers[0]
                gw.wait(reader.subscribed.is_set, 30, "the gateway's subscriptions")
                for i in range(rows):
                    stamp_us = t0 + i * 1_000_000 + 500_000
                    iso = dt.datetime.fromtimestamp(stamp_us / 1e6, dt.timezone.utc).isoformat()
                    messages = [
                        ("a", orjson.dumps({"value": float(a[i]), "timestamp": stamp_us // 1000})),
                        (
                            "c",
                            orjson.dumps(
                                {"value": float(c[i]), "timestamp": iso, "quality": "good"}
                            ),
                        ),
                        (
                            "b",
                            b'{"value": 5'
                            if i in malformed
                            else orjson.dumps(
                                {"value": float(b[i]), "timestamp": stamp_us // 1000}
                            ),
                        ),
                    ]
                    for sensor, payload in messages:
                        publisher.publish(f"plant/l1/{sensor}", payload, qos=1).wait_for_publish(10)
                gw.wait(lambda: len(gw.frames()[0]) >= rows, 30, "a frame per published row")
                src = gw.sources
                times, values = gw.frames()
        finally:
            publisher.disconnect()
            publisher.loop_stop()
    assert src["malformed_payload"] == len(malformed), src
    assert src["updates"] == 3 * rows - len(malformed), src
    expected = np.column_stack([a, b, c])
    expected[sorted(malformed), 1] = np.nan
    np.testing.assert_array_equal(times, t0 + np.arange(rows) * 1_000_000)
    np.testing.assert_array_equal(values, expected)
    logged = [r.getMessage() for r in caplog.records if "malformed_payload" in r.getMessage()]
    assert len(logged) == 1 and "mq:plant/l1/b" in logged[0], logged
    assert "expected JSON" in logged[0] and "b'{\"value\": 5'" in logged[0], logged
