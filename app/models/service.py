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
from app.quotas import ACTIVE, check_storage_quota
from app.settings import Settings
from app.storage import Storage
from app.teacher_cache.service import remove_entries_of
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
    """Delete a model unless a queued or running job needs it. Finished jobs keep their
    request, metrics and artifacts; their teacher reference becomes null. The teachers
    fine-tuned from it and cached go with it."""
    row = get_model(session=session, tenant=tenant, model_id=model_id)
    # Locked first: a job being created for this model holds a key lock on the row until
    # it commits, so this waits and then sees that job; one created after waits for this
    # deletion and is refused as naming no model.
    session.execute(select(Model.id).where(Model.id == model_id).with_for_update())
    in_use = session.execute(
        select(Job.id, Job.status)
        .where(Job.teacher_id == model_id, Job.status.in_(ACTIVE))
        .order_by(Job.id)
        .limit(1)
    ).one_or_none()
    if in_use:
        session.rollback()
        raise ProblemError(
            409,
            "model_in_use",
            f"Model {model_id} is the teacher of job {in_use.id}, which is {in_use.status}; "
            f"wait for it to finish or cancel it (POST /v1/jobs/{in_use.id}/cancel), then "
            "delete the model.",
        )
    cached = remove_entries_of(session=session, teacher_id=model_id)
    session.delete(row)
    session.commit()
    # After the commit: a crash before this leaves an object no row names, never a
    # model row without its archive.
    storage.delete(row.storage_key)
    for key in cached:
        storage.delete(key)
