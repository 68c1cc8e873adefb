"""A job that a real worker ran, then deleted: its teacher and dataset first (only this
finished job used them), then the job, and the bucket holds nothing of any of them."""

from __future__ import annotations

import pytest

from tests.apiclient import job_body
from tests.e2e.conftest import wait_for
from tests.lifecycle import bucket_keys

pytestmark = pytest.mark.e2e

TINY_TRAINING = {"epochs": 1, "teacher_epochs": 1, "batch_size": 16, "max_seq_length": 32}


def test_a_real_jobs_inputs_then_the_job_are_deleted(client, model_id, dataset_id, celery_worker):
    jid = client.post(
        "/v1/jobs", json=job_body(model_id, dataset_id, training=TINY_TRAINING)
    ).json()["id"]

    def ended():
        job = client.get(f"/v1/jobs/{jid}").json()
        return job if job["status"] in ("succeeded", "failed", "cancelled") else None

    job = wait_for(ended, 300, f"job {jid} to finish")
    assert job["status"] == "succeeded", (job, celery_worker.text()[-3000:])
    arts = client.get(f"/v1/jobs/{jid}/artifacts").json()["data"]
    stored = bucket_keys(f"jobs/{jid}/")
    assert len(stored) == len(arts) >= 3  # the artifacts, and no checkpoint left over

    assert client.delete(f"/v1/models/{model_id}").status_code == 204
    assert client.delete(f"/v1/datasets/{dataset_id}").status_code == 204
    assert bucket_keys(f"models/{model_id}/") == [] == bucket_keys(f"datasets/{dataset_id}/")
    after = client.get(f"/v1/jobs/{jid}").json()
    assert after == job  # the job reads as before, its request naming the deleted ids
    model = client.get(f"/v1/jobs/{jid}/artifacts/model")
    assert model.status_code == 200 and len(model.content) > 0

    assert client.delete(f"/v1/jobs/{jid}").status_code == 204
    assert bucket_keys(f"jobs/{jid}/") == []
    assert client.get(f"/v1/jobs/{jid}").status_code == 404
