"""A job through the API, the real Redis broker and a real Celery worker process."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from tests.apiclient import job_body
from tests.e2e.conftest import wait_for

pytestmark = pytest.mark.e2e

TINY_TRAINING = {"epochs": 2, "teacher_epochs": 3, "batch_size": 16, "max_seq_length": 32}


def _poll_terminal(client, jid: str, timeout: float = 300) -> dict:
    def done():
        job = client.get(f"/v1/jobs/{jid}").json()
        return job if job["status"] in ("succeeded", "failed", "cancelled") else None

    return wait_for(done, timeout, f"job {jid} to finish")


def test_the_worker_imports_the_engine_once_before_forking(celery_worker):
    # Every job runs in a fresh child of this process; torch loaded here is torch that
    # no job imports again.
    maps = Path(f"/proc/{celery_worker.p.pid}/maps").read_text()
    assert "libtorch_cpu" in maps or "libtorch.so" in maps, "the engine was not preloaded"


def test_job_runs_on_a_real_worker(client, model_id, dataset_id, celery_worker, tmp_path: Path):
    r = client.post("/v1/jobs", json=job_body(model_id, dataset_id, training=TINY_TRAINING))
    assert r.status_code == 202
    jid = r.json()["id"]
    seen_running = wait_for(
        lambda: client.get(f"/v1/jobs/{jid}").json()["status"] != "queued", 60, "claim"
    )
    assert seen_running
    job = _poll_terminal(client, jid)
    assert job["status"] == "succeeded", (job, celery_worker.text()[-3000:])
    assert job["attempt"] == 1 and job["progress"] == 1.0
    m = job["metrics"]
    assert m["student"]["num_layers"] < m["teacher"]["num_layers"]
    assert 0.0 <= m["student"]["accuracy"] <= 1.0 and m["retention"] > 0

    arts = {a["name"]: a for a in client.get(f"/v1/jobs/{jid}/artifacts").json()["data"]}
    assert {"model", "report", "model-card"} <= set(arts)
    r = client.get(f"/v1/jobs/{jid}/artifacts/model")
    assert r.status_code == 200
    assert len(r.content) == arts["model"]["size_bytes"]
    import hashlib

    assert hashlib.sha256(r.content).hexdigest() == arts["model"]["sha256"]
    out = tmp_path / "student"
    with tarfile.open(fileobj=io.BytesIO(r.content), mode="r:gz") as tf:
        tf.extractall(out, filter="data")

    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(out)
    tok = AutoTokenizer.from_pretrained(out)
    with torch.no_grad():
        logits = model(**tok(["a good movie ."], return_tensors="pt")).logits
    assert logits.shape == (1, 2)
    assert model.config.num_hidden_layers == m["student"]["num_layers"]

    # At-least-once delivery: the broker hands the same id over again (sent by name, as
    # the API sends it).
    from app.broker import send
    from app.queues import RUN_JOB_TASK

    events_before = client.get(f"/v1/jobs/{jid}/events", params={"limit": 1000}).json()["data"]
    send(RUN_JOB_TASK, jid, queue="cpu")
    wait_for(lambda: f"job {jid} is not queued" in celery_worker.text(), 60, "duplicate handled")
    assert client.get(f"/v1/jobs/{jid}").json() == job
    assert (
        client.get(f"/v1/jobs/{jid}/events", params={"limit": 1000}).json()["data"] == events_before
    )
    from app.storage import get_storage

    assert len(get_storage().list(f"jobs/{jid}/")) == len(arts)


def test_cancel_running_job_on_a_real_worker(client, model_id, dataset_id, celery_worker):
    long = {**TINY_TRAINING, "epochs": 100, "teacher_epochs": 100}
    jid = client.post("/v1/jobs", json=job_body(model_id, dataset_id, training=long)).json()["id"]
    wait_for(lambda: client.get(f"/v1/jobs/{jid}").json()["status"] == "running", 60, "running")
    r = client.post(f"/v1/jobs/{jid}/cancel")
    assert r.status_code == 202 and r.json()["status"] in ("cancelling", "cancelled")
    job = _poll_terminal(client, jid, timeout=60)
    assert job["status"] == "cancelled"
    assert client.get(f"/v1/jobs/{jid}/artifacts").json()["data"] == []
    from app.storage import get_storage

    assert get_storage().list(f"jobs/{jid}/") == []
