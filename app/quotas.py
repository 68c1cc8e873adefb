"""Per-tenant quotas, checked before anything is written; problem+json names the limit."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.datasets.tables import Dataset
from app.errors import ProblemError
from app.jobs.tables import Job
from app.models.tables import Model
from app.settings import Settings

ACTIVE = ("queued", "running", "cancelling")


def stored_bytes(session: Session, tenant: str) -> int:
    total = 0
    for table in (Model, Dataset):
        total += session.scalar(
            select(func.coalesce(func.sum(table.size_bytes), 0)).where(table.tenant == tenant)
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
            f"This upload ({incoming} bytes) would take the tenant's models and datasets to "
            f"{used + incoming} bytes, over its quota of {limit} "
            "(MODELPRESS_TENANT_MAX_STORED_BYTES); delete some first.",
        )


def check_active_jobs_quota(*, session: Session, settings: Settings, tenant: str) -> None:
    active = session.scalar(
        select(func.count()).select_from(Job).where(Job.tenant == tenant, Job.status.in_(ACTIVE))
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
