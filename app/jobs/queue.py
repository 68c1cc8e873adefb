"""Hand a job id to the workers (after the row is committed)."""

from __future__ import annotations

import logging

from app.broker import backlog, send
from app.queues import ADVANCE_SWEEP_TASK, RUN_JOB_TASK
from app.settings import Settings

log = logging.getLogger(__name__)


def choose_queue(*, accelerator: str, settings: Settings) -> str | None:
    """The queue for a job, or None when it asks for a GPU and no GPU worker exists."""
    if accelerator == "cpu":
        return "cpu"
    if settings.gpu_workers:
        return "gpu"
    return None if accelerator == "gpu" else "cpu"


def enqueue(*, job_id: str, queue: str) -> bool:
    try:
        send(RUN_JOB_TASK, job_id, queue=queue)
    except Exception:
        # The job stays queued in the database; it is re-sent when the broker is back
        # (the reaper of issue #5). The client still gets its 202.
        log.exception("could not enqueue job %s", job_id)
        return False
    return True


def advance_sweep(*, parent_id: str, queue: str) -> bool:
    """Ask a worker to move a sweep on. Best effort: a sweep whose advance is lost is
    found by the reaper (app/sweeps/service.py, stalled)."""
    try:
        send(ADVANCE_SWEEP_TASK, parent_id, queue=queue)
    except Exception:
        log.warning("could not send the advance of sweep %s", parent_id, exc_info=True)
        return False
    return True


def drained(queue: str) -> bool:
    """True when ``queue`` holds no message (a worker may hold one it took); False when
    it does, or when the broker cannot be asked (a re-send would not get through)."""
    try:
        return backlog(queue) == 0
    except Exception:
        log.warning("could not count the messages in queue %s", queue, exc_info=True)
        return False
