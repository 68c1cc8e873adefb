"""Per-tenant quotas, checked before anything is written; problem+json names the limit."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.datasets.tables import Dataset
from app.errors import ProblemError
from app.jobs.tables import Artifact, Job
from app.models.tables import Model
from app.settings import Settings
from app.teacher_cache.tables import TeacherCacheEntry

ACTIVE = ("queued", "running", "cancelling")


def stored_bytes(session: Session, tenant: str) -> int:
    """What the tenant keeps in the object store: its models, datasets, the artifacts
    of its jobs (expired or deleted ones no longer count) and its cached fine-tuned
    teachers (app/teacher_cache/)."""
    total = 0
    for table in (Model, Dataset, TeacherCacheEntry):
        total += session.scalar(
            select(func.coalesce(func.sum(table.size_bytes), 0)).where(table.tenant == tenant)
        )
    total += session.scalar(
        select(func.coalesce(func.sum(Artifact.size_bytes), 0))
        .join(Job, Job.id == Artifact.job_id)
        .where(Job.tenant == tenant)
    )
    return int(total)


def check_storage_quota(
    *, session: Session, settings: Settings, tenant: str, incoming: int
) -> None:
    used = stored_bytes(session, tenant)
    limit = settings.tenant_max_stored_bytes
    if used + incoming > limit:
        raise ProblemError(
            403,
            "quota_stored_bytes",
            f"This upload ({incoming} bytes) would take what the tenant stores (models, "
            "datasets, job artifacts and cached fine-tuned teachers) to "
            f"{used + incoming} bytes, over its quota of {limit} "
            "(MODELPRESS_TENANT_MAX_STORED_BYTES); delete some first "
            "(DELETE /v1/models/{id} or /v1/datasets/{id}, which deletes the teachers cached "
            "from it too, or, for a finished job, /v1/jobs/{id}).",
        )


def check_active_jobs_quota(*, session: Session, settings: Settings, tenant: str) -> None:
    active = session.scalar(
        select(func.count())
        .select_from(Job)
        # A sweep counts once: its children are not jobs the tenant submitted.
        .where(Job.tenant == tenant, Job.status.in_(ACTIVE), Job.parent_id.is_(None))
    )
    limit = settings.tenant_max_active_jobs
    if active >= limit:
        raise ProblemError(
            429,
            "quota_active_jobs",
            f"The tenant has {active} queued or running jobs, its limit "
            "(MODELPRESS_TENANT_MAX_ACTIVE_JOBS); wait for some to finish or cancel them.",
            headers={"Retry-After": "60"},
        )
