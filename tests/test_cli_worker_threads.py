"""A compression worker shares the host's cores among its job processes
(app/cli.py torch_threads), unless the operator set OMP_NUM_THREADS."""

from __future__ import annotations

import os
import subprocess
import sys

from app.cli import torch_threads


def test_the_cores_are_shared_among_the_job_processes():
    assert torch_threads(1, cpus=16) == 16
    assert torch_threads(4, cpus=16) == 4
    assert torch_threads(3, cpus=2) == 1  # never none
    assert torch_threads(2, cpus=2) == 1


def test_the_worker_sets_it_before_torch_loads_and_keeps_the_operators(monkeypatch):
    # run_worker up to the point where Celery would start: torch's pool size in that
    # process, with and without the operator's own setting.
    code = (
        "import os, sys, app.cli as c\n"
        "c.celery_app = None\n"
        "import workers.celery_app as w\n"
        "w.celery_app.worker_main = lambda argv: print(__import__('torch').get_num_threads())\n"
        "from app.settings import get_settings\n"
        "c.run_worker(get_settings(), 'cpu', int(sys.argv[1]), quiet=True)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    cpus = os.cpu_count() or 1

    def threads(concurrency: int, **extra: str) -> int:
        out = subprocess.run(
            [sys.executable, "-c", code, str(concurrency)],
            env={**env, **extra},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 0, out.stderr[-2000:]
        return int(out.stdout.split()[-1])

    assert threads(cpus * 2) == 1
    if cpus > 1:  # torch caps the pool at the cores: the operator's smaller value wins
        assert threads(1, OMP_NUM_THREADS="1") == 1
