"""One host's latency timings kept apart from its training steps.

Two jobs on one host (a worker with two processes, a sweep's two candidates) share its
cores: a job that times its shapes or its student while the other trains reads the
other's load, and not evenly. The SST-2 sweep run read its teacher at 22-48 ms in one
candidate and 862-870 ms in the other, and a candidate asked for 3.68x got a shape that
reads 2.30x on a quiet host (bench/README.md, "Sweeps").

A timing takes the host exclusively; a training step takes it shared. Steps in flight
end, steps not begun wait, and the timing runs on cores no step of this host's jobs
uses; two timings run one after the other. Timings last seconds, so the wait costs
training little.

Two ``flock`` files, because a waiting exclusive lock does not hold back new shared
ones: a timer takes ``<path>.gate`` first, which steps pass through on their way in,
then ``<path>`` once the steps in flight let go. The kernel drops a dead process's
locks, so a worker killed mid-step blocks nobody.

Not covered: a job's other work (scoring, export, quantization) and other programs.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path


class HostLock:
    """The lock files at ``path`` (and ``path.gate``), opened once per process."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fds: tuple[int, int] | None = None
        self._pid = -1
        self._working = False

    def _open(self) -> tuple[int, int]:
        # A forked child (Celery's prefork pool) must not share its parent's open file
        # descriptions: flock locks belong to them.
        if self._fds is None or self._pid != os.getpid():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            flags = os.O_RDWR | os.O_CREAT
            gate = os.open(f"{self.path}.gate", flags, 0o666)
            work = os.open(self.path, flags, 0o666)
            self._fds, self._pid = (gate, work), os.getpid()
        return self._fds

    @contextlib.contextmanager
    def timing(self) -> Iterator[None]:
        """Exclusive: no training step of this host runs inside."""
        if self._working:
            raise RuntimeError("a timing inside a training step would wait for itself")
        gate, work = self._open()
        fcntl.flock(gate, fcntl.LOCK_EX)
        try:
            fcntl.flock(work, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(work, fcntl.LOCK_UN)
        finally:
            fcntl.flock(gate, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def working(self) -> Iterator[None]:
        """Shared: waits while a timing runs or waits to run."""
        gate, work = self._open()
        fcntl.flock(gate, fcntl.LOCK_SH)
        fcntl.flock(gate, fcntl.LOCK_UN)
        fcntl.flock(work, fcntl.LOCK_SH)
        self._working = True
        try:
            yield
        finally:
            self._working = False
            fcntl.flock(work, fcntl.LOCK_UN)
