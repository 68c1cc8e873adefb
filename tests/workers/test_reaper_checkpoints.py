"""A job's end deletes its checkpoints whatever the timing (issue #18 item 7).

tests/faults/test_worker_kills.py::test_killed_past_max_attempts_fails_with_its_reason once
found attempt 1's checkpoint (jobs/<id>/checkpoints/a1-00002.pt) after the job had failed
with max_attempts_exceeded: the reaper committed the end, and only then deleted the
objects, so a client reading in between saw a failed job with a checkpoint. Each test
here drives the real functions, in the order that goes wrong, against the real
database and object store.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from tests.apiclient import job_body


@pytest.fixture
def last_attempt(monkeypatch):
    """Settings under which attempt 1 is the last one allowed."""
    from app.settings import get_settings

    monkeypatch.setattr(get_settings(), "max_attempts", 1)
    return get_settings()


@pytest.fixture
def checkpoint_file(tmp_path: Path) -> Path:
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(b"c" * 1000)
    return path


def _claimed(client, model_id, dataset_id) -> str:
    from app.db import session_scope
    from app.jobs import service as jobs

    jid = client.post("/v1/jobs", json=job_body(model_id, dataset_id)).json()["id"]
    with session_scope() as s:
        assert jobs.claim(session=s, job_id=jid, worker="w", lease_seconds=60) == 1
    return jid


def _checkpointed(jid: str, path: Path, n: int = 1):
    """Attempt 1 saves ``n`` checkpoints the way a worker does (upload, then record)."""
    from app.storage import get_storage
    from workers.callback import JobCallback

    callback = JobCallback(jid, 1, storage=get_storage())
    for step in range(n):
        callback.on_checkpoint(path, {"stage": "distilling", "step": 20 * (step + 1)})
    return callback


def _lease_runs_out(jid: str) -> None:
    from app.db import session_scope, utcnow
    from app.jobs.tables import Job

    with session_scope() as s:
        s.execute(update(Job).where(Job.id == jid).values(lease_expires_at=utcnow() - timedelta(1)))
        s.commit()


def _objects(jid: str) -> list[str]:
    from app.storage import get_storage

    return get_storage().list(f"jobs/{jid}/")


def test_the_end_is_committed_only_once_the_checkpoints_are_gone(
    client, model_id, dataset_id, last_attempt, checkpoint_file, monkeypatch
):
    from app.jobs import service as jobs
    from app.storage import get_storage
    from workers import reaper

    jid = _claimed(client, model_id, dataset_id)
    _checkpointed(jid, checkpoint_file, n=2)  # a1-00001 replaced by a1-00002
    # And one whose upload finished as the worker was killed, before it was recorded.
    get_storage().put_file(f"jobs/{jid}/checkpoints/a1-00003.pt", checkpoint_file)
    assert len(_objects(jid)) == 2
    _lease_runs_out(jid)

    # What a client polling the job could read the moment the end commits.
    seen_at_commit: list[tuple[str, list[str]]] = []
    real_reap = jobs.reap

    def reap_then_look(**kwargs):
        result = real_reap(**kwargs)  # committed: the job reads as failed from here on
        seen_at_commit.append((client.get(f"/v1/jobs/{jid}").json()["status"], _objects(jid)))
        return result

    monkeypatch.setattr(reaper.jobs, "reap", reap_then_look)
    reaped = reaper.reap_once(last_attempt)
    assert reaped.ended == [jid]
    assert seen_at_commit == [("failed", [])]
    job = client.get(f"/v1/jobs/{jid}").json()
    assert job["error"]["code"] == "max_attempts_exceeded"
    assert _objects(jid) == []


def test_a_cancelling_job_whose_worker_died_ends_without_its_checkpoints(
    client, model_id, dataset_id, checkpoint_file, monkeypatch
):
    from app.jobs import service as jobs
    from app.settings import get_settings
    from workers import reaper

    jid = _claimed(client, model_id, dataset_id)
    _checkpointed(jid, checkpoint_file)
    assert client.post(f"/v1/jobs/{jid}/cancel").json()["status"] == "cancelling"
    _lease_runs_out(jid)
    seen: list[list[str]] = []
    real_reap = jobs.reap

    def reap_then_look(**kwargs):
        result = real_reap(**kwargs)
        seen.append(_objects(jid))
        return result

    monkeypatch.setattr(reaper.jobs, "reap", reap_then_look)
    assert reaper.reap_once(get_settings()).ended == [jid]
    assert seen == [[]]
    assert client.get(f"/v1/jobs/{jid}").json()["status"] == "cancelled"


def test_a_requeued_job_keeps_its_checkpoint(client, model_id, dataset_id, checkpoint_file):
    from app.settings import get_settings
    from workers import reaper

    jid = _claimed(client, model_id, dataset_id)
    _checkpointed(jid, checkpoint_file)
    _lease_runs_out(jid)
    assert get_settings().max_attempts > 1
    reaped = reaper.reap_once(get_settings())
    assert jid in dict(reaped.to_send) and jid not in reaped.ended
    assert _objects(jid) == [f"jobs/{jid}/checkpoints/a1-00001.pt"]  # the next attempt's
    client.post(f"/v1/jobs/{jid}/cancel")


def test_uploads_that_land_after_the_end_are_deleted(
    client, model_id, dataset_id, last_attempt, checkpoint_file
):
    """A killed worker's request still in flight (a proxy, a kernel buffer) lands after
    the reaper deleted everything; a stale worker that is still alive saves one too."""
    from app.db import session_scope
    from app.jobs import service as jobs
    from app.jobs.tables import Job
    from app.storage import get_storage
    from workers import reaper

    jid = _claimed(client, model_id, dataset_id)
    stale = _checkpointed(jid, checkpoint_file)
    _lease_runs_out(jid)
    assert reaper.reap_once(last_attempt).ended == [jid]
    assert _objects(jid) == []

    # The stale attempt checkpoints after the end: its record is refused, so it deletes
    # its own upload and stops.
    stale.on_checkpoint(checkpoint_file, {"stage": "distilling", "step": 60})
    assert stale.stop_reason == "lost"
    assert _objects(jid) == []

    # The dead attempt's upload lands: the orphan sweep deletes it.
    storage = get_storage()
    storage.put_file(f"jobs/{jid}/checkpoints/a1-00009.pt", checkpoint_file)
    assert reaper.sweep_orphans() >= 1
    assert _objects(jid) == []

    # One that lands after the sweep's window: the folder sweep deletes it, as a failed
    # job keeps nothing.
    from app.db import utcnow

    long_ago = utcnow() - timedelta(seconds=reaper.ORPHAN_WINDOW_S + 60)
    with session_scope() as s:
        s.execute(update(Job).where(Job.id == jid).values(finished_at=long_ago))
        s.commit()
    late = f"jobs/{jid}/checkpoints/a1-00010.pt"
    storage.put_file(late, checkpoint_file)
    reaper.sweep_orphans()
    assert _objects(jid) == [late]  # past the orphan sweep's window
    assert reaper.sweep_job_folders() >= 1
    assert _objects(jid) == []
    with session_scope() as s:
        assert jobs.checkpoint_of(session=s, job_id=jid) is None


def test_a_succeeded_jobs_folder_is_not_emptied(client, model_id, dataset_id, checkpoint_file):
    from app.db import session_scope
    from app.jobs import service as jobs

    jid = _claimed(client, model_id, dataset_id)
    with session_scope() as s:
        assert jobs.finish(session=s, job_id=jid, attempt=1, status="succeeded", metrics={})
        assert jid not in jobs.job_folders_to_empty(session=s, job_ids=[jid])


def test_cancelling_a_queued_job_deletes_the_checkpoint_a_lost_attempt_left(
    client, model_id, dataset_id, checkpoint_file
):
    from app.settings import get_settings
    from workers import reaper

    jid = _claimed(client, model_id, dataset_id)
    _checkpointed(jid, checkpoint_file)
    _lease_runs_out(jid)
    reaper.reap_once(get_settings())  # worker lost: queued again, checkpoint kept
    assert client.get(f"/v1/jobs/{jid}").json()["status"] == "queued"
    assert _objects(jid)
    job = client.post(f"/v1/jobs/{jid}/cancel").json()
    assert job["status"] == "cancelled"
    assert _objects(jid) == []
