"""The teacher cache's rows and objects (app/teacher_cache/service.py) on the real
PostgreSQL and S3: kept once per tenant and key, the loser of a race leaving no object,
counted in the quota, fetched and checked, deleted with the model or the dataset."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from tests.apiclient import assert_problem, upload_dataset
from tests.lifecycle import bucket_keys

KEY = "f" * 64


def _entry(tmp_path: Path, size: int = 4096, name: str = "entry.safetensors") -> Path:
    path = tmp_path / name
    path.write_bytes(os.urandom(size))
    return path


def _keep(tenant: str, model_id: str, dataset_id: str, path: Path, **kw):
    from app.db import session_scope
    from app.settings import get_settings
    from app.storage import get_storage
    from app.teacher_cache.service import keep_teacher

    args = {
        "storage": get_storage(),
        "settings": get_settings(),
        "tenant": tenant,
        "key": KEY,
        "path": path,
        "teacher_id": model_id,
        "dataset_id": dataset_id,
        "job_id": "job_test",
        "attempt": 1,
        "finetune_s": 12.5,
        **kw,
    }
    with session_scope() as s:
        return keep_teacher(session=s, **args)


def _rows(tenant: str) -> list:
    from sqlalchemy import select

    from app.db import session_scope
    from app.teacher_cache.tables import TeacherCacheEntry

    with session_scope() as s:
        return list(s.scalars(select(TeacherCacheEntry).where(TeacherCacheEntry.tenant == tenant)))


def _stored(tenant: str) -> int:
    from app.db import session_scope
    from app.quotas import stored_bytes

    with session_scope() as s:
        return stored_bytes(s, tenant)


def test_an_entry_is_kept_once_per_tenant_and_key(tenant, model_id, dataset_id, tmp_path):
    from app.teacher_cache.service import cache_prefix

    first = _keep(tenant, model_id, dataset_id, _entry(tmp_path))
    assert first.outcome == "cached"
    second = _keep(tenant, model_id, dataset_id, _entry(tmp_path, name="b"), job_id="job_b")
    assert second.outcome == "exists"
    [row] = _rows(tenant)
    assert (row.key, row.storage_key, row.size_bytes) == (KEY, first.storage_key, 4096)
    assert (row.teacher_id, row.dataset_id, row.finetune_s) == (model_id, dataset_id, 12.5)
    assert bucket_keys(cache_prefix(tenant)) == [first.storage_key]


def test_of_two_jobs_that_keep_one_key_at_once_the_loser_deletes_its_object(
    tenant, model_id, dataset_id, tmp_path
):
    """Both find no row and upload; one insert wins, the other meets the conflict."""
    from app.settings import get_settings
    from app.storage import storage_from_settings
    from app.teacher_cache.service import cache_prefix

    both_uploaded = threading.Barrier(2, timeout=30)

    class Meeting:
        """The real S3 storage, each upload held until the other job's has landed too."""

        def __init__(self) -> None:
            self.inner = storage_from_settings(get_settings())

        def put_file(self, key, path):
            stored = self.inner.put_file(key, path)
            both_uploaded.wait()
            return stored

        def __getattr__(self, name):
            return getattr(self.inner, name)

    results: dict[str, object] = {}

    def keep(job: str) -> None:
        path = _entry(tmp_path, name=job)
        results[job] = _keep(tenant, model_id, dataset_id, path, job_id=job, storage=Meeting())

    threads = [threading.Thread(target=keep, args=(job,)) for job in ("job_a", "job_b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    outcomes = sorted(r.outcome for r in results.values())  # type: ignore[attr-defined]
    assert outcomes == ["cached", "exists"]
    [row] = _rows(tenant)
    assert bucket_keys(cache_prefix(tenant)) == [row.storage_key]
    winner = next(j for j, r in results.items() if r.outcome == "cached")  # type: ignore[attr-defined]
    assert row.job_id == winner and f"/{winner}-a1." in row.storage_key


def test_cached_bytes_count_in_the_quota_and_an_entry_over_it_is_not_kept(
    tenant, model_id, dataset_id, tmp_path, monkeypatch, client, tiny_dataset
):
    from app.settings import get_settings
    from app.teacher_cache.service import cache_prefix

    before = _stored(tenant)
    assert _keep(tenant, model_id, dataset_id, _entry(tmp_path, size=50_000)).outcome == "cached"
    assert _stored(tenant) == before + 50_000

    # Room for what is stored and less than one more upload of the dataset.
    settings = get_settings()
    monkeypatch.setattr(settings, "tenant_max_stored_bytes", before + 50_000 + 1000)
    over = _keep(tenant, model_id, dataset_id, _entry(tmp_path, size=2000), key="e" * 64)
    assert (over.outcome, over.used_bytes, over.limit_bytes) == (
        "over_quota",
        before + 50_000,
        before + 51_000,
    )
    assert len(_rows(tenant)) == 1 and len(bucket_keys(cache_prefix(tenant))) == 1
    # An upload meets a quota that counts the cached teacher.
    body = assert_problem(upload_dataset(client, tiny_dataset), 403, "quota_stored_bytes")
    assert "cached fine-tuned teachers" in body["detail"]


def test_an_entry_is_fetched_checked_and_only_by_its_tenant(tenant, model_id, dataset_id, tmp_path):
    from app.db import session_scope
    from app.storage import get_storage
    from app.teacher_cache.service import fetch_entry

    source = _entry(tmp_path)
    kept = _keep(tenant, model_id, dataset_id, source)
    storage = get_storage()
    with session_scope() as s:
        got = fetch_entry(
            session=s, storage=storage, tenant=tenant, key=KEY, dest=tmp_path / "got" / "e"
        )
        assert got is not None and got.path.read_bytes() == source.read_bytes()
        assert got.entry.last_used_at >= got.entry.created_at
        other = fetch_entry(
            session=s, storage=storage, tenant="t-other", key=KEY, dest=tmp_path / "o" / "e"
        )
        assert other is None
    # An object that no longer holds what its row says is a miss, not a teacher.
    storage.put_file(kept.storage_key, _entry(tmp_path, name="damaged"))
    with session_scope() as s:
        dest = tmp_path / "damaged-got" / "e"
        assert fetch_entry(session=s, storage=storage, tenant=tenant, key=KEY, dest=dest) is None
        assert not dest.exists()


@pytest.mark.parametrize("deleted", ["model", "dataset"])
def test_deleting_the_model_or_the_dataset_deletes_its_cached_teachers(
    deleted, client, tenant, model_id, dataset_id, tmp_path, tiny_dataset
):
    from app.teacher_cache.service import cache_prefix

    other = upload_dataset(client, tiny_dataset).json()["id"]
    _keep(tenant, model_id, dataset_id, _entry(tmp_path))
    _keep(tenant, model_id, other, _entry(tmp_path, name="o"), key="0" * 64)
    assert len(bucket_keys(cache_prefix(tenant))) == 2

    path = f"/v1/models/{model_id}" if deleted == "model" else f"/v1/datasets/{dataset_id}"
    assert client.delete(path).status_code == 204
    left = _rows(tenant)
    # The model made both; the dataset only the first.
    assert [r.key for r in left] == ([] if deleted == "model" else ["0" * 64])
    assert bucket_keys(cache_prefix(tenant)) == [r.storage_key for r in left]
