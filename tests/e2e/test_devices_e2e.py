"""A job that trains on two processes, through the API, Redis and a real Celery worker:
the job's prefork child (a daemonic process) starts the second rank for each training
loop, the job succeeds and its report says two devices trained."""

from __future__ import annotations

import os

import pytest

from tests.apiclient import job_body
from tests.e2e.conftest import wait_for

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="two processes need two cores"),
]

TRAINING = {"epochs": 1, "teacher_epochs": 1, "batch_size": 16, "max_seq_length": 32}


def test_a_job_trains_on_two_processes(client, model_id, dataset_id, celery_worker):
    body = job_body(model_id, dataset_id, training={**TRAINING, "devices": 2})
    r = client.post("/v1/jobs", json=body)
    assert r.status_code == 202, r.text
    jid = r.json()["id"]

    def ended():
        job = client.get(f"/v1/jobs/{jid}").json()
        return job if job["status"] in ("succeeded", "failed", "cancelled") else None

    job = wait_for(ended, 300, f"job {jid} to end", interval=1)
    assert job["status"] == "succeeded", (job["error"], celery_worker.text()[-3000:])
    assert job["metrics"]["devices_used"] == 2
    assert not [w for w in job["metrics"]["warnings"] or [] if w["code"] == "fewer_devices"]
