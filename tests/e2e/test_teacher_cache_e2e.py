"""The teacher is paid for once (issue #17): jobs through the API, Redis, S3 and a real
Celery worker. A headless tiny teacher is fine-tuned by a tenant's first job and kept;
the next job of the same teacher, training split and fine-tuning settings takes it and
skips fine-tuning; other settings and other tenants miss; deleting the dataset deletes
what was cached from it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.apiclient import (
    fetch_artifact,
    finished_job,
    job_body,
    make_key,
    upload_dataset,
    upload_model,
)
from tests.lifecycle import bucket_keys

pytestmark = pytest.mark.e2e

TRAINING = {"epochs": 1, "teacher_epochs": 3, "batch_size": 16, "max_seq_length": 32}
TENANT = "t-teacher-cache"
WEIGHTS = "model.safetensors"


def _run(client: TestClient, ids: tuple[str, str], **training: Any) -> dict[str, Any]:
    body = job_body(*ids, training={**TRAINING, **training}, pruning={"structured": ["layers"]})
    r = client.post("/v1/jobs", json=body)
    assert r.status_code == 202, r.text
    job = finished_job(client, r.json()["id"], 180)
    assert job["status"] == "succeeded", job
    return job


def _events(client: TestClient, jid: str) -> list[dict[str, Any]]:
    return client.get(f"/v1/jobs/{jid}/events", params={"limit": 1000}).json()["data"]


def _said(events: list[dict[str, Any]], message: str) -> list[dict[str, Any]]:
    return [e for e in events if message in e["data"].get("message", "")]


def _timings(client: TestClient, jid: str) -> dict[str, float]:
    r = client.get(f"/v1/jobs/{jid}/artifacts/report")
    assert r.status_code == 200, r.text
    return json.loads(r.content)["timings_s"]


def _rows(tenant: str) -> list:
    from sqlalchemy import select

    from app.db import session_scope
    from app.teacher_cache.tables import TeacherCacheEntry

    with session_scope() as s:
        query = select(TeacherCacheEntry).where(TeacherCacheEntry.tenant == tenant)
        return list(s.scalars(query.order_by(TeacherCacheEntry.created_at)))


@pytest.fixture(scope="module")
def tenant_client(app) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as c:
        c.headers["Authorization"] = f"Bearer {make_key(TENANT)}"
        yield c


@pytest.fixture(scope="module")
def inputs(tenant_client, tiny_teacher_tar, tiny_dataset) -> tuple[str, str]:
    model = upload_model(tenant_client, tiny_teacher_tar).json()["id"]
    dataset = upload_dataset(tenant_client, tiny_dataset).json()["id"]
    return model, dataset


@pytest.fixture(scope="module")
def first(tenant_client, inputs, celery_worker) -> dict[str, Any]:
    """The tenant's first job: fine-tunes the teacher and keeps it."""
    return _run(tenant_client, inputs)


def test_the_first_job_fine_tunes_and_keeps_its_teacher(tenant_client, first) -> None:
    assert first["metrics"]["teacher_cached"] is False
    assert first["metrics"]["teacher_finetune_s"] > 0
    [kept] = _said(_events(tenant_client, first["id"]), "teacher cached")
    assert kept["data"]["data"]["teacher_cache"] == "cached"
    [row] = _rows(TENANT)
    assert row.job_id == first["id"] and row.finetune_s == pytest.approx(
        first["metrics"]["teacher_finetune_s"], abs=1e-3
    )
    assert bucket_keys(f"teacher-cache/{TENANT}/") == [row.storage_key]


def test_a_job_of_the_same_teacher_data_and_settings_skips_fine_tuning(
    tenant_client, inputs, first
) -> None:
    # Another student (a deeper cut, another learning rate): the same teacher.
    second = _run(tenant_client, inputs, learning_rate=1e-3)
    metrics = second["metrics"]
    assert metrics["teacher_cached"] is True and metrics["teacher_finetuned"] is True
    assert metrics["teacher_finetune_s"] == first["metrics"]["teacher_finetune_s"]
    events = _events(tenant_client, second["id"])
    [reused] = _said(events, "teacher reused from the cache")
    assert reused["data"]["data"]["teacher_cached"] is True
    assert not _said(events, "teacher fine-tuned") and not _said(events, "teacher cached")
    # The saving in the phase timings: no training in the second job's teacher phase.
    a, b = _timings(tenant_client, first["id"]), _timings(tenant_client, second["id"])
    assert b["teacher_finetune"] < a["teacher_finetune"] / 2
    # The same teacher: scored the same.
    assert metrics["teacher"]["accuracy"] == first["metrics"]["teacher"]["accuracy"]
    [row] = _rows(TENANT)
    assert row.last_used_at > row.created_at


def test_the_same_settings_give_the_same_student(tenant_client, inputs, first, tmp_path) -> None:
    """A hit restores where fine-tuning left the generators: the student is the one a
    job that fine-tuned would have trained."""
    again = _run(tenant_client, inputs)
    assert again["metrics"]["teacher_cached"] is True
    assert again["metrics"]["student"]["accuracy"] == first["metrics"]["student"]["accuracy"]
    from safetensors.torch import load_file

    a, b = (
        load_file(fetch_artifact(tenant_client, j["id"], "model", tmp_path / j["id"]) / WEIGHTS)
        for j in (first, again)
    )
    assert a.keys() == b.keys() and all((a[k] - b[k]).abs().max() <= 1e-6 for k in a)


def test_a_setting_that_changes_the_teacher_misses(tenant_client, inputs, first) -> None:
    job = _run(tenant_client, inputs, teacher_learning_rate=1e-4)
    assert job["metrics"]["teacher_cached"] is False
    assert len(_rows(TENANT)) == 2


def test_teacher_cache_false_neither_takes_nor_keeps(tenant_client, inputs, first) -> None:
    job = _run(tenant_client, inputs, teacher_cache=False)
    assert job["metrics"]["teacher_cached"] is False
    assert not _said(_events(tenant_client, job["id"]), "teacher cached")
    assert len(_rows(TENANT)) == 2


def test_another_tenant_with_the_same_files_misses(
    client, tenant, tiny_teacher_tar, tiny_dataset, first
) -> None:
    ids = (
        upload_model(client, tiny_teacher_tar).json()["id"],
        upload_dataset(client, tiny_dataset).json()["id"],
    )
    job = _run(client, ids)
    assert job["metrics"]["teacher_cached"] is False
    [row] = _rows(tenant)
    assert row.key == _rows(TENANT)[0].key  # the same key, kept apart per tenant
    assert bucket_keys(f"teacher-cache/{tenant}/") == [row.storage_key]


def test_deleting_the_dataset_deletes_what_was_cached_from_it(tenant_client, inputs, first):
    assert len(bucket_keys(f"teacher-cache/{TENANT}/")) == 2
    assert tenant_client.delete(f"/v1/datasets/{inputs[1]}").status_code == 204
    assert _rows(TENANT) == []
    assert bucket_keys(f"teacher-cache/{TENANT}/") == []
