"""Lifecycle: job artifacts in the stored-bytes quota, Idempotency-Key expiry, artifact
retention, and deleting models and datasets that only finished jobs used."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import select, update

from tests.apiclient import assert_problem, job_body, upload_dataset
from tests.lifecycle import finished_job


def _settings(app, **update):
    from app.settings import get_settings

    settings = get_settings().model_copy(update=update)
    app.dependency_overrides[get_settings] = lambda: settings
    return settings


def _age(job_id: str, **delta: float) -> None:
    """Move a job's creation into the past (the clock is the database's to keep)."""
    from app.db import session_scope, utcnow
    from app.jobs.tables import Job

    with session_scope() as s:
        s.execute(
            update(Job).where(Job.id == job_id).values(created_at=utcnow() - timedelta(**delta))
        )
        s.commit()


def _key_of(job_id: str) -> str | None:
    from app.db import session_scope
    from app.jobs.tables import Job

    with session_scope() as s:
        return s.scalar(select(Job.idempotency_key).where(Job.id == job_id))


# ---------------------------------------------------------------- quota


def test_artifacts_count_in_the_stored_bytes_quota(
    app, client, tenant, model_id, dataset_id, tiny_dataset: Path, tmp_path: Path
):
    from app.db import session_scope
    from app.quotas import stored_bytes

    with session_scope() as s:
        before = stored_bytes(s, tenant)
    jid = finished_job(client, model_id, dataset_id, tmp_path)
    arts = sum(a["size_bytes"] for a in client.get(f"/v1/jobs/{jid}/artifacts").json()["data"])
    assert arts == 30_700
    with session_scope() as s:
        assert stored_bytes(s, tenant) == before + arts
    # Room for one more dataset without the artifacts, not with them.
    _settings(app, tenant_max_stored_bytes=before + tiny_dataset.stat().st_size + arts - 1)
    body = assert_problem(upload_dataset(client, tiny_dataset), 403, "quota_stored_bytes")
    assert "models, datasets, job artifacts" in body["detail"]
    assert "/v1/jobs/{id}" in body["detail"]
    assert client.delete(f"/v1/jobs/{jid}").status_code == 204
    assert upload_dataset(client, tiny_dataset).status_code == 201


# ---------------------------------------------------------------- idempotency keys


def test_an_expired_key_makes_a_new_job_and_the_old_one_stays(client, model_id, dataset_id):
    body = job_body(model_id, dataset_id)
    headers = {"Idempotency-Key": "nightly-1"}
    first = client.post("/v1/jobs", json=body, headers=headers).json()["id"]
    assert client.post("/v1/jobs", json=body, headers=headers).json()["id"] == first
    _age(first, hours=25)  # past the default 24 hours
    second = client.post("/v1/jobs", json=body, headers=headers)
    assert second.status_code == 202 and second.json()["id"] != first
    assert client.post("/v1/jobs", json=body, headers=headers).json()["id"] == second.json()["id"]
    assert client.get(f"/v1/jobs/{first}").status_code == 200
    assert _key_of(first) is None and _key_of(second.json()["id"]) == "nightly-1"


def test_an_expired_key_with_another_body_is_not_a_conflict(client, model_id, dataset_id):
    headers = {"Idempotency-Key": "k-body"}
    first = client.post("/v1/jobs", json=job_body(model_id, dataset_id), headers=headers)
    other = job_body(model_id, dataset_id, name="another")
    assert_problem(client.post("/v1/jobs", json=other, headers=headers), 409)
    _age(first.json()["id"], hours=25)
    r = client.post("/v1/jobs", json=other, headers=headers)
    assert r.status_code == 202 and r.json()["name"] == "another"


def test_the_window_is_configurable(app, client, model_id, dataset_id):
    _settings(app, idempotency_key_ttl_hours=1 / 60)  # one minute
    body = job_body(model_id, dataset_id)
    headers = {"Idempotency-Key": "short"}
    first = client.post("/v1/jobs", json=body, headers=headers).json()["id"]
    _age(first, seconds=30)
    assert client.post("/v1/jobs", json=body, headers=headers).json()["id"] == first
    _age(first, seconds=61)
    assert client.post("/v1/jobs", json=body, headers=headers).json()["id"] != first


def test_the_reaper_frees_keys_past_the_window(client, model_id, dataset_id):
    from app.settings import get_settings
    from workers.reaper import lifecycle_once

    body = job_body(model_id, dataset_id)
    old = client.post("/v1/jobs", json=body, headers={"Idempotency-Key": "old"}).json()["id"]
    new = client.post("/v1/jobs", json=body, headers={"Idempotency-Key": "new"}).json()["id"]
    _age(old, hours=24, seconds=1)
    assert lifecycle_once(get_settings())["idempotency_keys"] >= 1
    assert _key_of(old) is None and _key_of(new) == "new"
    again = client.post("/v1/jobs", json=body, headers={"Idempotency-Key": "old"})
    assert again.status_code == 202 and again.json()["id"] != old


# ---------------------------------------------------------------- artifact retention


# A job made to have finished 3 days ago, and a retention of 2.5 days: jobs that other
# tests of the run finished keep their artifacts, whatever order the tests run in.
LONG_AGO_S = 3 * 86400
RETENTION_S = 2.5 * 86400


def _finished_ago(job_id: str, seconds: float) -> None:
    from app.db import session_scope, utcnow
    from app.jobs.tables import Job

    with session_scope() as s:
        s.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(finished_at=utcnow() - timedelta(seconds=seconds))
        )
        s.commit()


def _retention(seconds: float):
    from app.settings import get_settings

    return get_settings().model_copy(update={"artifact_retention_days": seconds / 86400})


def test_artifacts_expire_after_the_retention(client, tenant, model_id, dataset_id, tmp_path: Path):
    from app.db import session_scope
    from app.quotas import stored_bytes
    from tests.lifecycle import bucket_keys
    from workers.reaper import lifecycle_once

    old = finished_job(client, model_id, dataset_id, tmp_path)
    young = finished_job(client, model_id, dataset_id, tmp_path)
    _finished_ago(old, LONG_AGO_S)
    with session_scope() as s:
        before = stored_bytes(s, tenant)
    # Kept forever by default.
    from app.settings import get_settings

    assert lifecycle_once(get_settings())["artifacts_expired"] == 0
    assert len(bucket_keys(f"jobs/{old}/")) == 3
    done = lifecycle_once(_retention(RETENTION_S))
    assert done["artifacts_expired"] >= 1 and done["objects"] >= 3
    assert bucket_keys(f"jobs/{old}/") == []
    assert len(bucket_keys(f"jobs/{young}/")) == 3  # finished within the retention
    job = client.get(f"/v1/jobs/{old}").json()
    assert job["status"] == "succeeded" and job["artifacts_expired_at"] is not None
    assert job["metrics"] == {"student": {"accuracy": 0.9}}  # the report stays
    assert client.get(f"/v1/jobs/{young}").json()["artifacts_expired_at"] is None
    assert client.get(f"/v1/jobs/{old}/artifacts").json()["data"] == []
    gone = assert_problem(client.get(f"/v1/jobs/{old}/artifacts/model"), 410, "artifacts_expired")
    assert "MODELPRESS_ARTIFACT_RETENTION_DAYS" in gone["detail"]
    events = client.get(f"/v1/jobs/{old}/events").json()["data"]
    notes = [e for e in events if e["type"] == "lifecycle"]
    assert len(notes) == 1
    assert notes[0]["data"]["artifacts"] == ["model", "report"]
    assert "expired" in notes[0]["data"]["message"]
    with session_scope() as s:
        assert stored_bytes(s, tenant) == before - 30_700
    # Once only, however many reapers pass.
    assert lifecycle_once(_retention(RETENTION_S))["artifacts_expired"] == 0
    events = client.get(f"/v1/jobs/{old}/events").json()["data"]
    assert len([e for e in events if e["type"] == "lifecycle"]) == 1


def test_an_expiry_cut_short_is_finished_by_the_sweep(client, model_id, dataset_id, tmp_path):
    from app.db import session_scope
    from app.jobs import service as jobs
    from tests.lifecycle import bucket_keys
    from workers.reaper import sweep_job_folders

    jid = finished_job(client, model_id, dataset_id, tmp_path)
    _finished_ago(jid, LONG_AGO_S)
    with session_scope() as s:  # the reaper's commit, then a crash before the objects go
        assert jid in jobs.expire_artifacts(session=s, settings=_retention(RETENTION_S))
    assert len(bucket_keys(f"jobs/{jid}/")) == 3
    sweep_job_folders()
    assert bucket_keys(f"jobs/{jid}/") == []


def test_a_sweeps_candidates_expire_sooner_than_jobs(client, model_id, dataset_id, tmp_path):
    from app.db import session_scope
    from app.jobs.tables import Job
    from app.settings import get_settings
    from tests.lifecycle import bucket_keys
    from workers.reaper import lifecycle_once

    sweep, candidate, job = (finished_job(client, model_id, dataset_id, tmp_path) for _ in "abc")
    with session_scope() as s:
        s.execute(update(Job).where(Job.id == candidate).values(parent_id=sweep))
        s.commit()
    for jid in (sweep, candidate, job):
        _finished_ago(jid, 4 * 3600)
    settings = get_settings().model_copy(update={"sweep_candidate_retention_hours": 3.0})
    assert lifecycle_once(settings)["artifacts_expired"] == 1
    assert bucket_keys(f"jobs/{candidate}/") == []
    assert len(bucket_keys(f"jobs/{sweep}/")) == 3 and len(bucket_keys(f"jobs/{job}/")) == 3
    gone = assert_problem(
        client.get(f"/v1/jobs/{candidate}/artifacts/model"), 410, "artifacts_expired"
    )
    assert (
        "MODELPRESS_SWEEP_CANDIDATE_RETENTION_HOURS" in gone["detail"] and sweep in gone["detail"]
    )
    note = [
        e
        for e in client.get(f"/v1/jobs/{candidate}/events").json()["data"]
        if e["type"] == "lifecycle"
    ]
    assert note[0]["data"]["retention_hours"] == 3.0


# ---------------------------------------------------------------- models and datasets


def _references(job_id: str) -> tuple[str | None, str | None]:
    from app.db import session_scope
    from app.jobs.tables import Job

    with session_scope() as s:
        return s.execute(select(Job.teacher_id, Job.dataset_id).where(Job.id == job_id)).one()


def test_inputs_of_finished_jobs_can_be_deleted(client, model_id, dataset_id, tmp_path: Path):
    from tests.lifecycle import bucket_keys

    jid = finished_job(client, model_id, dataset_id, tmp_path)
    failed = finished_job(client, model_id, dataset_id, tmp_path, status="failed")
    assert client.delete(f"/v1/models/{model_id}").status_code == 204
    assert client.delete(f"/v1/datasets/{dataset_id}").status_code == 204
    assert bucket_keys(f"models/{model_id}/") == [] and bucket_keys(f"datasets/{dataset_id}/") == []
    # The jobs read as before: their request keeps the ids they were given.
    for job_id in (jid, failed):
        job = client.get(f"/v1/jobs/{job_id}").json()
        assert job["request"]["teacher"]["model_id"] == model_id
        assert job["request"]["dataset"]["dataset_id"] == dataset_id
        assert _references(job_id) == (None, None)
    assert client.get(f"/v1/jobs/{jid}/artifacts/report").status_code == 200
    assert len(client.get("/v1/jobs").json()["data"]) == 2
    # And a new job cannot name them.
    r = client.post("/v1/jobs", json=job_body(model_id, "ds_nope"))
    assert_problem(r, 422, "model_not_found", "teacher.model_id")


def test_inputs_of_an_active_job_are_a_409_naming_it(client, model_id, dataset_id, tmp_path: Path):
    finished_job(client, model_id, dataset_id, tmp_path)
    queued = client.post("/v1/jobs", json=job_body(model_id, dataset_id)).json()["id"]
    body = assert_problem(client.delete(f"/v1/models/{model_id}"), 409, "model_in_use")
    assert queued in body["detail"] and "queued" in body["detail"]
    assert f"POST /v1/jobs/{queued}/cancel" in body["detail"]
    body = assert_problem(client.delete(f"/v1/datasets/{dataset_id}"), 409, "dataset_in_use")
    assert queued in body["detail"]
    assert client.get(f"/v1/models/{model_id}").status_code == 200
    assert client.post(f"/v1/jobs/{queued}/cancel").json()["status"] == "cancelled"
    assert client.delete(f"/v1/models/{model_id}").status_code == 204
    assert client.delete(f"/v1/datasets/{dataset_id}").status_code == 204
    assert client.get(f"/v1/jobs/{queued}").json()["status"] == "cancelled"


def test_a_job_created_while_its_teacher_is_deleted_is_refused(
    client, tenant, model_id, dataset_id
):
    """The deletion holds the model's row; a job being created then waits on its foreign
    key and, once the deletion commits, is a 422 naming the teacher, not a 500 and not a
    queued job without one."""
    import threading

    from sqlalchemy import delete

    from app.db import session_scope
    from app.jobs.tables import Job
    from app.models.tables import Model

    answer: dict = {}
    with session_scope() as s:
        s.execute(select(Model.id).where(Model.id == model_id).with_for_update())
        s.execute(delete(Model).where(Model.id == model_id))
        post = threading.Thread(
            target=lambda: answer.update(
                r=client.post("/v1/jobs", json=job_body(model_id, dataset_id))
            )
        )
        post.start()
        post.join(1.5)
        assert post.is_alive()  # waiting for the deletion's lock
        s.commit()
    post.join(30)
    assert_problem(answer["r"], 422, "model_not_found", "teacher.model_id")
    with session_scope() as s:
        assert s.scalar(select(Job.id).where(Job.tenant == tenant)) is None


def test_the_reapers_loop_runs_the_lifecycle_passes(
    client, model_id, dataset_id, tmp_path, monkeypatch
):
    """The timer loop that every worker's reaper process runs, with the operator's
    settings read as it reads them."""
    import os
    import threading

    from app.settings import get_settings
    from tests.e2e.conftest import wait_for
    from tests.lifecycle import bucket_keys
    from workers import reaper

    jid = finished_job(client, model_id, dataset_id, tmp_path)
    _finished_ago(jid, LONG_AGO_S)
    monkeypatch.setattr(get_settings(), "artifact_retention_days", RETENTION_S / 86400)
    loop = threading.Thread(target=reaper._loop, args=(0.05, os.getppid()), daemon=True)
    loop.start()
    try:
        wait_for(lambda: client.get(f"/v1/jobs/{jid}").json()["artifacts_expired_at"], 20, "expiry")
        wait_for(lambda: bucket_keys(f"jobs/{jid}/") == [], 20, "objects deleted")
    finally:
        reaper._stop.set()
        loop.join(10)
        reaper._stop.clear()
