"""The Python client with a real Celery worker: a job followed to its end, its artifacts."""

from __future__ import annotations

import hashlib
import tarfile
import uuid
from pathlib import Path

import pytest

from tests.apiclient import job_body, make_key
from tests.client.conftest import TINY_TRAINING

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def mp_module(server_url, celery_worker):
    from modelpress_client import Client

    key = make_key(f"t-{uuid.uuid4().hex[:8]}")
    with Client(server_url, api_key=key, max_retry_wait=1.0) as c:
        yield c


@pytest.fixture(scope="module")
def finished(mp_module, tiny_teacher_tar, tiny_dataset, celery_worker):
    """One tiny job, followed by ``wait`` from queued to succeeded."""
    mp = mp_module
    model = mp.upload_model(tiny_teacher_tar)
    dataset = mp.upload_dataset(tiny_dataset, format="jsonl")
    job = mp.create_job(job_body(model.id, dataset.id, training=TINY_TRAINING))
    seen = []
    done = mp.wait(job.id, on_progress=seen.append, timeout=300)
    assert done.status == "succeeded", (done, celery_worker.text()[-3000:])
    return done, seen


def test_wait_reports_progress_until_succeeded(finished):
    job, seen = finished
    assert seen[0].status == "queued" and seen[-1].status == "succeeded"
    assert seen[-1].progress == 1.0 and job.progress == 1.0
    progress = [p.progress for p in seen]
    # Monotone, with progress between start and end: how many values arrive depends on
    # the job's speed (the worker writes progress every 2 s at most).
    assert progress == sorted(progress) and any(0 < p < 1 for p in progress)
    phases = [p.phase for p in seen if p.phase]
    assert phases[-1] == "exporting" and len(set(phases)) >= 3
    # each report is a change, and every change after the first came from an event
    keys = [(p.status, p.phase, p.progress) for p in seen]
    assert len(keys) == len(set(keys))
    assert all(p.event is not None for p in seen[1:])
    assert (
        job.metrics and job.metrics["student"]["num_layers"] < job.metrics["teacher"]["num_layers"]
    )
    assert job.error is None and job.finished_at is not None


def test_events_listed_and_streamed_agree(mp_module, finished):
    job, _ = finished
    listed = list(mp_module.iter_events(job.id))
    assert [e.id for e in mp_module.stream_events(job.id)] == [e.id for e in listed]
    assert [e.data["status"] for e in listed if e.type == "status"] == [
        "queued",
        "running",
        "succeeded",
    ]
    middle = listed[len(listed) // 2].id
    assert [e.id for e in mp_module.stream_events(job.id, after=middle)] == [
        e.id for e in listed if e.id > middle
    ]


def test_download_artifact_checks_its_sha256(mp_module, finished, tmp_path: Path):
    job, _ = finished
    arts = {a.name: a for a in mp_module.list_artifacts(job.id)}
    assert {"model", "report", "model-card"} <= set(arts)
    sent = []
    path = mp_module.download_artifact(
        job.id, "model", tmp_path, on_progress=lambda s, t: sent.append((s, t))
    )
    assert path == tmp_path / arts["model"].filename
    data = path.read_bytes()
    assert hashlib.sha256(data).hexdigest() == arts["model"].sha256
    assert sent[-1] == (len(data), arts["model"].size_bytes)
    with tarfile.open(path) as tf:
        assert "config.json" in tf.getnames()
    report = mp_module.download_artifact(job.id, "report", tmp_path / "r.json")
    assert report == tmp_path / "r.json" and report.stat().st_size == arts["report"].size_bytes
    assert not list(tmp_path.glob("*.part"))

    from modelpress_client import NotFound

    with pytest.raises(NotFound) as e:
        mp_module.download_artifact(job.id, "nope", tmp_path)
    assert e.value.code == "artifact_not_found" and "model" in e.value.detail


def test_corrupted_stored_artifact_fails_the_checksum(mp_module, finished, tmp_path: Path):
    from modelpress_client import ChecksumMismatch
    from sqlalchemy import select

    from app.db import session_scope
    from app.jobs.tables import Artifact
    from app.storage import get_storage

    job, _ = finished
    name = "training-curves"
    with session_scope() as s:
        key = s.scalar(
            select(Artifact.storage_key).where(Artifact.job_id == job.id, Artifact.name == name)
        )
    # The same number of bytes, other bytes: only the checksum can tell.
    stored = tmp_path / "stored"
    get_storage().download_file(key, stored)
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0xFF
    stored.write_bytes(bytes(data))
    get_storage().put_file(key, stored)
    with pytest.raises(ChecksumMismatch) as e:
        mp_module.download_artifact(job.id, name, tmp_path / "curves.png")
    assert e.value.code == "checksum_mismatch"
    assert not (tmp_path / "curves.png").exists() and not list(tmp_path.glob("*.part"))
