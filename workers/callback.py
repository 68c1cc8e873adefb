"""The engine callback of a job: progress, phase and logs go to the database as events,
and "should I stop?" reads the job's status. Writes are throttled: a training loop calls
these every step."""

from __future__ import annotations

import time
from typing import Any

from app.db import session_scope
from app.jobs import service as jobs

PROGRESS_EVERY_S = 2.0
STOP_CHECK_EVERY_S = 1.0


class JobCallback:
    def __init__(self, job_id: str, attempt: int) -> None:
        self.job_id = job_id
        self.attempt = attempt
        self._last_progress_at = 0.0
        self._last_progress = 0.0
        self._last_stop_check = 0.0
        self._stop = False

    def on_phase(self, phase: str) -> None:
        with session_scope() as s:
            if not jobs.set_phase(session=s, job_id=self.job_id, attempt=self.attempt, phase=phase):
                self._stop = True

    def on_progress(self, progress: float) -> None:
        now = time.monotonic()
        if progress < 1.0 and (
            now - self._last_progress_at < PROGRESS_EVERY_S
            or progress - self._last_progress < 0.005
        ):
            return
        self._last_progress_at, self._last_progress = now, progress
        with session_scope() as s:
            jobs.set_progress(
                session=s, job_id=self.job_id, attempt=self.attempt, progress=progress
            )

    def on_log(
        self, message: str, *, level: str = "info", data: dict[str, Any] | None = None
    ) -> None:
        payload: dict[str, Any] = {"level": level, "message": message}
        if data:
            payload["data"] = data
        with session_scope() as s:
            jobs.add_event(
                session=s,
                job_id=self.job_id,
                attempt=self.attempt,
                type="warning" if level == "warning" else "log",
                data=payload,
            )

    def should_stop(self) -> bool:
        now = time.monotonic()
        if not self._stop and now - self._last_stop_check >= STOP_CHECK_EVERY_S:
            self._last_stop_check = now
            with session_scope() as s:
                self._stop = jobs.should_stop(session=s, job_id=self.job_id, attempt=self.attempt)
        return self._stop
