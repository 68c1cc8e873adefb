"""The teacher cache: find, fetch, keep and delete a tenant's fine-tuned teachers
(keyword-only functions). Workers call the first three, the deletion of a model or a
dataset the last.

Objects and rows, in the order that leaves no row without its object and no object
without its row for longer than a call: an entry's object is uploaded under a name of
its own (the key, then the job and attempt that made it) before its row is inserted;
when another job inserted a row for the key first, the loser deletes its object. A
deletion removes the rows in the caller's transaction and the objects after its commit.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import delete, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from app.db import utcnow
from app.quotas import stored_bytes
from app.settings import Settings
from app.storage import Storage, file_digest
from app.teacher_cache.tables import TeacherCacheEntry

log = logging.getLogger(__name__)


def cache_prefix(tenant: str) -> str:
    return f"teacher-cache/{tenant}/"


def object_key(*, tenant: str, key: str, job_id: str, attempt: int) -> str:
    # The writer in the name: two jobs that fine-tune the same key at once upload two
    # objects, and the one whose row loses deletes its own and never the winner's.
    return f"{cache_prefix(tenant)}{key}/{job_id}-a{attempt}.safetensors"


def find_entry(*, session: Session, tenant: str, key: str) -> TeacherCacheEntry | None:
    return session.get(TeacherCacheEntry, (tenant, key))


@dataclass(frozen=True)
class Fetched:
    path: Path
    entry: TeacherCacheEntry


def fetch_entry(
    *, session: Session, storage: Storage, tenant: str, key: str, dest: Path
) -> Fetched | None:
    """The tenant's entry for ``key`` downloaded to ``dest`` and checked against its
    digest, its ``last_used_at`` moved to now; None when there is none, or when its
    object is gone or damaged (the job then fine-tunes: only time is lost)."""
    entry = find_entry(session=session, tenant=tenant, key=key)
    if entry is None:
        return None
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        storage.download_file(entry.storage_key, dest)
        size, sha = file_digest(dest)
    except Exception:
        log.warning("teacher cache %s/%s: object %s unreadable", tenant, key, entry.storage_key)
        dest.unlink(missing_ok=True)
        return None
    if (size, sha) != (entry.size_bytes, entry.sha256):
        log.warning("teacher cache %s/%s: object %s damaged", tenant, key, entry.storage_key)
        dest.unlink(missing_ok=True)
        return None
    session.execute(
        update(TeacherCacheEntry)
        .where(TeacherCacheEntry.tenant == tenant, TeacherCacheEntry.key == key)
        .values(last_used_at=utcnow())
    )
    session.commit()
    return Fetched(path=dest, entry=entry)


@dataclass(frozen=True)
class Kept:
    """What ``keep_teacher`` did: ``"cached"`` (this entry is now the key's),
    ``"exists"`` (another job's came first; this one's object is deleted) or
    ``"over_quota"`` (nothing written)."""

    outcome: str
    size_bytes: int
    used_bytes: int = 0
    limit_bytes: int = 0
    storage_key: str | None = None


def keep_teacher(
    *,
    session: Session,
    storage: Storage,
    settings: Settings,
    tenant: str,
    key: str,
    path: Path,
    teacher_id: str,
    dataset_id: str,
    job_id: str,
    attempt: int,
    finetune_s: float,
) -> Kept:
    """Upload the entry at ``path``, then insert its row unless the key has one; a row
    that lost the race deletes its object. Counted in the tenant's stored bytes: an
    entry that would take the tenant over its quota is not kept."""
    size = path.stat().st_size
    if find_entry(session=session, tenant=tenant, key=key) is not None:
        return Kept("exists", size)
    used = stored_bytes(session, tenant)
    limit = settings.tenant_max_stored_bytes
    session.rollback()  # no transaction held open across the upload
    if used + size > limit:
        return Kept("over_quota", size, used_bytes=used, limit_bytes=limit)
    storage_key = object_key(tenant=tenant, key=key, job_id=job_id, attempt=attempt)
    try:
        stored = storage.put_file(storage_key, path)
        now = utcnow()
        inserted = _insert_unless_present(
            session,
            {
                "tenant": tenant,
                "key": key,
                "storage_key": storage_key,
                "size_bytes": stored.size_bytes,
                "sha256": stored.sha256,
                "teacher_id": teacher_id,
                "dataset_id": dataset_id,
                "job_id": job_id,
                "finetune_s": finetune_s,
                "created_at": now,
                "last_used_at": now,
            },
        )
    except BaseException:
        session.rollback()
        storage.delete(storage_key)  # no object without its row
        raise
    if not inserted:
        storage.delete(storage_key)
        return Kept("exists", size)
    return Kept("cached", stored.size_bytes, storage_key=storage_key)


def _insert_unless_present(session: Session, values: dict) -> bool:
    """INSERT … ON CONFLICT (tenant, key) DO NOTHING, committed; whether it inserted."""
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    table = TeacherCacheEntry.__table__
    statement = (
        dialect.insert(table)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["tenant", "key"])
        .returning(table.c.key)
    )
    inserted = session.execute(statement).first() is not None
    session.commit()
    return inserted


def remove_entries_of(
    *, session: Session, teacher_id: str | None = None, dataset_id: str | None = None
) -> list[str]:
    """Delete the rows of the entries made from this model or dataset, in the caller's
    transaction, and return their objects' keys: the caller deletes those after its
    commit (a crash between leaves objects no row names, never a row without its object)."""
    if teacher_id is None and dataset_id is None:
        return []
    which = or_(
        TeacherCacheEntry.teacher_id == teacher_id, TeacherCacheEntry.dataset_id == dataset_id
    )
    keys = list(session.scalars(select(TeacherCacheEntry.storage_key).where(which)))
    session.execute(delete(TeacherCacheEntry).where(which))
    return keys
