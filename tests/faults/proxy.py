"""A TCP proxy that a test can cut and restore, or slow down: an outage of a real server
(PostgreSQL, Redis, S3) as its clients see it, without stopping the server other tests
use."""

from __future__ import annotations

import contextlib
import socket
import threading
import time


class Proxy:
    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.port = _free_port()
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        # Bytes per second each way per connection; None: as fast as it goes.
        self.rate: float | None = None
        # throttle_on(): the bytes whose passage sets ``rate`` to ``_armed_rate``.
        self._marker: bytes | None = None
        self._armed_rate: float | None = None

    def start(self) -> Proxy:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def cut(self) -> None:
        """Refuse new connections and reset the open ones."""
        if self._listener is not None:
            # shutdown() wakes the thread blocked in accept(); close() alone would not,
            # and the port would go on accepting.
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        with self._lock:
            for conn in self._conns:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
                conn.close()
            self._conns.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self._lock:
                self._conns += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def throttle(self, bytes_per_s: float | None) -> None:
        """Slow every connection, open ones included, to this rate (None: full speed)."""
        self.rate = bytes_per_s

    def throttle_on(self, marker: bytes, bytes_per_s: float) -> None:
        """Slow everything to this rate from the moment ``marker`` passes (e.g. the
        path of the first request a test wants slow), not before: no polling race."""
        self._armed_rate, self._marker = bytes_per_s, marker

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(4096 if self.rate else 65536):
                marker = self._marker
                if marker is not None and marker in data:
                    self.rate, self._marker = self._armed_rate, None
                dst.sendall(data)
                if self.rate:
                    time.sleep(len(data) / self.rate)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
