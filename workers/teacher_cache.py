"""A job's side of the teacher cache: look its key up before the engine runs, keep the
teacher the engine fine-tuned (app/teacher_cache/service.py holds the rows and objects).

The engine knows which settings change a fine-tuned teacher and derives the key from
them (workers/engine/teacher_key.py); this module gives it the digests of the inputs it
downloaded, a local copy of a cached entry, and uploads the entry the engine offers.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from app.datasets.tables import Dataset
from app.db import session_scope
from app.jobs.tables import Job
from app.models.tables import Model
from app.settings import Settings
from app.storage import Storage, file_digest
from app.teacher_cache import service as cache
from workers.engine.spec import CompressionSpec
from workers.engine.teacher_key import teacher_cache_key
from workers.inputs import build_spec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TeacherKeeper:
    """Where the teacher a job fine-tunes is kept, and what its row names."""

    storage: Storage
    settings: Settings
    tenant: str
    teacher_id: str
    dataset_id: str
    job_id: str
    attempt: int

    def keep(self, path: Path, info: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
        """Keep the entry at ``path``; the event to tell the job: level, message, data."""
        key = info["key"]
        data: dict[str, Any] = {"stage": "teacher_finetune", "teacher_cache_key": key}
        try:
            with session_scope() as s:
                kept = cache.keep_teacher(
                    session=s,
                    storage=self.storage,
                    settings=self.settings,
                    tenant=self.tenant,
                    key=key,
                    path=path,
                    teacher_id=self.teacher_id,
                    dataset_id=self.dataset_id,
                    job_id=self.job_id,
                    attempt=self.attempt,
                    finetune_s=float(info["finetune_s"]),
                )
        except Exception as e:
            # The job does not need the cache: it goes on with the teacher it has.
            log.warning("job %s: teacher not cached", self.job_id, exc_info=True)
            return "warning", f"teacher not cached ({type(e).__name__}); the job goes on", data
        data |= {"teacher_cache": kept.outcome, "size_bytes": kept.size_bytes}
        if kept.outcome == "cached":
            return (
                "info",
                f"teacher cached ({kept.size_bytes} bytes): later jobs of this teacher, "
                "training split and fine-tuning settings skip fine-tuning",
                data,
            )
        if kept.outcome == "exists":
            return "info", "teacher already cached by another job; this copy is dropped", data
        return (
            "warning",
            f"teacher not cached: its {kept.size_bytes} bytes would take what the tenant "
            f"stores from {kept.used_bytes} over its quota of {kept.limit_bytes} bytes "
            "(MODELPRESS_TENANT_MAX_STORED_BYTES); the job goes on",
            {**data, "code": "teacher_cache_over_quota"},
        )


def attach(
    spec: CompressionSpec,
    *,
    session: Session,
    storage: Storage,
    settings: Settings,
    job: Job,
    teacher: Model,
    dataset: Dataset,
    attempt: int,
    workdir: Path,
) -> tuple[CompressionSpec, TeacherKeeper | None]:
    """The spec with this job's teacher key and, on a hit, the cached entry downloaded;
    and the keeper of what the engine fine-tunes. Unchanged with ``training.teacher_cache``
    false."""
    if not spec.training.teacher_cache:
        return spec, None
    _, train_sha256 = file_digest(spec.train_file)
    key = teacher_cache_key(spec, teacher_sha256=teacher.sha256, train_sha256=train_sha256)
    fetched = cache.fetch_entry(
        session=session,
        storage=storage,
        tenant=job.tenant,
        key=key,
        dest=workdir / "teacher-cache" / "entry.safetensors",
    )
    spec = dataclasses.replace(
        spec, teacher_cache_key=key, cached_teacher=fetched.path if fetched else None
    )
    keeper = TeacherKeeper(
        storage=storage,
        settings=settings,
        tenant=job.tenant,
        teacher_id=teacher.id,
        dataset_id=dataset.id,
        job_id=job.id,
        attempt=attempt,
    )
    return spec, keeper


def job_spec(
    *,
    session: Session,
    job: Job,
    storage: Storage,
    settings: Settings,
    attempt: int,
    workdir: Path,
) -> tuple[CompressionSpec, TeacherKeeper | None]:
    """``job``'s engine spec, its inputs downloaded into ``workdir`` and its teacher
    looked up in the tenant's cache (``attach``)."""
    teacher = session.get(Model, job.teacher_id)
    dataset = session.get(Dataset, job.dataset_id)
    spec = build_spec(
        job=job,
        teacher=teacher,
        dataset=dataset,
        storage=storage,
        settings=settings,
        workdir=workdir,
    )
    return attach(
        spec,
        session=session,
        storage=storage,
        settings=settings,
        job=job,
        teacher=teacher,
        dataset=dataset,
        attempt=attempt,
        workdir=workdir,
    )
