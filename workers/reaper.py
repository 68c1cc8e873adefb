"""The reaper: every worker runs one, in its main process, on a timer.

It gives jobs whose lease ran out (their worker was killed, ran out of memory, or lost
its host) back to the queue, or ends them, and re-sends queued jobs that no worker has
claimed for a while. Many reapers at once are safe: each change is a conditional UPDATE.
"""

from __future__ import annotations

import logging
import threading

from celery.signals import worker_process_init, worker_ready, worker_shutdown

from app.db import get_engine, session_scope
from app.jobs import queue as job_queue
from app.jobs import service as jobs
from app.settings import Settings, get_settings
from app.storage import get_storage

log = logging.getLogger(__name__)
_stop = threading.Event()


def reap_once(settings: Settings | None = None) -> jobs.Reaped:
    settings = settings or get_settings()
    with session_scope() as session:
        reaped = jobs.reap(session=session, settings=settings)
    for job_id, queue in reaped.to_send:  # after the commit, as everywhere
        job_queue.enqueue(job_id=job_id, queue=queue)
    storage = get_storage()
    for job_id in reaped.ended:
        storage.delete_prefix(f"jobs/{job_id}/")
    if reaped.to_send or reaped.ended:
        log.info("reaper: re-sent %s, ended %s", [j for j, _ in reaped.to_send], reaped.ended)
    return reaped


def _loop(interval: float) -> None:
    while not _stop.wait(interval):
        try:
            reap_once()
        except Exception:
            log.warning("reaper pass failed; retrying", exc_info=True)


@worker_ready.connect
def _start(**_kwargs: object) -> None:
    interval = get_settings().reaper_interval_seconds
    threading.Thread(target=_loop, args=(interval,), name="reaper", daemon=True).start()


@worker_shutdown.connect
def _halt(**_kwargs: object) -> None:
    _stop.set()


@worker_process_init.connect
def _fresh_connections(**_kwargs: object) -> None:
    # A forked pool process must not share the parent's database connections.
    get_engine().dispose(close=False)
