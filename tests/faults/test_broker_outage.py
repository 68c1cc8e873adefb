"""Redis goes away under the API and a worker: the worker consumes again once it is
back, and a job accepted while it was away is still run (the reaper re-sends it)."""

from __future__ import annotations

import os
import sys
from urllib.parse import urlparse

import httpx
import pytest

from tests import services
from tests.apiclient import make_key
from tests.e2e.conftest import Proc, free_port, wait_for
from tests.faults.conftest import FAULT_ENV
from tests.faults.proxy import Proxy

pytestmark = pytest.mark.faults

TRAINING = {"epochs": 1, "teacher_epochs": 1, "batch_size": 16, "max_seq_length": 32}


def test_worker_and_api_survive_a_redis_outage(stack, workers, tmp_path):
    r = urlparse(services.REDIS_URL)
    proxy = Proxy((r.hostname, r.port)).start()
    env = {
        **os.environ,
        **FAULT_ENV,
        "MODELPRESS_BROKER_URL": f"redis://127.0.0.1:{proxy.port}{r.path}",
    }
    workers.env = env
    workers.launch("w")  # the worker and the API start side by side
    port = free_port()
    api = Proc(
        [sys.executable, "-m", "app.cli", "api", "--port", str(port)], env, tmp_path / "api.log"
    )
    http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
    try:
        workers.ready("w")
        wait_for(lambda: _up(http), 60, "the API")
        # The fixtures' resources belong to another tenant: upload afresh for this key.
        http.headers["Authorization"] = f"Bearer {make_key('broker-outage')}"
        body = _job_body(http, tmp_path)

        def run(job_id: str, timeout: float = 120) -> dict:
            return wait_for(lambda: _ended(http, job_id), timeout, f"job {job_id}")

        assert run(http.post("/v1/jobs", json=body).json()["id"])["status"] == "succeeded"

        # Redis "restarts": connections reset, refused until the worker has been refused
        # (a condition, not a fixed outage: the worker's next try, 2 s later by Celery's
        # backoff, then connects; after a 3 s outage it waited 4 s more for its third).
        outage = _outage(proxy, workers.procs["w"])
        proxy.start()
        second = http.post("/v1/jobs", json=body)
        assert second.status_code == 202
        assert run(second.json()["id"])["status"] == "succeeded"  # the worker consumes again

        outage = _outage(proxy, workers.procs["w"], after=outage)
        third = http.post("/v1/jobs", json=body)  # accepted while the broker is down
        assert third.status_code == 202, third.text
        jid = third.json()["id"]
        events = http.get(f"/v1/jobs/{jid}/events").json()["data"]
        assert any(e["type"] == "warning" for e in events)
        proxy.start()
        job = run(jid)
        assert job["status"] == "succeeded" and job["attempt"] == 1
    finally:
        # The workers stop while the broker still answers: cut off, a worker's warm
        # shutdown would wait out its Proc.stop timeout.
        workers.stop_all()
        api.stop()
        proxy.cut()


REFUSED = "Cannot connect to redis"


def _outage(proxy: Proxy, worker: Proc, after: int = 0) -> int:
    """Cuts Redis off and returns once the worker has been refused a connection (its
    log's ``after``-th refusal and more), with the number of refusals so far."""
    proxy.cut()
    try:
        return wait_for(
            lambda: worker.text().count(REFUSED) > after and worker.text().count(REFUSED),
            60,
            "the worker to be refused by Redis",
            interval=0.1,
        )
    except AssertionError as e:
        # What the worker was doing instead is the whole diagnosis.
        raise AssertionError(f"{e}; the worker's log ends:\n{worker.text()[-4000:]}") from None


def _up(http: httpx.Client) -> bool:
    try:
        return http.get("/healthz").status_code == 200
    except httpx.HTTPError:
        return False


def _ended(http: httpx.Client, job_id: str) -> dict | None:
    job = http.get(f"/v1/jobs/{job_id}").json()
    return job if job["status"] in ("succeeded", "failed", "cancelled") else None


def _job_body(http: httpx.Client, tmp_path) -> dict:
    from tests.conftest import pack_tar
    from tests.tiny import make_tiny_bert, make_tiny_dataset

    archive = pack_tar(make_tiny_bert(tmp_path / "m"), tmp_path / "m.tar.gz")
    with open(archive, "rb") as f:
        model = http.post("/v1/models", files={"file": ("m.tar.gz", f)}).json()["id"]
    data = make_tiny_dataset(tmp_path / "d.jsonl", n=100)
    with open(data, "rb") as f:
        dataset = http.post("/v1/datasets", files={"file": ("d.jsonl", f)}).json()["id"]
    return {
        "task": "sequence-classification",
        "teacher": {"model_id": model},
        "dataset": {"dataset_id": dataset},
        "target": {"params_ratio": 0.5},
        "training": TRAINING,
    }
