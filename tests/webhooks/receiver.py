"""A real HTTP receiver for webhook deliveries, on loopback, scripted per path."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.time() when it arrived


@dataclass
class Receiver:
    port: int
    # path -> the status codes to answer, in turn, for each delivery id; the last repeats
    script: dict[str, list[int]] = field(default_factory=dict)
    # path -> seconds to wait before answering (a slow receiver)
    delay: dict[str, float] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    _tries: Counter = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def on(self, path: str) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.path == path]

    def _answer(self, path: str, delivery: str) -> int:
        with self._lock:
            codes = self.script.get(path, [200])
            n = self._tries[(path, delivery)]
            self._tries[(path, delivery)] += 1
        return codes[min(n, len(codes) - 1)]


@contextmanager
def running_receiver() -> Iterator[Receiver]:
    receiver: Receiver | None = None

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            assert receiver is not None
            with receiver._lock:
                receiver.received.append(
                    Received(self.path, dict(self.headers.items()), body, time.time())
                )
            code = receiver._answer(self.path, self.headers.get("Modelpress-Delivery-Id", ""))
            time.sleep(receiver.delay.get(self.path, 0.0))
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver = Receiver(port=server.server_address[1])
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
