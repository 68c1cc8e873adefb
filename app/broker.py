"""The broker, as the API process sees it: a Celery app that sends tasks by name and
pings the broker, and knows no task code.

The worker's Celery app (``workers/celery_app.py``) is this same configuration with its
task modules included, and registers each task under its name in ``app/queues.py``; so
the API enqueues a job without importing the worker (docs/architecture.md, rule 2).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from pathlib import Path
from urllib.parse import unquote, urlparse

from celery import Celery
from kombu import Queue

from app.jobs.schemas import MAX_RUNTIME_S
from app.queues import QUEUES
from app.settings import Settings, get_settings

# Time a job's message stays unacknowledged beyond its running time: the worker fetches
# the teacher and data before the clock starts, and uploads artifacts after it stops.
VISIBILITY_MARGIN_S = 3600


def visibility_timeout(settings: Settings) -> int:
    """Seconds before Redis delivers an unacknowledged message again: above the longest
    a job may run (the largest max_runtime_s a request may ask for, or the default if an
    operator set it higher), so a running job's message is never delivered twice."""
    return max(MAX_RUNTIME_S, settings.job_max_runtime_seconds) + VISIBILITY_MARGIN_S


def broker_options(settings: Settings) -> tuple[str, dict]:
    """The broker URL Celery gets, and its transport options.

    Embedded mode uses kombu's filesystem transport (no server): messages are files
    in HOME/broker, shared by the API and worker processes on one machine.
    """
    url = settings.broker_url
    if url.startswith("filesystem://"):
        folder = Path(unquote(urlparse(url).path) or settings.home / "broker")
        for sub in ("queue", "processed", "control"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        return "filesystem://", {
            "data_folder_in": str(folder / "queue"),
            "data_folder_out": str(folder / "queue"),
            "processed_folder": str(folder / "processed"),
            "store_processed": False,
            "control_folder": str(folder / "control"),
        }
    # Redis: a message not acked within the visibility timeout is delivered again, so it
    # is set above the longest job allowed. Were one delivered twice all the same, the
    # second would do nothing: claim() is a conditional UPDATE … WHERE status = 'queued'.
    # A job whose worker died comes back through its lease and the reaper, not the broker.
    return url, {"visibility_timeout": visibility_timeout(settings)}


def make_celery(settings: Settings | None = None, *, include: Sequence[str] = ()) -> Celery:
    """A Celery app on the configured broker; ``include`` names the task modules a
    worker imports (none for the API, which only sends)."""
    settings = settings or get_settings()
    url, options = broker_options(settings)
    app = Celery("modelpress", broker=url, include=list(include))
    app.conf.update(
        broker_transport_options=options,
        broker_connection_retry_on_startup=True,
        task_default_queue="cpu",
        task_queues=[Queue(q, routing_key=q) for q in QUEUES],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        # PostgreSQL is the truth about a job; Celery results would be a second copy.
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        worker_hijack_root_logger=False,
        # A fresh process per job returns all the memory a model run took.
        worker_max_tasks_per_child=1,
        # How long a new pool process may take to say it is up before Celery kills it
        # (default 4 s). Each job forks a fresh one; on a loaded machine a fork that
        # has torch to page in misses 4 s, is killed and forked again, and the worker
        # takes nothing while it retries (seen at load 9 on 2 cores).
        worker_proc_alive_timeout=60,
        worker_send_task_events=True,
        task_send_sent_event=True,
    )
    return app


@cache
def broker() -> Celery:
    """The API process's broker-only app, made on first use (a process that never
    sends, such as a migration, never connects)."""
    return make_celery()


def warm_up() -> None:
    """The broker's app made and the modules it sends with loaded, without connecting:
    at start-up, not in the first request that creates a job (app.main)."""
    app = broker()
    app.finalize(auto=True)
    with app.connection_for_write() as conn:
        conn.transport  # noqa: B018 (resolving it imports the transport and its client)
    # What send_task imports on its first use.
    import celery.canvas
    import celery.result  # noqa: F401


def send(task: str, arg: str, *, queue: str) -> None:
    """Send ``task`` by name with one id argument (tasks receive an id, never a payload:
    docs/architecture.md, rule 6) to ``queue``."""
    broker().send_task(task, args=[arg], queue=queue, routing_key=queue)


def backlog(queue: str) -> int:
    """Messages waiting in ``queue``: not those a worker has taken and not yet acked."""
    with broker().connection_for_write() as conn:
        # One try: a broker that is away is the caller's answer, not a wait.
        conn.ensure_connection(max_retries=1, timeout=3)
        return conn.default_channel.queue_declare(queue=queue).message_count
