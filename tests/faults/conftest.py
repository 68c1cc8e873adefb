"""Workers as real processes that a test can kill -9 and start again, with short leases."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import Proc, retire_leftover_jobs, wait_for

# Short enough for tests, long enough for a renewal every lease/3 on a busy machine.
# A job's training, long enough on a tiny model to kill its worker in the middle of
# distillation, after a checkpoint (one each 20 steps).
KILLABLE_TRAINING = {
    "epochs": 20,
    "teacher_epochs": 2,
    "batch_size": 16,
    "max_seq_length": 32,
    "checkpoint_every_steps": 20,
}

FAULT_ENV = {
    "MODELPRESS_LEASE_SECONDS": "4",
    "MODELPRESS_REAPER_INTERVAL_SECONDS": "1",
    "MODELPRESS_REQUEUE_AFTER_SECONDS": "3",
    "MODELPRESS_MAX_ATTEMPTS": "3",
}


class Workers:
    def __init__(self, logdir: Path, env: dict[str, str]) -> None:
        self.logdir = logdir
        self.env = env
        self.procs: dict[str, Proc] = {}
        self.kills = 0
        self.kill_times: list[float] = []  # wall-clock, to compare with event times

    def launch(self, name: str) -> Proc:
        """Starts a worker without waiting for it (as a supervisor restarts one)."""
        log = self.logdir / f"{name}-{len(list(self.logdir.iterdir()))}.log"
        proc = Proc(
            [sys.executable, "-m", "app.cli", "worker", "--queues", "cpu", "--name", name],
            self.env,
            log,
        )
        self.procs[name] = proc
        return proc

    def ready(self, name: str) -> Proc:
        """Waits until the worker consumes (it imports the engine first: 5-15 s)."""
        proc = self.procs[name]
        wait_for(lambda: "ready." in proc.text() or proc.p.poll() is not None, 90, f"worker {name}")
        assert proc.p.poll() is None, proc.text()
        return proc

    def start(self, *names: str) -> Proc:
        """Starts these workers at once, so that their imports overlap, and returns once
        each consumes (the last one's process)."""
        for name in names:
            self.launch(name)
        return [self.ready(name) for name in names][-1]

    def kill(self, name: str) -> None:
        """kill -9 of the worker and its pool processes, as when a machine dies."""
        proc = self.procs.pop(name)
        os.killpg(proc.p.pid, signal.SIGKILL)
        self.kill_times.append(time.time())
        proc.p.wait()
        self.kills += 1

    def stop_all(self) -> None:
        for proc in self.procs.values():
            proc.stop()
        self.procs.clear()


@pytest.fixture
def workers(stack, tmp_path, monkeypatch) -> Iterator[Workers]:
    retire_leftover_jobs()
    from app.settings import get_settings

    settings = get_settings()  # the API in this process shares the short timings
    for key, value in FAULT_ENV.items():
        monkeypatch.setattr(settings, key.removeprefix("MODELPRESS_").lower(), int(value))
    logdir = tmp_path / "workers"
    logdir.mkdir()
    pool = Workers(logdir, {**os.environ, **FAULT_ENV})
    try:
        yield pool
    finally:
        pool.stop_all()


def job_worker(client, job_id: str) -> str | None:
    """The node name (before @) of the worker that holds the job now."""
    events = client.get(f"/v1/jobs/{job_id}/events", params={"limit": 1000}).json()["data"]
    running = [e for e in events if e["type"] == "status" and e["data"]["status"] == "running"]
    return running[-1]["data"]["worker"].split("@")[0] if running else None
