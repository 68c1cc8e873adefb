from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests import services

ROOT = Path(__file__).resolve().parents[2]


def wait_for(predicate, timeout: float, what: str, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Proc:
    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self._f = open(log, "wb")  # noqa: SIM115
        self.p = subprocess.Popen(
            args,
            env=env,
            stdout=self._f,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            start_new_session=True,
        )

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.p.poll() is None:
            os.killpg(self.p.pid, 15)
            try:
                self.p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.p.pid, 9)
                self.p.wait()
        self._f.close()


def retire_leftover_jobs() -> None:
    """Jobs that earlier tests queued but never meant to run must not reach a worker:
    not their messages, and not the reaper's re-sending of unclaimed queued jobs."""
    from sqlalchemy import update

    from app.db import session_scope, utcnow
    from app.jobs.tables import Job

    redis.Redis.from_url(services.REDIS_URL).delete("cpu", "gpu", "webhooks")
    with session_scope() as s:
        s.execute(
            update(Job)
            .where(Job.status.in_(("queued", "running", "cancelling")))
            .values(status="cancelled", finished_at=utcnow(), lease_expires_at=None)
        )
        s.commit()


@pytest.fixture(scope="package")
def celery_worker(stack, tmp_path_factory) -> Iterator[Proc]:
    """A real Celery worker process on the test Redis, database and S3 bucket.

    One per test package (a conftest that imports it makes its own): starting one
    imports torch, seconds that each module would pay again. It is stopped at the end
    of its package, so that it never takes the jobs of the fault tests' own workers."""
    retire_leftover_jobs()
    log = tmp_path_factory.mktemp("worker") / "worker.log"
    proc = Proc(
        [sys.executable, "-m", "app.cli", "worker", "--queues", "cpu"], dict(os.environ), log
    )
    try:
        wait_for(lambda: "ready." in proc.text() or proc.p.poll() is not None, 60, "worker start")
        assert proc.p.poll() is None, proc.text()
        yield proc
    finally:
        proc.stop()


# What a webhooks worker needs to deliver to a receiver on loopback over plain http, and
# retries fast enough for a test.
WEBHOOK_TEST_ENV = {
    "MODELPRESS_URL_ALLOWED_SCHEMES": '["http", "https"]',
    "MODELPRESS_URL_ALLOW_PRIVATE": "true",
    "MODELPRESS_WEBHOOK_BACKOFF_SECONDS": "1",
    "MODELPRESS_WEBHOOK_BACKOFF_MAX_SECONDS": "2",
    "MODELPRESS_WEBHOOK_DISABLE_AFTER_FAILURES": "3",
    "MODELPRESS_WEBHOOK_TIMEOUT_SECONDS": "5",
}


@pytest.fixture
def loopback_webhooks(monkeypatch) -> None:
    """The in-process API accepts the receiver's URL as the worker does."""
    from app.settings import get_settings

    settings = get_settings()
    monkeypatch.setattr(settings, "url_allowed_schemes", ["http", "https"])
    monkeypatch.setattr(settings, "url_allow_private", True)


@pytest.fixture(scope="module")
def webhook_worker(stack, tmp_path_factory) -> Iterator[Proc]:
    """A real webhooks worker (its own queue, a thread pool), as `serve` starts one."""
    redis.Redis.from_url(services.REDIS_URL).delete("webhooks")
    log = tmp_path_factory.mktemp("webhook-worker") / "worker.log"
    proc = Proc(
        [sys.executable, "-m", "app.cli", "worker", "--queues", "webhooks"],
        {**os.environ, **WEBHOOK_TEST_ENV},
        log,
    )
    try:
        wait_for(lambda: "ready." in proc.text() or proc.p.poll() is not None, 60, "worker start")
        assert proc.p.poll() is None, proc.text()
        yield proc
    finally:
        proc.stop()
