"""PostgreSQL goes away under a running API: 503 with Retry-After, then back by itself."""

from __future__ import annotations

import os
import sys
import time
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


def test_running_job_rides_out_a_database_restart(client, model_id, dataset_id, workers):
    """The worker's connections are reset and refused for longer than a lease renewal
    interval, as in a PostgreSQL restart: the run goes on, the job ends once."""
    from tests.apiclient import ARTIFACT_NAMES, job_body
    from tests.faults.conftest import KILLABLE_TRAINING
    from tests.faults.test_worker_kills import _phase, _terminal

    pg = urlparse(services.POSTGRES_URL)
    proxy = Proxy((pg.hostname, pg.port)).start()
    try:
        workers.env = {
            **workers.env,
            "MODELPRESS_DATABASE_URL": f"postgresql+psycopg://postgres@127.0.0.1:{proxy.port}/"
            f"{services.DB_NAME}",
            # Longer than the outage: the job stays this attempt's (a shorter lease would
            # send it back to the queue, which the worker-kill tests cover).
            "MODELPRESS_LEASE_SECONDS": "30",
        }
        worker = workers.start("a")
        body = job_body(model_id, dataset_id, training=KILLABLE_TRAINING)
        jid = client.post("/v1/jobs", json=body).json()["id"]
        wait_for(lambda: _phase(client, jid)[1] == "distilling", 180, "distilling")
        proxy.cut()
        time.sleep(8)
        assert _phase(client, jid)[0] == "running"  # the API's own connection is direct
        proxy.start()
        job = _terminal(client, jid)
    finally:
        proxy.cut()
    assert job["status"] == "succeeded", job
    assert job["attempt"] == 1
    assert "database unreachable" in worker.text()  # the outage did reach the worker
    arts = client.get(f"/v1/jobs/{jid}/artifacts").json()["data"]
    assert sorted(a["name"] for a in arts) == ARTIFACT_NAMES
