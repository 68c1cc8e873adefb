"""PostgreSQL goes away under a running API: 503 with Retry-After, then back by itself."""

from __future__ import annotations

import os
import sys
from urllib.parse import urlparse

import httpx
import pytest

from tests import services
from tests.apiclient import make_key
from tests.e2e.conftest import Proc, free_port, wait_for
from tests.faults.proxy import Proxy

pytestmark = pytest.mark.faults


def test_api_answers_503_while_postgres_is_down_and_recovers(stack, tmp_path):
    pg = urlparse(services.POSTGRES_URL)
    proxy = Proxy((pg.hostname, pg.port)).start()
    key = make_key("outage")
    port = free_port()
    env = {
        **os.environ,
        "MODELPRESS_DATABASE_URL": f"postgresql+psycopg://postgres@127.0.0.1:{proxy.port}/"
        f"{services.DB_NAME}",
    }
    api = Proc(
        [sys.executable, "-m", "app.cli", "api", "--port", str(port)], env, tmp_path / "api.log"
    )
    base = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {key}"}
    try:

        def up() -> bool:
            try:
                return httpx.get(f"{base}/v1/jobs", headers=auth, timeout=5).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(up, 60, "the API")
        proxy.cut()
        for path in ("/v1/jobs", "/v1/models"):
            r = httpx.get(f"{base}{path}", headers=auth, timeout=30)
            assert r.status_code == 503, r.text
            assert r.headers["retry-after"] == "5"
            assert r.json()["code"] == "database_unavailable"
        ready = httpx.get(f"{base}/readyz", timeout=30)
        assert ready.status_code == 503 and ready.json()["checks"]["database"] != "ok"
        assert httpx.get(f"{base}/healthz").status_code == 200  # alive, just not ready
        proxy.start()  # the database is back: no restart of the API
        wait_for(up, 30, "recovery")
        assert httpx.get(f"{base}/readyz", timeout=10).status_code == 200
    finally:
        api.stop()
        proxy.cut()
