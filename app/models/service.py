"""Teacher models: upload, read, list, delete (keyword-only functions)."""

from __future__ import annotations

import logging
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import ProblemError
from app.ids import new_id
from app.jobs.tables import Job
from app.models.archive import ArchiveLimits, inspect_archive
from app.models.tables import Model
from app.pagination import keyset
from app.quotas import check_storage_quota
from app.settings import Settings
from app.storage import Storage
from app.tenancy import get_owned

log = logging.getLogger(__name__)


def create_model(
    *,
    session: Session,
    storage: Storage,
    settings: Settings,
    tenant: str,
    path: Path,
    filename: str,
    name: str | None,
) -> Model:
    # Every check raises before anything is written.
    check_storage_quota(
        session=session, settings=settings, tenant=tenant, incoming=path.stat().st_size
    )
    info = inspect_archive(path, archive_limits(settings))
    model_id = new_id("mdl")
    key = f"models/{model_id}/model.{info.archive_format}"
    stored = storage.put_file(key, path)
    row = Model(
        id=model_id,
        tenant=tenant,
        name=name,
        filename=filename,
        archive_format=info.archive_format,
        storage_key=key,
        size_bytes=stored.size_bytes,
        sha256=stored.sha256,
        architecture=info.architecture,
        model_type=info.model_type,
        num_parameters=info.num_parameters,
        has_task_head=info.has_task_head,
        num_labels=info.num_labels,
        config=info.config,
    )
    try:
        session.add(row)
        session.commit()
    except BaseException:
        session.rollback()
        # No orphaned objects: the row is the only pointer to the file.
        storage.delete(key)
        raise
    return row


def archive_limits(settings: Settings) -> ArchiveLimits:
    return ArchiveLimits(settings.max_archive_members, settings.max_archive_bytes)


def get_model(*, session: Session, tenant: str, model_id: str) -> Model:
    return get_owned(session, Model, model_id, tenant=tenant, kind="model")


def list_models(
    *, session: Session, tenant: str, limit: int, after: str | None
) -> tuple[list[Model], bool]:
    query = select(Model).where(Model.tenant == tenant)
    return keyset(session, query, Model.id, limit=limit, after=after)


def delete_model(*, session: Session, storage: Storage, tenant: str, model_id: str) -> None:
    row = get_model(session=session, tenant=tenant, model_id=model_id)
    in_use = session.scalar(select(Job.id).where(Job.teacher_id == model_id).limit(1))
    if in_use:
        raise ProblemError(
            409,
            "model_in_use",
            f"Model {model_id} is the teacher of job {in_use}; "
            "jobs keep their teacher, so it cannot be deleted.",
        )
    session.delete(row)
    session.commit()
    storage.delete(row.storage_key)
