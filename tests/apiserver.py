"""The app behind a real uvicorn server, for what the in-process TestClient cannot show:
bodies it would buffer, connections a server closes, clients other than httpx."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import uvicorn

from tests.e2e.conftest import free_port


@contextmanager
def serving(app) -> Iterator[tuple[str, int]]:
    """The app behind uvicorn in a thread of this process, on a free port."""
    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    try:
        yield "127.0.0.1", port
    finally:
        srv.should_exit = True
        thread.join(10)


@pytest.fixture
def server(app) -> Iterator[tuple[str, int]]:
    """(host, port) of a fresh server; it reads the settings per request, so a test may
    change them (monkeypatch) before or after it starts."""
    with serving(app) as address:
        yield address
