"""Leases and the reaper against the real database."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update

from tests.apiclient import job_body


@pytest.fixture
def settings():
    from app.settings import get_settings

    return get_settings().model_copy(update={"max_attempts": 2, "requeue_after_seconds": 60})


def _queued_job(client, model_id, dataset_id) -> str:
    return client.post("/v1/jobs", json=job_body(model_id, dataset_id)).json()["id"]


def _set(job_id: str, **values) -> None:
    from app.db import session_scope
    from app.jobs.tables import Job

    with session_scope() as s:
        s.execute(update(Job).where(Job.id == job_id).values(**values))
        s.commit()


def _claim(job_id: str) -> int:
    from app.db import session_scope
    from app.jobs import service as jobs

    with session_scope() as s:
        return jobs.claim(session=s, job_id=job_id, worker="w", lease_seconds=60)


def _reap(settings, drained=None) -> list[tuple[str, str]]:
    from app.db import session_scope
    from app.jobs import service as jobs

    with session_scope() as s:
        return jobs.reap(session=s, settings=settings, drained=drained).to_send


def _expire(job_id: str) -> None:
    from app.db import utcnow

    _set(job_id, lease_expires_at=utcnow() - timedelta(seconds=1))


def test_expired_lease_requeues_then_fails_past_max_attempts(
    client, model_id, dataset_id, settings
):
    jid = _queued_job(client, model_id, dataset_id)
    assert _claim(jid) == 1
    assert jid not in dict(_reap(settings))  # lease alive: untouched
    _expire(jid)
    assert (jid, "cpu") in _reap(settings)
    job = client.get(f"/v1/jobs/{jid}").json()
    assert job["status"] == "queued" and job["attempt"] == 1
    assert _claim(jid) == 2  # the next worker resumes it
    _expire(jid)
    assert jid not in dict(_reap(settings))
    job = client.get(f"/v1/jobs/{jid}").json()
    assert job["status"] == "failed"
    assert job["error"]["code"] == "max_attempts_exceeded"
    assert "2 times" in job["error"]["message"]
    statuses = [
        (e["attempt"], e["data"]["status"], e["data"].get("reason"))
        for e in client.get(f"/v1/jobs/{jid}/events").json()["data"]
        if e["type"] == "status"
    ]
    assert statuses == [
        (0, "queued", None),
        (1, "running", None),
        (1, "queued", "worker_lost"),
        (2, "running", None),
        (2, "failed", "worker_lost"),
    ]


def test_expired_cancelling_job_is_cancelled(client, model_id, dataset_id, settings):
    jid = _queued_job(client, model_id, dataset_id)
    _claim(jid)
    assert client.post(f"/v1/jobs/{jid}/cancel").json()["status"] == "cancelling"
    _expire(jid)
    assert jid not in dict(_reap(settings))
    assert client.get(f"/v1/jobs/{jid}").json()["status"] == "cancelled"


def test_unclaimed_queued_jobs_are_sent_again(client, model_id, dataset_id, settings):
    from app.db import utcnow

    old = _queued_job(client, model_id, dataset_id)
    fresh = _queued_job(client, model_id, dataset_id)
    _set(old, updated_at=utcnow() - timedelta(seconds=120))
    sent = dict(_reap(settings))
    assert old in sent and fresh not in sent
    assert old not in dict(_reap(settings))  # touched: not sent again at once


def test_unclaimed_jobs_wait_while_their_queue_holds_messages(
    client, model_id, dataset_id, settings, broker
):
    """A backlog means busy workers, not a lost message: no copy is sent (each would
    cost a worker a process to find the job taken) until the queue is empty."""
    import redis

    from app.db import utcnow
    from app.jobs.queue import drained

    r = redis.Redis.from_url(broker)
    r.delete("cpu")
    old = _queued_job(client, model_id, dataset_id)  # its message waits in "cpu"
    _set(old, updated_at=utcnow() - timedelta(seconds=120))
    assert not drained("cpu")
    assert old not in dict(_reap(settings, drained))
    r.delete("cpu")  # the message is lost, as in a broker restart
    assert drained("cpu")
    assert old in dict(_reap(settings, drained))


def test_renewal_fails_for_a_stale_attempt(client, model_id, dataset_id, settings):
    from app.db import session_scope
    from app.jobs import service as jobs

    jid = _queued_job(client, model_id, dataset_id)
    _claim(jid)
    with session_scope() as s:
        assert jobs.renew_lease(session=s, job_id=jid, attempt=1, lease_seconds=60)
        assert not jobs.renew_lease(session=s, job_id=jid, attempt=2, lease_seconds=60)


def test_max_runtime_fails_the_job(client, model_id, dataset_id):
    from workers.runner import run_job

    long = {"epochs": 100, "teacher_epochs": 100, "batch_size": 16, "max_seq_length": 32}
    jid = client.post(
        "/v1/jobs", json=job_body(model_id, dataset_id, training=long, max_runtime_s=60)
    ).json()["id"]
    from app.db import session_scope
    from app.jobs.tables import Job

    with session_scope() as s:  # below the API's minimum, to keep the test short
        job = s.get(Job, jid)
        job.request = {**job.request, "max_runtime_s": 3}
        s.commit()
    assert run_job(job_id=jid, worker="w") == "failed"
    job = client.get(f"/v1/jobs/{jid}").json()
    assert job["error"]["code"] == "max_runtime_exceeded"
    assert client.get(f"/v1/jobs/{jid}/artifacts").json()["data"] == []


def test_sweep_removes_objects_that_landed_after_the_job_ended(
    client, model_id, dataset_id, tmp_path
):
    """A dead attempt's upload can arrive after the next attempt cleaned up: the sweep
    deletes what no artifact row names, and keeps what one does."""
    from app.db import session_scope
    from app.jobs import service as jobs
    from app.storage import get_storage
    from workers.reaper import sweep_orphans

    jid = _queued_job(client, model_id, dataset_id)
    _claim(jid)
    _expire(jid)
    from app.settings import get_settings

    _reap(get_settings())
    assert _claim(jid) == 2
    storage = get_storage()
    blob = tmp_path / "b"
    blob.write_bytes(b"x" * 100)
    kept = storage.put_file(f"jobs/{jid}/2/model.tar.gz", blob)
    with session_scope() as s:
        assert jobs.finish(
            session=s,
            job_id=jid,
            attempt=2,
            status="succeeded",
            metrics={},
            artifacts=[
                {
                    "name": "model",
                    "kind": "model",
                    "filename": "model.tar.gz",
                    "content_type": "application/gzip",
                    "storage_key": f"jobs/{jid}/2/model.tar.gz",
                    "size_bytes": kept.size_bytes,
                    "sha256": kept.sha256,
                }
            ],
        )
    storage.put_file(f"jobs/{jid}/1/model.tar.gz", blob)  # attempt 1's, arriving late
    assert sweep_orphans() >= 1
    assert storage.list(f"jobs/{jid}/") == [f"jobs/{jid}/2/model.tar.gz"]
    # A job that ended long ago is not listed again.
    storage.put_file(f"jobs/{jid}/1/late.bin", blob)
    assert sweep_orphans(window_s=0) == 0
    storage.delete(f"jobs/{jid}/1/late.bin")
