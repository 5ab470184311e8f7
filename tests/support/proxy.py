"""A TCP forwarder whose path can be cut and restored: a broker outage for tests.

House rule: a broker outage is simulated by cutting the network path, not by
restarting the broker. ``LocalStack(kafka_proxy=PausableTcpProxy)`` puts one
in front of the broker and advertises it, so every Kafka connection of a test
goes through it; ``stack.proxy.pause()`` cuts the path, ``resume()`` restores
it. Test tooling only: it is not part of the installed package.
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import threading

from lineguard.stack import StackError

__all__ = ["PausableTcpProxy"]

_HOST = "127.0.0.1"


class PausableTcpProxy:
    """Forward TCP connections to a target; the path can be cut and restored.

    Each accepted connection gets a thread pumping both directions. While
    paused, open connections are reset and new ones are accepted and reset at
    once, so clients see the peer vanish, as when a broker goes down.

    Parameters
    ----------
    target_host : str
        Host to forward to.
    target_port : int
        Port to forward to.
    listen_port : int, optional
        Local port on 127.0.0.1; a free one if omitted.
    """

    def __init__(self, target_host: str, target_port: int, listen_port: int | None = None) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self._listen_port = listen_port or 0
        self._listener: socket.socket | None = None
        self._paused = threading.Event()
        self._stopped = threading.Event()
        self._cond = threading.Condition()
        self._pumps = 0
        self._thread: threading.Thread | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        # One-shot trigger: (api_key, bytes the request must contain).
        self._trigger: tuple[int, bytes] | None = None
        #: Set when an armed trigger cut the path (see :meth:`cut_on_request`).
        self.cut_by_request = threading.Event()

    @property
    def port(self) -> int:
        """Local port the proxy listens on."""
        if self._listener is None:
            raise StackError("proxy is not started")
        return int(self._listener.getsockname()[1])

    @property
    def address(self) -> str:
        """``host:port`` to connect to."""
        return f"{_HOST}:{self.port}"

    @property
    def paused(self) -> bool:
        """Whether the path is currently cut."""
        return self._paused.is_set()

    def start(self) -> PausableTcpProxy:
        """Bind the listening socket and start accepting."""
        if self._listener is not None:
            return self
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((_HOST, self._listen_port))
        listener.listen(128)
        listener.settimeout(0.1)  # lets the accept loop notice stop()
        self._listener = listener
        # Written to on pause/stop. It stays readable (level-triggered) until
        # drained, so every pump thread selecting on it wakes up and exits.
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._stopped.clear()
        self._thread = threading.Thread(target=self._accept_loop, name="tcp-proxy", daemon=True)
        self._thread.start()
        return self

    def pause(self, timeout: float = 5.0) -> None:
        """Cut the path: reset open connections and refuse new ones.

        Returns once every forwarded connection is closed.
        """
        self._paused.set()
        self._cut(timeout)

    def cut_on_request(self, api_key: int, containing: bytes = b"") -> None:
        """Cut the path when a client next sends a request of type ``api_key``.

        The first Kafka request frame (client to broker) whose header names
        ``api_key`` and whose bytes contain ``containing`` (a topic name, say)
        is not forwarded: the path is cut just before it, as if the broker
        went away at that moment, and :attr:`cut_by_request` is set. For a
        fault that must land on one request of a running client, which no
        timing from outside can aim at. One-shot; :meth:`resume` restores
        the path as after :meth:`pause`.
        """
        self.cut_by_request.clear()
        self._trigger = (api_key, containing)

    def resume(self) -> None:
        """Restore the path: new connections are forwarded again."""
        if self._wake_r is not None:
            with contextlib.suppress(OSError):
                while self._wake_r.recv(4096):
                    pass
        self._paused.clear()

    def stop(self, timeout: float = 5.0) -> None:
        """Close the listener and every forwarded connection."""
        self._stopped.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        self._cut(timeout)
        for sock in (self._wake_r, self._wake_w):
            if sock is not None:
                sock.close()
        self._wake_r = self._wake_w = None

    def __enter__(self) -> PausableTcpProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- internals ---------------------------------------------------------
    def _cut(self, timeout: float) -> None:
        if self._wake_w is None:
            return
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        with self._cond:
            self._cond.wait_for(lambda: self._pumps == 0, timeout)

    def _fires(self, frame: bytes) -> bool:
        trigger = self._trigger
        if trigger is None or len(frame) < 6:
            return False
        api_key, containing = trigger
        if struct.unpack(">h", frame[4:6])[0] != api_key or containing not in frame:
            return False
        self._trigger = None
        self._paused.set()
        self.cut_by_request.set()
        if self._wake_w is not None:  # the other connections' pumps end too
            with contextlib.suppress(OSError):
                self._wake_w.send(b"x")
        return True

    @staticmethod
    def _reset(sock: socket.socket) -> None:
        # Linger 0 makes close() send RST: the client fails at once instead
        # of seeing a graceful end of stream.
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()

    def _accept_loop(self) -> None:
        assert self._listener is not None
        listener = self._listener
        while not self._stopped.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self._paused.is_set():
                self._reset(client)
                continue
            try:
                upstream = socket.create_connection((self.target_host, self.target_port), 5)
            except OSError:
                self._reset(client)
                continue
            client.settimeout(None)
            with self._cond:
                self._pumps += 1
            threading.Thread(
                target=self._pump, args=(client, upstream), name="tcp-proxy-pump", daemon=True
            ).start()

    def _pump(self, client: socket.socket, upstream: socket.socket) -> None:
        wake = self._wake_r
        assert wake is not None
        peers = {client: upstream, upstream: client}
        open_reads = [client, upstream]
        requests = _RequestFrames()
        cut = True
        try:
            while open_reads:
                readable, _, _ = select.select([*open_reads, wake], [], [])
                if wake in readable or self._paused.is_set() or self._stopped.is_set():
                    break
                for src in readable:
                    data = src.recv(65536)
                    if data and src is client:
                        armed = self._trigger is not None
                        for chunk, whole in requests.feed(data, armed):
                            if whole and self._fires(chunk):
                                return  # the finally clause resets both sides
                            upstream.sendall(chunk)
                    elif data:
                        peers[src].sendall(data)
                    else:
                        # Half-close: pass the EOF on, keep the other way open.
                        open_reads.remove(src)
                        with contextlib.suppress(OSError):
                            peers[src].shutdown(socket.SHUT_WR)
            else:
                cut = False  # both sides finished normally
        except OSError:
            pass  # reset by one of the peers
        finally:
            for sock in (client, upstream):
                if cut:
                    self._reset(sock)
                else:
                    sock.close()
            with self._cond:
                self._pumps -= 1
                self._cond.notify_all()


class _RequestFrames:
    """Follows the Kafka request frames (int32 size, then the body) of a client's byte stream.

    Unarmed, every byte is passed on at once (the proxy also carries
    non-Kafka traffic in its own tests); only the frame boundaries are
    tracked. Armed, the next frame from a boundary on is held back until it
    is whole, so that it can be checked before it is forwarded.
    """

    def __init__(self) -> None:
        self._prefix = b""  # the current frame's size bytes seen so far
        self._left = 0  # body bytes of the current frame still to pass
        self._held: bytes | None = None  # a frame being collected whole

    def feed(self, data: bytes, armed: bool) -> list[tuple[bytes, bool]]:
        """Chunks to forward, in order; ``True`` marks a whole frame held back for a check."""
        out: list[tuple[bytes, bool]] = []
        buf = bytes(data)
        while buf:
            if self._held is not None or (armed and not self._left and not self._prefix):
                held = (self._held or b"") + buf
                end = 4 + int.from_bytes(held[:4], "big") if len(held) >= 4 else None
                if end is None or len(held) < end:
                    self._held = held
                    return out
                out.append((held[:end], True))
                self._held, buf = None, held[end:]
            elif self._left:
                k = min(self._left, len(buf))
                out.append((buf[:k], False))
                self._left, buf = self._left - k, buf[k:]
            else:
                k = min(4 - len(self._prefix), len(buf))
                self._prefix += buf[:k]
                out.append((buf[:k], False))
                buf = buf[k:]
                if len(self._prefix) == 4:
                    self._left, self._prefix = int.from_bytes(self._prefix, "big"), b""
        return out
