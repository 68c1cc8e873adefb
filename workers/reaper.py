"""The reaper: every worker starts one beside it, running on a timer.

It gives jobs whose lease ran out (their worker was killed, ran out of memory, or lost
its host) back to the queue, or ends them, and re-sends queued jobs that no worker has
claimed for a while. Less often it applies the lifecycle rules (artifacts past
MODELPRESS_ARTIFACT_RETENTION_DAYS, Idempotency-Key values past their window) and
empties job folders in the store that no job row names (a deletion cut short). Many
reapers at once are safe: each change is a conditional UPDATE, and deleting an object
twice is no error.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta

from celery.signals import worker_process_init, worker_ready, worker_shutdown

from app.db import get_engine, session_scope, utcnow
from app.jobs import queue as job_queue
from app.jobs import service as jobs
from app.settings import Settings, get_settings
from app.storage import get_storage
from app.sweeps import service as sweeps
from app.webhooks import service as webhooks

log = logging.getLogger(__name__)
_stop = threading.Event()
# Jobs that ended this recently are checked for objects that arrived after their end.
ORPHAN_WINDOW_S = 600.0
SWEEP_EVERY_S = 10.0
LIFECYCLE_EVERY_S = 60.0
# Lists every job folder in the store: rare, since it only finishes deletions cut short.
FOLDER_SWEEP_EVERY_S = 3600.0


def reap_once(settings: Settings | None = None) -> jobs.Reaped:
    """One pass. A job it ends (failed past its attempts, or cancelled) has its objects
    deleted before the end commits, so no client sees it ended with a checkpoint left
    (a failed pass leaves the job unended, to be tried again), and once more after, for
    what a late worker wrote in between; an upload that lands later still is the orphan
    sweep's, and past its window the folder sweep's."""
    settings = settings or get_settings()
    storage = get_storage()
    with session_scope() as session:
        ending = jobs.due_to_end(session=session, settings=settings)
    for job_id in ending:
        storage.delete_prefix(jobs.job_prefix(job_id))
    with session_scope() as session:
        reaped = jobs.reap(session=session, settings=settings, drained=job_queue.drained)
    for job_id, queue in reaped.to_send:  # after the commit, as everywhere
        job_queue.enqueue(job_id=job_id, queue=queue)
    for job_id in reaped.ended:
        storage.delete_prefix(jobs.job_prefix(job_id))
    if reaped.to_send or reaped.ended:
        log.info("reaper: re-sent %s, ended %s", [j for j, _ in reaped.to_send], reaped.ended)
    with session_scope() as session:
        # Sweeps whose children ended here, or whose advance was lost a while ago.
        advances = sweeps.parents_of(session=session, job_ids=reaped.ended)
        advances += sweeps.stalled(session=session, settings=settings)
    for parent_id, queue in dict(advances).items():
        job_queue.advance_sweep(parent_id=parent_id, queue=queue)
    with session_scope() as session:
        # Sent once committed, by the outbox.
        resent = webhooks.resend_overdue(session=session, settings=settings)
    if resent:
        log.info("reaper: re-sent webhook deliveries %s", resent)
    return reaped


def sweep_orphans(window_s: float = ORPHAN_WINDOW_S) -> int:
    """Delete objects under recently ended jobs that no artifact row names: checkpoints
    and partial uploads alike.

    A worker killed while its upload request was in flight does not stop that request:
    a proxy or a kernel buffer may still deliver it, after the next attempt cleaned up,
    or after the job's end deleted its objects. The attempts clean up what they see;
    this catches what lands afterwards."""
    since = utcnow() - timedelta(seconds=window_s)
    with session_scope() as session:
        ended = jobs.recently_finished(session=session, since=since)
    storage = get_storage()
    removed = 0
    for job_id, keep in ended:
        for key in storage.list(f"jobs/{job_id}/"):
            if key not in keep:
                storage.delete(key)
                removed += 1
    if removed:
        log.info("reaper: removed %s orphaned objects", removed)
    return removed


def lifecycle_once(settings: Settings | None = None) -> dict[str, int]:
    """Expire what the operator's retention settings say; returns what it did."""
    settings = settings or get_settings()
    with session_scope() as session:
        keys = jobs.expire_idempotency_keys(session=session, settings=settings)
    with session_scope() as session:
        expired = jobs.expire_artifacts(session=session, settings=settings)
    storage = get_storage()
    # After the commit, as for a deleted job: a crash here is finished by the folder sweep.
    removed = sum(storage.delete_prefix(jobs.job_prefix(job_id)) for job_id in expired)
    if keys or expired:
        log.info(
            "reaper: freed %s expired idempotency keys; artifacts of %s expired (%s objects)",
            keys,
            expired,
            removed,
        )
    return {"idempotency_keys": keys, "artifacts_expired": len(expired), "objects": removed}


def sweep_job_folders() -> int:
    """Empty the job folders that no job row names, or whose job's artifacts expired: a
    process died between committing the change and deleting the objects. Returns the
    objects removed."""
    storage = get_storage()
    folders = storage.list_folders("jobs/")
    with session_scope() as session:
        empty = jobs.job_folders_to_empty(session=session, job_ids=folders)
    removed = sum(storage.delete_prefix(jobs.job_prefix(job_id)) for job_id in empty)
    if removed:
        log.info("reaper: removed %s objects of deleted jobs %s", removed, empty)
    return removed


def _loop(interval: float, parent: int) -> None:
    last: dict[str, float] = {}

    def due(name: str, every: float) -> bool:
        now = time.monotonic()
        if name in last and now - last[name] < every:
            return False
        last[name] = now
        return True

    while not _stop.wait(interval):
        if os.getppid() != parent:
            return  # the worker that started us is gone: so are we
        try:
            reap_once()
            if due("sweep", SWEEP_EVERY_S):
                sweep_orphans()
            if due("lifecycle", LIFECYCLE_EVERY_S):
                lifecycle_once()
            if due("folders", FOLDER_SWEEP_EVERY_S):
                sweep_job_folders()
        except Exception:
            log.warning("reaper pass failed; retrying", exc_info=True)


# The reaper runs as its own process beside the worker, not as a thread in it: the
# prefork pool forks a fresh child for every job, and a fork while a thread holds a
# lock (an import, the connection pool) can leave the child deadlocked.
_process: subprocess.Popen | None = None


@worker_ready.connect
def _start(**_kwargs: object) -> None:
    global _process
    _process = subprocess.Popen(
        [sys.executable, "-m", "workers.reaper", str(os.getpid())],
        env=os.environ.copy(),
    )


@worker_shutdown.connect
def _halt(**_kwargs: object) -> None:
    if _process is not None and _process.poll() is None:
        _process.terminate()


@worker_process_init.connect
def _fresh_connections(**_kwargs: object) -> None:
    # A forked pool process must not share the parent's database connections.
    get_engine().dispose(close=False)


if __name__ == "__main__":
    logging.basicConfig(
        level=get_settings().log_level, format="%(asctime)s %(levelname)s reaper: %(message)s"
    )
    signal.signal(signal.SIGTERM, lambda *_: _stop.set())
    _loop(get_settings().reaper_interval_seconds, int(sys.argv[1]))
