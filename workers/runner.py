"""Run one job: claim, fetch inputs, run the engine, upload, finish.

Kept apart from the Celery task so it can be called (and tested) without a broker.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from app.db import session_scope
from app.jobs import queue as job_queue
from app.jobs import service as jobs
from app.jobs.tables import Job
from app.settings import Settings, get_settings
from app.storage import Storage, get_storage
from app.sweeps.state import is_sweep
from workers import sweep, teacher_cache
from workers.callback import DB_AWAY, JobCallback, checkpoint_prefix
from workers.engine.spec import ArtifactFile, EngineInputError, EngineStopped
from workers.inputs import cleanup, pack_folder

log = logging.getLogger(__name__)

CONTENT_TYPES = {
    ".tar.gz": "application/gzip",
    ".json": "application/json",
    ".md": "text/markdown; charset=utf-8",
    ".png": "image/png",
}
MAX_ERROR_CHARS = 1000
# How long a finished run waits for an unreachable database to record its end.
FINISH_PATIENCE_S = 120.0


class LeaseKeeper:
    """Renews the job's lease from a thread while the engine works; when a renewal finds
    the job is no longer this attempt's, it tells the callback, which stops the engine."""

    def __init__(self, job_id: str, attempt: int, lease_seconds: int, *, on_lost) -> None:
        self.job_id, self.attempt, self.lease_seconds = job_id, attempt, lease_seconds
        self.on_lost = on_lost
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{job_id}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self.lease_seconds / 3):
            try:
                with session_scope() as s:
                    ok = jobs.renew_lease(
                        session=s,
                        job_id=self.job_id,
                        attempt=self.attempt,
                        lease_seconds=self.lease_seconds,
                    )
            except Exception:
                # The database may be briefly away; the lease has slack for two misses.
                log.warning("could not renew the lease of job %s", self.job_id, exc_info=True)
                continue
            if not ok:
                self.on_lost()
                return


def _content_type(filename: str) -> str:
    for suffix, ctype in CONTENT_TYPES.items():
        if filename.endswith(suffix):
            return ctype
    return "application/octet-stream"


# What goes into the student's folder beside its weights: the model card (README.md, as
# on the Hugging Face Hub) and the plots it links to, so the unpacked archive is whole.
CARD_KINDS = ("model_card", "plot")


def _with_card(folder: Path, artifacts: Sequence[ArtifactFile]) -> None:
    for art in artifacts:
        if art.kind in CARD_KINDS and art.path.is_file():
            shutil.copyfile(art.path, folder / art.path.name)


def _upload(
    *,
    storage: Storage,
    job_id: str,
    attempt: int,
    art: ArtifactFile,
    workdir: Path,
    companions: Sequence[ArtifactFile] = (),
) -> dict[str, Any]:
    """Upload one artifact under this attempt's prefix and check it arrived whole. The
    student's folder (artifact ``model``) takes its card and plots along."""
    path = art.path
    if path.is_dir():
        if art.name == "model":
            _with_card(path, companions)
        path = pack_folder(path, workdir / f"{art.name}.tar.gz")
    filename = path.name
    key = f"{attempt_prefix(job_id, attempt)}{filename}"
    stored = storage.put_file(key, path)
    if storage.size(key) != stored.size_bytes:
        raise RuntimeError(f"artifact {art.name} did not arrive whole in the object store")
    return {
        "name": art.name,
        "kind": art.kind,
        "filename": filename,
        "content_type": _content_type(filename),
        "storage_key": key,
        "size_bytes": stored.size_bytes,
        "sha256": stored.sha256,
    }


def attempt_prefix(job_id: str, attempt: int) -> str:
    return f"jobs/{job_id}/{attempt}/"


def remove_other_attempts(storage: Storage, job_id: str, attempt: int) -> int:
    """Objects that earlier attempts of this job left (their workers died mid-upload).
    Checkpoints stay: this attempt resumes from them and replaces them as it goes."""
    keep = (attempt_prefix(job_id, attempt), checkpoint_prefix(job_id))
    stale = [k for k in storage.list(f"jobs/{job_id}/") if not k.startswith(keep)]
    for key in stale:
        storage.delete(key)
    return len(stale)


def _failure(exc: BaseException) -> tuple[str, str]:
    """A code and a message a person can act on."""
    text = f"{type(exc).__name__}: {exc}"
    if "out of memory" in str(exc).lower():
        return "out_of_memory", (
            "The run ran out of memory; lower training.batch_size or training.max_seq_length. "
            f"({text[:300]})"
        )
    return "engine_error", (
        f"The compression engine failed: {text[:MAX_ERROR_CHARS]}. "
        "If this persists with valid inputs, report it with the job id."
    )


def _fetch_checkpoint(
    session: Session, storage: Storage, job_id: str, attempt: int, workdir: Path
) -> Path | None:
    """The checkpoint an earlier attempt left, downloaded, or None."""
    found = jobs.checkpoint_of(session=session, job_id=job_id)
    if found is None or attempt == 1:
        return None
    key, info = found
    path = workdir / "resume" / "checkpoint.pt"
    path.parent.mkdir(parents=True)
    try:
        storage.download_file(key, path)
    except Exception:
        log.warning("job %s: checkpoint %s could not be fetched; starting afresh", job_id, key)
        return None
    jobs.add_event(
        session=session,
        job_id=job_id,
        attempt=attempt,
        type="log",
        data={
            "level": "info",
            "message": f"attempt {attempt} resumes from the checkpoint attempt "
            f"{info.get('attempt')} made in {info.get('stage')}"
            + (f" at step {info['step']}" if info.get("step") is not None else ""),
            "data": {"checkpoint": info},
        },
    )
    return path


@contextmanager
def _database_back(job_id: str, patience_s: float = FINISH_PATIENCE_S) -> Iterator[Session]:
    """A session once the database answers: a job's end is worth waiting for, since
    otherwise its lease runs out and the work is done again."""
    deadline = time.monotonic() + patience_s
    while True:
        try:
            with session_scope() as s:
                s.execute(text("SELECT 1"))
                yield s
                return
        except DB_AWAY:
            if time.monotonic() > deadline:
                raise
            log.warning("job %s: database unreachable; retrying to record the end", job_id)
            time.sleep(2)


def run_job(
    *, job_id: str, worker: str, settings: Settings | None = None, storage: Storage | None = None
) -> str:
    """Returns what happened: skipped, succeeded, failed, cancelled or lost."""
    settings = settings or get_settings()
    storage = storage or get_storage()
    with session_scope() as s:
        attempt = jobs.claim(
            session=s, job_id=job_id, worker=worker, lease_seconds=settings.lease_seconds
        )
        row = (
            s.execute(
                select(
                    Job.request["max_runtime_s"].as_integer(),
                    Job.request,
                    Job.parent_id,
                    Job.queue,
                ).where(Job.id == job_id)
            ).one()
            if attempt
            else None
        )
    if attempt is None or row is None:
        log.info("job %s is not queued (duplicate delivery or cancelled): nothing to do", job_id)
        return "skipped"
    max_runtime, request, parent_id, queue = row
    if is_sweep(request):
        return sweep.start(
            job_id=job_id, attempt=attempt, worker=worker, settings=settings, storage=storage
        )
    status = _run_claimed(
        job_id=job_id,
        attempt=attempt,
        max_runtime=max_runtime,
        settings=settings,
        storage=storage,
    )
    if parent_id is not None and status != "lost":
        # The sweep reads its children's rows: this one has ended.
        job_queue.advance_sweep(parent_id=parent_id, queue=queue)
    return status


def _run_claimed(
    *, job_id: str, attempt: int, max_runtime: int | None, settings: Settings, storage: Storage
) -> str:
    """The claimed job's run, from its inputs to its end."""

    workdir = Path(tempfile.mkdtemp(prefix=f"modelpress-{job_id}-"))
    records: list[dict[str, Any]] = []
    if attempt > 1:
        remove_other_attempts(storage, job_id, attempt)
    callback = JobCallback(job_id, attempt, max_runtime_s=max_runtime, storage=storage)
    keeper = LeaseKeeper(job_id, attempt, settings.lease_seconds, on_lost=callback.lost)
    keeper.start()
    outcome: tuple[str, dict | None, str | None, str | None]
    try:
        with session_scope() as s:
            spec, callback.teacher_keeper = teacher_cache.job_spec(
                session=s,
                job=s.get(Job, job_id),
                storage=storage,
                settings=settings,
                attempt=attempt,
                workdir=workdir,
            )
            resume_from = _fetch_checkpoint(s, storage, job_id, attempt, workdir)
        if resume_from is not None:
            spec = dataclasses.replace(spec, resume_from=resume_from)
        # Imported here: the engine pulls in torch, which only workers need.
        from workers.engine.compress import compress

        result = compress(spec, callback)
        callback.on_log(
            f"uploading {len(result.artifacts)} artifacts",
            data={"stage": "uploading", "artifacts": [a.name for a in result.artifacts]},
        )
        for art in result.artifacts:
            if callback.check_now():
                raise EngineStopped()
            records.append(
                _upload(
                    storage=storage,
                    job_id=job_id,
                    attempt=attempt,
                    art=art,
                    workdir=workdir,
                    companions=result.artifacts,
                )
            )
        if callback.check_now():
            raise EngineStopped()
        outcome = ("succeeded", result.metrics, None, None)
    except EngineStopped:
        if callback.stop_reason == "max_runtime":
            outcome = (
                "failed",
                None,
                "max_runtime_exceeded",
                f"The job ran longer than its max_runtime_s ({max_runtime} s) and was "
                "stopped; raise max_runtime_s or lower training.epochs.",
            )
        elif callback.stop_reason == "lost":
            outcome = ("lost", None, None, None)
        else:
            outcome = ("cancelled", None, None, None)
    except EngineInputError as e:
        outcome = ("failed", None, e.code, e.message)
    except Exception as e:
        log.exception("job %s attempt %s failed", job_id, attempt)
        code, message = _failure(e)
        outcome = ("failed", None, code, message)
    finally:
        keeper.stop()
        cleanup(workdir)

    status, metrics, code, message = outcome
    if status != "lost":
        # Whatever the end, nothing will resume from these any more.
        storage.delete_prefix(checkpoint_prefix(job_id))
    if message:
        # Messages go to clients: no server paths in them.
        message = message.replace(str(workdir) + "/", "").replace(str(workdir), "")
    finished = False
    if status != "lost":
        with _database_back(job_id) as s:
            finished = jobs.finish(
                session=s,
                job_id=job_id,
                attempt=attempt,
                status=status,
                metrics=metrics,
                error_code=code,
                error_message=message,
                artifacts=records if status == "succeeded" else None,
            )
    if status == "succeeded" and finished:
        # What a dead attempt's in-flight upload delivered since this attempt started.
        remove_other_attempts(storage, job_id, attempt)
    if status == "succeeded" and not finished:
        # Cancelled between the last check and the commit: end it as cancelled.
        with session_scope() as s:
            if jobs.owner_state(session=s, job_id=job_id, attempt=attempt) == "cancelling":
                status = "cancelled"
                jobs.finish(session=s, job_id=job_id, attempt=attempt, status=status)
    if status != "succeeded" or not finished:
        # A cancelled, failed or superseded attempt leaves no objects behind, not even
        # half of an upload that failed.
        storage.delete_prefix(attempt_prefix(job_id, attempt))
        if status == "succeeded":  # another attempt owns the job
            status = "lost"
    log.info("job %s attempt %s: %s", job_id, attempt, status)
    return status
