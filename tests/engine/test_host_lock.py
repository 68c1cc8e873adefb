"""A host's timings and training steps kept apart across processes
(workers/engine/host_lock.py): no step runs inside a timing, a timing is not starved by
steps that overlap each other, and a timing inside a step is refused."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

import pytest

from workers.engine.host_lock import HostLock

STEP_S = 0.05


def _steps(path: str, log: str, until: float) -> None:
    lock = HostLock(Path(path))
    with open(log, "a", encoding="utf-8") as out:
        while time.time() < until:
            with lock.working():
                start = time.time()
                time.sleep(STEP_S)
                end = time.time()
            out.write(f"{start} {end}\n")
            out.flush()


def _intervals(log: Path) -> list[tuple[float, float]]:
    return [
        (float(a), float(b))
        for a, b in (line.split() for line in log.read_text(encoding="utf-8").splitlines())
    ]


def test_no_step_of_another_process_runs_inside_a_timing(tmp_path: Path) -> None:
    lock_path, until = tmp_path / "host.lock", time.time() + 3.0
    ctx = multiprocessing.get_context("fork")
    # Two trainers whose steps overlap: a shared lock is held nearly all the time.
    trainers = [
        ctx.Process(target=_steps, args=(str(lock_path), str(tmp_path / f"steps{i}"), until))
        for i in range(2)
    ]
    for p in trainers:
        p.start()
    time.sleep(0.3)
    timer, timings, waits = HostLock(lock_path), [], []
    for _ in range(4):
        asked = time.time()
        with timer.timing():
            start = time.time()
            time.sleep(0.2)
            timings.append((start, time.time()))
        waits.append(start - asked)
        time.sleep(0.1)
    for p in trainers:
        p.join(timeout=10)
        assert p.exitcode == 0
    steps = _intervals(tmp_path / "steps0") + _intervals(tmp_path / "steps1")
    assert len(steps) > 20
    overlapping = [(s, t) for s in steps for t in timings if s[0] < t[1] and t[0] < s[1]]
    assert overlapping == []
    # Each timing waited for the steps in flight, not for the trainers to stop.
    assert max(waits) < 10 * STEP_S
    # And trained between them: held back, not stopped.
    assert any(s[1] <= timings[0][0] for s in steps)
    assert any(timings[0][1] <= s[0] and s[1] <= timings[1][0] for s in steps)


def test_a_timing_inside_a_step_is_refused(tmp_path: Path) -> None:
    lock = HostLock(tmp_path / "host.lock")
    with lock.working(), pytest.raises(RuntimeError, match="wait for itself"), lock.timing():
        pass
    with lock.timing():  # and the lock is free again afterwards
        pass


def test_the_setting_defaults_to_one_file_per_host_and_empty_turns_it_off(monkeypatch):
    from app.settings import Settings

    assert Settings().host_lock is not None
    assert Settings().host_lock.name == "modelpress-host.lock"  # type: ignore[union-attr]
    monkeypatch.setenv("MODELPRESS_HOST_LOCK", "")
    assert Settings().host_lock is None
