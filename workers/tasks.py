"""Celery tasks: thin wrappers that hand a job id to the runner."""

from __future__ import annotations

import socket

from workers.celery_app import RUN_JOB_TASK, celery_app
from workers.runner import run_job as _run_job


@celery_app.task(name=RUN_JOB_TASK, bind=True)
def run_job(self, job_id: str) -> str:
    return _run_job(job_id=job_id, worker=self.request.hostname or socket.gethostname())
