"""Celery tasks: thin wrappers that hand a job id to the runner."""

from __future__ import annotations

import os
import socket

# Workers load only what users uploaded: never reach for a model hub. transformers' own
# progress bars and load reports would flood the worker log; the engine checks loads
# itself (teacher.check_loading_info).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from app.queues import ADVANCE_SWEEP_TASK, RUN_JOB_TASK
from app.settings import get_settings
from app.storage import get_storage
from workers import sweep
from workers.celery_app import celery_app
from workers.runner import run_job as _run_job


@celery_app.task(name=RUN_JOB_TASK, bind=True)
def run_job(self, job_id: str) -> str:
    return _run_job(job_id=job_id, worker=self.request.hostname or socket.gethostname())


@celery_app.task(name=ADVANCE_SWEEP_TASK, bind=True)
def advance_sweep(self, parent_id: str) -> str:
    return sweep.advance(
        parent_id=parent_id,
        worker=self.request.hostname or socket.gethostname(),
        settings=get_settings(),
        storage=get_storage(),
    )
