"""DELETE /v1/jobs/{id}: a finished job goes with its events, artifacts and every stored
object under jobs/<id>/; an active one is a 409; a deletion cut short is finished by the
reaper's sweep."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from sqlalchemy import delete, func, select

from tests.apiclient import assert_problem, job_body, make_key
from tests.lifecycle import bucket_keys, finished_job


def _rows(jid: str) -> tuple[int, int]:
    from app.db import session_scope
    from app.jobs.tables import Artifact, JobEvent

    with session_scope() as s:
        events = s.scalar(select(func.count()).where(JobEvent.job_id == jid))
        arts = s.scalar(select(func.count()).where(Artifact.job_id == jid))
    return events, arts


@pytest.mark.parametrize("status", ["succeeded", "failed"])
def test_finished_job_goes_with_its_objects(client, model_id, dataset_id, tmp_path: Path, status):
    jid = finished_job(client, model_id, dataset_id, tmp_path, status=status)
    other = finished_job(client, model_id, dataset_id, tmp_path)
    before = bucket_keys(f"jobs/{jid}/")
    assert f"jobs/{jid}/checkpoints/a1-00001.pt" in before
    assert len(before) == (3 if status == "succeeded" else 1)
    assert _rows(jid)[0] > 0
    r = client.delete(f"/v1/jobs/{jid}")
    assert r.status_code == 204 and r.content == b""
    assert bucket_keys(f"jobs/{jid}/") == []
    assert _rows(jid) == (0, 0)
    assert_problem(client.get(f"/v1/jobs/{jid}"), 404, "job_not_found")
    assert_problem(client.get(f"/v1/jobs/{jid}/artifacts"), 404, "job_not_found")
    assert_problem(client.delete(f"/v1/jobs/{jid}"), 404, "job_not_found")  # not twice
    assert jid not in [j["id"] for j in client.get("/v1/jobs").json()["data"]]
    # Nothing of another job is touched.
    assert len(bucket_keys(f"jobs/{other}/")) == 3
    assert client.get(f"/v1/jobs/{other}/artifacts/report").status_code == 200


def test_active_jobs_are_a_409_until_cancelled(client, model_id, dataset_id):
    from app.db import session_scope
    from app.jobs import service as jobs

    queued = client.post("/v1/jobs", json=job_body(model_id, dataset_id)).json()["id"]
    body = assert_problem(client.delete(f"/v1/jobs/{queued}"), 409, "job_active")
    assert f"POST /v1/jobs/{queued}/cancel" in body["detail"] and "queued" in body["detail"]
    running = client.post("/v1/jobs", json=job_body(model_id, dataset_id)).json()["id"]
    with session_scope() as s:
        jobs.claim(session=s, job_id=running, worker="w", lease_seconds=60)
    assert "running" in assert_problem(client.delete(f"/v1/jobs/{running}"), 409)["detail"]
    assert client.post(f"/v1/jobs/{running}/cancel").json()["status"] == "cancelling"
    assert_problem(client.delete(f"/v1/jobs/{running}"), 409, "job_active")
    assert client.get(f"/v1/jobs/{running}").json()["status"] == "cancelling"
    # A queued job cancelled at once can be deleted.
    assert client.post(f"/v1/jobs/{queued}/cancel").json()["status"] == "cancelled"
    assert client.delete(f"/v1/jobs/{queued}").status_code == 204


def test_another_tenants_job_is_a_404(app, client, model_id, dataset_id, tmp_path: Path):
    from fastapi.testclient import TestClient

    jid = finished_job(client, model_id, dataset_id, tmp_path)
    with TestClient(app, raise_server_exceptions=False) as other:
        other.headers["Authorization"] = f"Bearer {make_key('t-' + uuid.uuid4().hex[:8])}"
        assert_problem(other.delete(f"/v1/jobs/{jid}"), 404, "job_not_found")
    assert client.get(f"/v1/jobs/{jid}").status_code == 200
    assert len(bucket_keys(f"jobs/{jid}/")) == 3


def test_a_deletion_cut_short_is_finished_by_the_sweep(client, model_id, dataset_id, tmp_path):
    """The row is committed away first; a process that dies before deleting the objects
    leaves a folder that no row names, and the reaper's folder sweep empties it."""
    from app.db import session_scope
    from app.jobs.tables import Job
    from workers.reaper import sweep_job_folders

    cut = finished_job(client, model_id, dataset_id, tmp_path)
    kept = finished_job(client, model_id, dataset_id, tmp_path)
    with session_scope() as s:  # what delete_job commits before it deletes objects
        s.execute(delete(Job).where(Job.id == cut))
        s.commit()
    assert len(bucket_keys(f"jobs/{cut}/")) == 3
    assert sweep_job_folders() >= 3
    assert bucket_keys(f"jobs/{cut}/") == []
    assert len(bucket_keys(f"jobs/{kept}/")) == 3
    assert sweep_job_folders() == 0  # nothing left to do
