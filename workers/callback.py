"""The engine callback of a job: progress, phase and logs go to the database as events,
checkpoints to object storage, and "should I stop?" reads the job's status. Writes are
throttled: a training loop calls these every step.

A database that is briefly away (a restart, a fail-over) must not fail a run that has
hours of GPU work in it: reports made meanwhile are dropped with a warning in the
worker's log, the stop check keeps going, and the lease keeper decides whether the
job is still ours once the database answers again.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session

from app.db import session_scope
from app.jobs import service as jobs
from app.storage import Storage
from workers.teacher_cache import TeacherKeeper

log = logging.getLogger(__name__)

PROGRESS_EVERY_S = 2.0
STOP_CHECK_EVERY_S = 1.0
# Errors that mean "the database is not reachable right now", not "a bug".
DB_AWAY = (OperationalError, InterfaceError)


def checkpoint_prefix(job_id: str) -> str:
    return f"jobs/{job_id}/checkpoints/"


class JobCallback:
    """``stop_reason`` says why should_stop() turned True: "cancelled" (the job is being
    cancelled), "lost" (another attempt owns the job) or "max_runtime"."""

    def __init__(
        self,
        job_id: str,
        attempt: int,
        *,
        max_runtime_s: float | None = None,
        storage: Storage | None = None,
    ) -> None:
        self.job_id = job_id
        self.attempt = attempt
        self.storage = storage
        self._deadline = time.monotonic() + max_runtime_s if max_runtime_s else None
        self._last_progress_at = 0.0
        self._last_progress = 0.0
        self._last_stop_check = 0.0
        self._stop = False
        self._checkpoints = itertools.count(1)
        self.stop_reason: str | None = None
        # Set once the job's teacher key is known (workers/teacher_cache.attach).
        self.teacher_keeper: TeacherKeeper | None = None

    def lost(self) -> None:
        """Called by the lease keeper when a renewal finds the job is no longer ours."""
        self.stop_reason = "lost"
        self._stop = True

    @contextmanager
    def _db(self, what: str) -> Iterator[Session | None]:
        """A session, or None (and a warning) while the database is away."""
        try:
            with session_scope() as s:
                yield s
        except DB_AWAY:
            log.warning("job %s: database unreachable, %s skipped", self.job_id, what)

    def _write(self, what: str, fn: Callable[[Session], object]) -> None:
        with self._db(what) as s:
            if s is not None:
                fn(s)

    def on_phase(self, phase: str) -> None:
        self._write(
            f"phase {phase}",
            lambda s: jobs.set_phase(
                session=s, job_id=self.job_id, attempt=self.attempt, phase=phase
            ),
        )

    def on_progress(self, progress: float) -> None:
        now = time.monotonic()
        if progress < 1.0 and (
            now - self._last_progress_at < PROGRESS_EVERY_S
            or progress - self._last_progress < 0.005
        ):
            return
        self._last_progress_at, self._last_progress = now, progress
        self._write(
            "progress report",
            lambda s: jobs.set_progress(
                session=s, job_id=self.job_id, attempt=self.attempt, progress=progress
            ),
        )

    def on_log(
        self, message: str, *, level: str = "info", data: dict[str, Any] | None = None
    ) -> None:
        payload: dict[str, Any] = {"level": level, "message": message}
        if data:
            payload["data"] = data
        self._write(
            "event",
            lambda s: jobs.add_event(
                session=s,
                job_id=self.job_id,
                attempt=self.attempt,
                type="warning" if level == "warning" else "log",
                data=payload,
            ),
        )

    def on_checkpoint(self, path: Path, info: dict[str, Any]) -> None:
        """Copy the checkpoint to object storage under a new key, then point the job at
        it (fenced by attempt), then drop the one it replaces. A kill at any moment
        leaves the job pointing at a complete checkpoint; the worst left behind is an
        unreferenced object under the job's prefix, which the job's end deletes."""
        if self.storage is None:
            return
        key = f"{checkpoint_prefix(self.job_id)}a{self.attempt}-{next(self._checkpoints):05d}.pt"
        try:
            stored = self.storage.put_file(key, path)
        except Exception:
            log.warning("job %s: checkpoint upload failed; training goes on", self.job_id)
            self.storage.delete(key)
            return
        record = {**info, "size_bytes": stored.size_bytes, "sha256": stored.sha256}
        replaced: str | None = None
        try:
            with session_scope() as s:
                replaced = jobs.record_checkpoint(
                    session=s, job_id=self.job_id, attempt=self.attempt, key=key, info=record
                )
        except LookupError:
            self.storage.delete(key)
            self.lost()
            return
        except DB_AWAY:
            log.warning("job %s: database unreachable, checkpoint not recorded", self.job_id)
            self.storage.delete(key)
            return
        if replaced:
            self.storage.delete(replaced)

    def on_teacher_finetuned(self, path: Path, info: dict[str, Any]) -> None:
        """Keep the teacher the engine fine-tuned for later jobs, right away: a failure
        in the student's phases afterwards leaves it kept."""
        if self.teacher_keeper is None:
            return
        level, message, data = self.teacher_keeper.keep(path, info)
        self.on_log(message, level=level, data=data)

    def check_now(self) -> bool:
        """should_stop() without the throttle, for the last check before finishing."""
        self._last_stop_check = 0.0
        return self.should_stop()

    def should_stop(self) -> bool:
        now = time.monotonic()
        if self._stop:
            return True
        if self._deadline is not None and now > self._deadline:
            self.stop_reason, self._stop = "max_runtime", True
        elif now - self._last_stop_check >= STOP_CHECK_EVERY_S:
            self._last_stop_check = now
            with self._db("stop check") as s:
                if s is None:
                    return False
                state = jobs.owner_state(session=s, job_id=self.job_id, attempt=self.attempt)
                if state != "running":
                    self.stop_reason = "cancelled" if state == "cancelling" else "lost"
                    self._stop = True
        return self._stop
