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
    """``stop_reason`` says why should_stop() turned True: "cancelled" (the job is being
    cancelled), "lost" (another attempt owns the job) or "max_runtime"."""

    def __init__(self, job_id: str, attempt: int, *, max_runtime_s: float | None = None) -> None:
        self.job_id = job_id
        self.attempt = attempt
        self._deadline = time.monotonic() + max_runtime_s if max_runtime_s else None
        self._last_progress_at = 0.0
        self._last_progress = 0.0
        self._last_stop_check = 0.0
        self._stop = False
        self.stop_reason: str | None = None

    def lost(self) -> None:
        """Called by the lease keeper when a renewal finds the job is no longer ours."""
        self.stop_reason = "lost"
        self._stop = True

    def on_phase(self, phase: str) -> None:
        with session_scope() as s:
            jobs.set_phase(session=s, job_id=self.job_id, attempt=self.attempt, phase=phase)

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
            with session_scope() as s:
                state = jobs.owner_state(session=s, job_id=self.job_id, attempt=self.attempt)
            if state != "running":
                self.stop_reason = "cancelled" if state == "cancelling" else "lost"
                self._stop = True
        return self._stop
