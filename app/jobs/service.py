"""Jobs: creation, reads, and every state change (the one place they happen).

States: queued → running → succeeded | failed | cancelled, with cancelling on the way
to cancelled. Worker-side writes carry the attempt they claimed and match only while
that attempt owns the job, so a stale worker cannot overwrite a live one.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.datasets.tables import Dataset
from app.db import utcnow
from app.errors import ProblemError, not_found
from app.ids import new_id
from app.jobs import queue as job_queue
from app.jobs.schemas import TERMINAL, JobCreate
from app.jobs.tables import Artifact, Job, JobEvent
from app.jobs.validation import check_job_request
from app.models.tables import Model
from app.pagination import keyset
from app.quotas import check_active_jobs_quota
from app.settings import Settings
from app.storage import Storage
from app.tenancy import get_owned
from app.webhooks import outbox as webhook_outbox

OWNED_STATES = ("running", "cancelling")
log = logging.getLogger(__name__)


# ---------------------------------------------------------------- creation and reads


def _request_hash(request: dict[str, Any]) -> str:
    canonical = json.dumps(request, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def create_job(
    *,
    session: Session,
    settings: Settings,
    tenant: str,
    body: JobCreate,
    idempotency_key: str | None,
) -> tuple[Job, bool]:
    """Insert a queued job and enqueue it; returns (job, created)."""
    if body.max_runtime_s is None:
        body = body.model_copy(update={"max_runtime_s": settings.job_max_runtime_seconds})
    request = body.model_dump(mode="json")
    request_hash = _request_hash(request)
    if idempotency_key is not None:
        existing = _by_idempotency_key(session, settings, tenant, idempotency_key, request_hash)
        if existing is not None:
            return existing, False

    teacher, dataset = _inputs_of(session, tenant, body)
    warnings = check_job_request(body, teacher, dataset)
    check_active_jobs_quota(session=session, settings=settings, tenant=tenant)
    queue = job_queue.choose_queue(accelerator=body.accelerator, settings=settings)
    if queue is None:
        raise ProblemError(
            422,
            "no_gpu_workers",
            "accelerator is 'gpu' but this deployment has no GPU workers; use 'auto' or 'cpu'.",
            param="accelerator",
        )

    job = Job(
        id=new_id("job"),
        tenant=tenant,
        name=body.name,
        task=body.task,
        status="queued",
        phase=None,
        progress=0.0,
        attempt=0,
        queue=queue,
        teacher_id=teacher.id,
        dataset_id=dataset.id,
        request=request,
        request_hash=request_hash,
        idempotency_key=idempotency_key,
    )
    session.add(job)
    session.add(JobEvent(job_id=job.id, type="status", attempt=0, data={"status": "queued"}))
    for warning in warnings:
        # With the job, so no reader sees it without what was said when it was created.
        data = {"code": warning["code"], "param": warning["param"], **warning["data"]}
        event = {"level": "warning", "message": warning["message"], "data": data}
        session.add(JobEvent(job_id=job.id, type="warning", attempt=0, data=event))
    try:
        session.commit()
    except IntegrityError:
        # Two requests with one Idempotency-Key raced and the other one won; or the
        # teacher or dataset was deleted meanwhile (its row lock made us wait for that).
        session.rollback()
        if idempotency_key is not None:
            existing = _by_idempotency_key(session, settings, tenant, idempotency_key, request_hash)
            if existing is not None:
                return existing, False
        _inputs_of(session, tenant, body)  # a 422 naming the one that is gone
        raise
    # Commit, then enqueue: a worker must find the row when the message arrives.
    if not job_queue.enqueue(job_id=job.id, queue=queue):
        add_event(
            session=session,
            job_id=job.id,
            attempt=0,
            type="warning",
            data={
                "message": "The broker could not be reached, so no worker has this job yet; "
                "it stays queued and is sent again once the broker is back (the reaper "
                "re-sends queued jobs unclaimed for MODELPRESS_REQUEUE_AFTER_SECONDS)."
            },
        )
    return job, True


def creation_warnings(*, session: Session, job_id: str) -> list[dict[str, Any]]:
    """The warnings written when the job was created (attempt 0), oldest first, each
    ``code``, ``param`` (None where the warning has none) and ``message``."""
    rows = session.scalars(
        select(JobEvent)
        .where(JobEvent.job_id == job_id, JobEvent.attempt == 0, JobEvent.type == "warning")
        .order_by(JobEvent.id)
    )
    out = []
    for row in rows:
        data = row.data.get("data") or {}
        out.append(
            {"code": data.get("code"), "param": data.get("param"), "message": row.data["message"]}
        )
    return out


def _inputs_of(session: Session, tenant: str, body: JobCreate) -> tuple[Model, Dataset]:
    teacher = session.get(Model, body.teacher.model_id, populate_existing=True)
    if teacher is None or teacher.tenant != tenant:
        raise ProblemError(
            422,
            "model_not_found",
            f"No model with id {body.teacher.model_id!r}; upload one with POST /v1/models.",
            param="teacher.model_id",
        )
    dataset = session.get(Dataset, body.dataset.dataset_id, populate_existing=True)
    if dataset is None or dataset.tenant != tenant:
        raise ProblemError(
            422,
            "dataset_not_found",
            f"No dataset with id {body.dataset.dataset_id!r}; upload one with POST /v1/datasets.",
            param="dataset.dataset_id",
        )
    return teacher, dataset


def _by_idempotency_key(
    session: Session, settings: Settings, tenant: str, key: str, request_hash: str
) -> Job | None:
    job = session.scalar(select(Job).where(Job.tenant == tenant, Job.idempotency_key == key))
    if job is None:
        return None
    cutoff = utcnow() - timedelta(hours=settings.idempotency_key_ttl_hours)
    if job.created_at < cutoff:
        # Expired, as after the reaper's pass: the key is free for a new job, and the old
        # job stays. Cleared only if still so; two requests racing here both insert next,
        # and the unique constraint picks one (the loser returns the winner's job).
        session.execute(
            update(Job)
            .where(Job.id == job.id, Job.idempotency_key == key, Job.created_at < cutoff)
            .values(idempotency_key=None)
        )
        session.commit()
        return None
    if job.request_hash != request_hash:
        raise ProblemError(
            409,
            "idempotency_key_reused",
            f"Idempotency-Key {key!r} was used for job {job.id} with a different body; "
            "use a new key for a new job.",
            param="Idempotency-Key",
        )
    return job


def get_job(*, session: Session, tenant: str, job_id: str) -> Job:
    return get_owned(session, Job, job_id, tenant=tenant, kind="job")


def list_jobs(
    *,
    session: Session,
    tenant: str,
    status: str | None,
    limit: int,
    after: str | None,
    parent_id: str | None = None,
) -> tuple[list[Job], bool]:
    query = select(Job).where(Job.tenant == tenant)
    # A sweep's children are listed with their sweep's id, not among the tenant's jobs.
    query = query.where(Job.parent_id == parent_id if parent_id else Job.parent_id.is_(None))
    if status is not None:
        query = query.where(Job.status == status)  # in the query, so before the limit
    return keyset(session, query, Job.id, limit=limit, after=after)


def list_events(
    *,
    session: Session,
    tenant: str,
    job_id: str,
    after: int | None,
    limit: int,
    newest_first: bool = False,
) -> tuple[list[JobEvent], bool]:
    """A page of events in id order, oldest first unless ``newest_first``; ``after`` is
    the last id of the previous page, so it continues in the same order."""
    get_job(session=session, tenant=tenant, job_id=job_id)
    q = select(JobEvent).where(JobEvent.job_id == job_id)
    if after is not None:
        q = q.where(JobEvent.id < after if newest_first else JobEvent.id > after)
    order = JobEvent.id.desc() if newest_first else JobEvent.id
    rows = list(session.scalars(q.order_by(order).limit(limit + 1)))
    return rows[:limit], len(rows) > limit


def list_artifacts(*, session: Session, tenant: str, job_id: str) -> list[Artifact]:
    get_job(session=session, tenant=tenant, job_id=job_id)
    return list(
        session.scalars(select(Artifact).where(Artifact.job_id == job_id).order_by(Artifact.id))
    )


def get_artifact(*, session: Session, tenant: str, job_id: str, name: str) -> Artifact:
    job = get_job(session=session, tenant=tenant, job_id=job_id)
    art = session.scalar(select(Artifact).where(Artifact.job_id == job_id, Artifact.name == name))
    if art is None and job.artifacts_expired_at is not None:
        raise ProblemError(
            410,
            "artifacts_expired",
            f"The artifacts of job {job_id} expired and were deleted on "
            f"{job.artifacts_expired_at.isoformat(timespec='seconds')} "
            + (
                f"(MODELPRESS_SWEEP_CANDIDATE_RETENTION_HOURS; the student sweep "
                f"{job.parent_id} picked is its model artifact)"
                if job.parent_id
                else "(MODELPRESS_ARTIFACT_RETENTION_DAYS)"
            )
            + "; the job's report stays in its metrics.",
        )
    if art is None:
        raise ProblemError(404, "artifact_not_found", f"Job {job_id} has no artifact {name!r}.")
    return art


# ---------------------------------------------------------------- lifecycle


def job_prefix(job_id: str) -> str:
    """Where every object of a job lives: its attempts' artifacts and its checkpoints."""
    return f"jobs/{job_id}/"


def delete_job(*, session: Session, storage: Storage, tenant: str, job_id: str) -> None:
    """Delete a finished job: its row, events and artifact rows (and webhook deliveries,
    by cascade) in one committed transaction, then its objects.

    The row goes first: a crash before the objects are gone leaves a folder that no row
    names, which the reaper's sweep (job_folders_to_empty) deletes. The other order could
    leave a job whose artifacts answer 410."""
    job = get_job(session=session, tenant=tenant, job_id=job_id)
    if job.status not in TERMINAL:
        raise ProblemError(
            409,
            "job_active",
            f"Job {job_id} is {job.status}; only a finished job (succeeded, failed or "
            f"cancelled) can be deleted. Cancel it first with POST /v1/jobs/{job_id}/cancel, "
            "then delete it once it is cancelled.",
        )
    kids = list(session.scalars(select(Job.id).where(Job.parent_id == job_id)))
    # Conditional, as every state change: a concurrent delete finds no row. A sweep's
    # children go with it (the foreign key cascades), and so do their objects.
    gone = session.execute(
        delete(Job).where(Job.id == job_id, Job.tenant == tenant, Job.status.in_(TERMINAL))
    ).rowcount
    session.commit()
    if not gone:
        raise not_found("job", job_id)
    try:
        for kid in kids:
            storage.delete_prefix(job_prefix(kid))
        storage.delete_prefix(job_prefix(job_id))
    except Exception:  # the job is gone either way; the reaper's sweep finishes this
        log.warning("objects of deleted job %s not deleted yet", job_id, exc_info=True)


def job_folders_to_empty(*, session: Session, job_ids: list[str]) -> list[str]:
    """Of these folders found under jobs/ in the store, those whose objects must all go:
    no job row names them (deleted jobs), their artifacts expired, or the job failed or
    was cancelled (it keeps nothing: what is there landed after its end and after the
    orphan sweep's window). Objects of a job appear only after its row is committed, so
    a folder without a row is never one being written; an ended job resumes nothing, so
    nothing writes there either."""
    out: list[str] = []
    for i in range(0, len(job_ids), 500):
        chunk = job_ids[i : i + 500]
        keep = set(
            session.scalars(
                select(Job.id).where(
                    Job.id.in_(chunk),
                    Job.artifacts_expired_at.is_(None),
                    Job.status.not_in(("failed", "cancelled")),
                )
            )
        )
        out += [j for j in chunk if j not in keep]
    return out


def expire_artifacts(*, session: Session, settings: Settings, limit: int = 200) -> list[str]:
    """Jobs finished longer ago than MODELPRESS_ARTIFACT_RETENTION_DAYS, and a sweep's
    candidates finished longer ago than MODELPRESS_SWEEP_CANDIDATE_RETENTION_HOURS (the
    sweep keeps a copy of the one it picked), lose their artifacts: the rows go and the
    job says when and why (artifacts_expired_at and an event); returns those jobs, whose
    objects the caller deletes once this committed (a crash in between is finished by
    the folder sweep). The job, its request and metrics stay. Conditional on the mark,
    so many reapers at once expire each job once."""
    now = utcnow()
    days, hours = settings.artifact_retention_days, settings.sweep_candidate_retention_hours
    rules = []
    if days:
        rules.append(
            (
                Job.finished_at < now - timedelta(days=days),
                f"{days:g} days after the job finished (MODELPRESS_ARTIFACT_RETENTION_DAYS)",
            )
        )
    if hours:
        rules.append(
            (
                Job.parent_id.is_not(None) & (Job.finished_at < now - timedelta(hours=hours)),
                f"{hours:g} hours after this sweep candidate finished; the candidate the "
                "sweep picked is its own model artifact "
                "(MODELPRESS_SWEEP_CANDIDATE_RETENTION_HOURS)",
            )
        )
    has_artifacts = select(Artifact.id).where(Artifact.job_id == Job.id).exists()
    expired: list[str] = []
    for due_now, why in rules:
        due = session.execute(
            select(Job.id, Job.attempt)
            .where(
                Job.status.in_(TERMINAL),
                due_now,
                Job.artifacts_expired_at.is_(None),
                has_artifacts,
            )
            .order_by(Job.finished_at)
            .limit(limit)
        ).all()
        for job_id, attempt in due:
            marked = session.execute(
                update(Job)
                .where(Job.id == job_id, Job.artifacts_expired_at.is_(None))
                .values(artifacts_expired_at=now)
            ).rowcount
            if not marked:
                continue
            names = sorted(session.scalars(select(Artifact.name).where(Artifact.job_id == job_id)))
            session.execute(delete(Artifact).where(Artifact.job_id == job_id))
            data: dict[str, Any] = {
                "message": f"The artifacts ({', '.join(names)}) expired {why} and were "
                "deleted; the job, its request and its metrics stay.",
                "artifacts": names,
            }
            data |= {"retention_days": days} if "DAYS" in why else {"retention_hours": hours}
            _event(session, job_id, attempt, "lifecycle", data)
            expired.append(job_id)
    session.commit()
    return expired


def expire_idempotency_keys(*, session: Session, settings: Settings) -> int:
    """Free the Idempotency-Key of jobs created before the window; returns how many. The
    jobs stay; only the key stops matching (create_job also treats an old match as
    absent, so the reaper's timing changes nothing a client sees)."""
    cutoff = utcnow() - timedelta(hours=settings.idempotency_key_ttl_hours)
    n = session.execute(
        update(Job)
        .where(Job.idempotency_key.is_not(None), Job.created_at < cutoff)
        .values(idempotency_key=None)
    ).rowcount
    session.commit()
    return n


# ---------------------------------------------------------------- state changes


def cancel_job(
    *, session: Session, tenant: str, job_id: str, storage: Storage | None = None
) -> Job:
    """A queued job is cancelled at once; with ``storage``, its objects (a checkpoint a
    lost attempt left) are deleted first, so it is never seen cancelled with them, and
    again after, for what a dying attempt's upload delivered meanwhile. Deleting first
    loses nothing: the job is being cancelled whichever update matches (a worker that
    claims it meanwhile finds it cancelling)."""
    job = get_job(session=session, tenant=tenant, job_id=job_id)
    queued = job.status == "queued"
    if queued and storage is not None:
        storage.delete_prefix(job_prefix(job_id))
    now = utcnow()
    # Conditional updates: the worker may be changing the row at the same moment.
    done = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == "queued")
        .values(
            status="cancelled", finished_at=now, updated_at=now, phase=None, checkpoint_key=None
        )
    ).rowcount
    ended = bool(done)
    if done:
        _event(session, job_id, job.attempt, "status", {"status": "cancelled"})
    else:
        done = session.execute(
            update(Job)
            .where(Job.id == job_id, Job.status == "running")
            .values(status="cancelling", updated_at=now)
        ).rowcount
        if done:
            _event(session, job_id, job.attempt, "status", {"status": "cancelling"})
    if done and job.sweep is not None and job.parent_id is None:
        from app.sweeps.service import cancel_children  # the sweeps build on this module

        cancel_children(session=session, parent_id=job_id)
    session.commit()
    if ended and storage is not None:
        storage.delete_prefix(job_prefix(job_id))
    session.refresh(job)
    sweep_id = job.parent_id or (job.id if job.sweep is not None else None)
    if done and sweep_id is not None:
        # The sweep ends once its children have: tell it now, whatever ended here.
        job_queue.advance_sweep(parent_id=sweep_id, queue=job.queue)
    if job.status in ("succeeded", "failed"):
        raise ProblemError(
            409,
            "job_finished",
            f"Job {job_id} has already {job.status}; there is nothing to cancel.",
        )
    return job


def claim(*, session: Session, job_id: str, worker: str, lease_seconds: int) -> int | None:
    """Take a queued job for this worker; returns the attempt, or None if not ours.

    A duplicate delivery of a running, finished or cancelled job finds no queued row
    and does nothing. The claim holds a lease that the worker must renew.
    """
    now = utcnow()
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == "queued")
        .values(
            status="running",
            attempt=Job.attempt + 1,
            worker=worker,
            started_at=func.coalesce(Job.started_at, now),
            updated_at=now,
            lease_expires_at=now + timedelta(seconds=lease_seconds),
            phase="preparing",
        )
        .returning(Job.attempt)
    )
    attempt = result.scalar_one_or_none()
    if attempt is None:
        session.rollback()
        return None
    _event(session, job_id, attempt, "status", {"status": "running", "worker": worker})
    session.commit()
    return attempt


def renew_lease(*, session: Session, job_id: str, attempt: int, lease_seconds: int) -> bool:
    """Extend this attempt's lease; False when the job is no longer this attempt's."""
    now = utcnow()
    ok = session.execute(
        update(Job)
        .where(*_owned(job_id, attempt))
        .values(lease_expires_at=now + timedelta(seconds=lease_seconds))
    ).rowcount
    session.commit()
    return bool(ok)


def record_checkpoint(
    *, session: Session, job_id: str, attempt: int, key: str, info: dict[str, Any]
) -> str | None:
    """Point the job at this attempt's newest checkpoint. Returns the key it replaces
    (the caller deletes that object), or None; raises LookupError when the attempt no
    longer owns the job, so a stale worker cannot move a live job's checkpoint."""
    previous = session.scalar(select(Job.checkpoint_key).where(Job.id == job_id))
    ok = session.execute(
        update(Job)
        .where(*_owned(job_id, attempt))
        .values(checkpoint_key=key, checkpoint={**info, "attempt": attempt})
    ).rowcount
    if not ok:
        session.rollback()
        raise LookupError(f"job {job_id} is no longer owned by attempt {attempt}")
    _event(session, job_id, attempt, "checkpoint", {**info, "attempt": attempt})
    session.commit()
    return previous if previous != key else None


def checkpoint_of(*, session: Session, job_id: str) -> tuple[str, dict[str, Any]] | None:
    row = session.execute(
        select(Job.checkpoint_key, Job.checkpoint).where(Job.id == job_id)
    ).one_or_none()
    if row is None or row.checkpoint_key is None:
        return None
    return row.checkpoint_key, dict(row.checkpoint or {})


def recently_finished(*, session: Session, since: datetime) -> list[tuple[str, list[str]]]:
    """Jobs that ended after ``since``, each with the object keys it keeps (its
    artifacts'; none unless it succeeded)."""
    rows = session.execute(
        select(Job.id).where(Job.status.in_(TERMINAL), Job.finished_at >= since)
    ).scalars()
    out = []
    for job_id in rows:
        keys = session.scalars(select(Artifact.storage_key).where(Artifact.job_id == job_id))
        out.append((job_id, list(keys)))
    return out


def due_to_end(*, session: Session, settings: Settings) -> list[str]:
    """The jobs that reap() would end now rather than queue again: lease run out while
    cancelling, or on the last attempt allowed. The reaper deletes their objects before
    it ends them, so a job seen ended has no checkpoint left (workers/reaper.py
    reap_once). That loses nothing even if the worker renews its lease meanwhile: no
    later attempt of such a job will ever resume from its checkpoint."""
    return list(
        session.scalars(
            select(Job.id).where(
                Job.status.in_(OWNED_STATES),
                Job.lease_expires_at < utcnow(),
                (Job.status == "cancelling") | (Job.attempt >= settings.max_attempts),
            )
        )
    )


@dataclass
class Reaped:
    # (job id, queue) pairs to enqueue once committed
    to_send: list[tuple[str, str]] = field(default_factory=list)
    # jobs ended here (failed or cancelled), whose dead workers' objects must go
    ended: list[str] = field(default_factory=list)


def reap(
    *, session: Session, settings: Settings, drained: Callable[[str], bool] | None = None
) -> Reaped:
    """Jobs whose worker is gone go back to the queue (or end); queued jobs nobody
    claimed for a while are handed to the broker again, if ``drained(queue)`` says their
    queue holds no message (None: always). Safe to run in many processes at once: every
    change is a conditional UPDATE on the state it saw."""
    now = utcnow()
    result = Reaped()
    to_send = result.to_send
    expired = session.execute(
        select(Job.id, Job.status, Job.attempt, Job.queue, Job.worker).where(
            Job.status.in_(OWNED_STATES), Job.lease_expires_at < now
        )
    ).all()
    for job_id, status, attempt, queue, worker in expired:
        same = (
            Job.id == job_id,
            Job.status == status,
            Job.attempt == attempt,
            Job.lease_expires_at < now,
        )
        lost = {"reason": "worker_lost", "worker": worker}
        if status == "cancelling":
            values: dict[str, Any] = {"status": "cancelled", "finished_at": now}
        elif attempt >= settings.max_attempts:
            values = {
                "status": "failed",
                "finished_at": now,
                "error_code": "max_attempts_exceeded",
                "error_message": (
                    f"The job lost its worker {attempt} times (killed, out of memory or "
                    f"restarted; last on {worker}) and is not retried past "
                    f"{settings.max_attempts} attempts (MODELPRESS_MAX_ATTEMPTS). If it "
                    "runs out of memory, lower training.batch_size or max_seq_length."
                ),
            }
        else:
            values = {"status": "queued", "worker": None}
        if values["status"] != "queued":
            values["checkpoint_key"] = None
        # A phase is what a running attempt is doing: requeued or ended, there is none.
        values.update(updated_at=now, lease_expires_at=None, phase=None)
        if session.execute(update(Job).where(*same).values(**values)).rowcount:
            data = {"status": values["status"], **lost}
            if values["status"] == "failed":
                data["error"] = {"code": values["error_code"], "message": values["error_message"]}
            _event(session, job_id, attempt, "status", data)
            if values["status"] == "queued":
                to_send.append((job_id, queue))
            else:
                result.ended.append(job_id)
    stale = now - timedelta(seconds=settings.requeue_after_seconds)
    # A queued job's message can only have been lost if its queue is empty: while
    # messages wait there, the workers are busy, not starved, and a copy of every waiting
    # job each requeue_after would grow the queue faster than they drain it (each copy
    # costs a worker a fresh process to find the job taken).
    empty: dict[str, bool] = {}
    for job_id, queue in session.execute(
        select(Job.id, Job.queue).where(Job.status == "queued", Job.updated_at < stale)
    ).all():
        if drained is not None:
            if queue not in empty:
                empty[queue] = drained(queue)
            if not empty[queue]:
                continue
        touched = session.execute(
            update(Job)
            .where(Job.id == job_id, Job.status == "queued", Job.updated_at < stale)
            .values(updated_at=now)
        ).rowcount
        if touched:
            to_send.append((job_id, queue))
    session.commit()
    return result


def _owned(job_id: str, attempt: int):
    return (Job.id == job_id, Job.attempt == attempt, Job.status.in_(OWNED_STATES))


def set_phase(*, session: Session, job_id: str, attempt: int, phase: str) -> bool:
    ok = session.execute(
        update(Job).where(*_owned(job_id, attempt)).values(phase=phase, updated_at=utcnow())
    ).rowcount
    if ok:
        _event(session, job_id, attempt, "phase", {"phase": phase})
    session.commit()
    return bool(ok)


def set_progress(*, session: Session, job_id: str, attempt: int, progress: float) -> bool:
    # Rounded once, here, so the job and its events say 0.01, not 0.010000000000000002.
    progress = round(min(max(progress, 0.0), 1.0), 4)
    ok = session.execute(
        update(Job)
        .where(*_owned(job_id, attempt), Job.progress <= progress)
        .values(progress=progress, updated_at=utcnow())
    ).rowcount
    if ok:
        _event(session, job_id, attempt, "progress", {"progress": progress})
    session.commit()
    return bool(ok)


def add_event(
    *, session: Session, job_id: str, attempt: int, type: str, data: dict[str, Any]
) -> None:
    _event(session, job_id, attempt, type, data)
    session.commit()


def owner_state(*, session: Session, job_id: str, attempt: int) -> str | None:
    """The job's status if this attempt still owns it, else None."""
    row = session.execute(select(Job.status, Job.attempt).where(Job.id == job_id)).one_or_none()
    if row is None or row.attempt != attempt or row.status not in OWNED_STATES:
        return None
    return row.status


def finish(
    *,
    session: Session,
    job_id: str,
    attempt: int,
    status: str,
    metrics: dict[str, Any] | None = None,
    error_code: str | None = None,
    error_message: str | None = None,
    artifacts: list[dict[str, Any]] | None = None,
) -> bool:
    """End this attempt's job. A success records its artifacts in the same transaction,
    so a job is never succeeded with half its artifacts, nor has artifacts unless it
    succeeded (each dict holds Artifact's columns but job_id)."""
    assert status in TERMINAL
    now = utcnow()
    values: dict[str, Any] = {
        "status": status,
        "finished_at": now,
        "updated_at": now,
        "lease_expires_at": None,
        # An ended job resumes nothing; the worker deletes the object itself.
        "checkpoint_key": None,
        "phase": None,
    }
    if status == "succeeded":
        values.update(progress=1.0, metrics=metrics)
    if error_code is not None:
        values.update(error_code=error_code, error_message=error_message)
    owned = _owned(job_id, attempt)
    if status == "succeeded":
        # A cancel that arrived during the upload wins: the job is cancelled, not done.
        owned = (*owned, Job.status == "running")
    ok = session.execute(update(Job).where(*owned).values(**values)).rowcount
    if ok:
        for art in artifacts or ():
            session.add(Artifact(job_id=job_id, **art))
        data: dict[str, Any] = {"status": status}
        if error_code:
            data["error"] = {"code": error_code, "message": error_message}
        _event(session, job_id, attempt, "status", data)
    session.commit()
    return bool(ok)


def _event(session: Session, job_id: str, attempt: int, type: str, data: dict[str, Any]) -> None:
    row = JobEvent(job_id=job_id, type=type, attempt=attempt, data=data, created_at=utcnow())
    session.add(row)
    # Webhook deliveries commit with their event, and are sent after that commit.
    webhook_outbox.on_job_event(session, row)
