"""Phase and progress reporting, and the cooperative stop check.

Phases own fixed slices of the 0..1 range so that overall progress never goes back,
whichever phases a run skips (a skipped phase's slice is simply jumped over).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from workers.engine.host_lock import HostLock
from workers.engine.spec import PHASES, EngineCallback, EngineStopped

PHASE_SPANS: dict[str, tuple[float, float]] = {
    "preparing": (0.0, 0.05),
    "teacher_finetune": (0.05, 0.35),
    "pruning": (0.35, 0.40),
    "distilling": (0.40, 0.85),
    "evaluating": (0.85, 0.95),
    "exporting": (0.95, 1.0),
}
assert tuple(PHASE_SPANS) == PHASES

# The callback may write to a database; a report per 0.1% is plenty for any UI and
# keeps a run of a million steps from flooding it.
_MIN_REPORTED_STEP = 0.001


class Progress:
    def __init__(self, callback: EngineCallback, *, host_lock: Path | None = None) -> None:
        self._callback = callback
        # Timings and training steps of this host's jobs kept apart (host_lock.py).
        self._host = HostLock(host_lock) if host_lock is not None else None
        self._phase: str | None = None
        self._value = 0.0
        self._reported = -1.0
        # The part of each phase the current round owns (rounds of a strategy share the
        # pruning and distilling phases).
        self._share = (0.0, 1.0)

    @property
    def phase(self) -> str | None:
        return self._phase

    @property
    def value(self) -> float:
        return self._value

    def resume_at(self, value: float) -> None:
        """A resumed run continues from where the checkpoint was made, not from 0."""
        self._set(value, force=True)

    def checkpoint(self, path: Path, info: dict[str, Any]) -> None:
        # Optional: a callback that cannot keep checkpoints simply does not define it.
        hook = getattr(self._callback, "on_checkpoint", None)
        if hook is not None:
            hook(path, info)

    @property
    def keeps_teachers(self) -> bool:
        """Whether the callback keeps fine-tuned teachers (on_teacher_finetuned)."""
        return getattr(self._callback, "on_teacher_finetuned", None) is not None

    def teacher_finetuned(self, path: Path, info: dict[str, Any]) -> None:
        hook = getattr(self._callback, "on_teacher_finetuned", None)
        if hook is not None:
            hook(path, info)

    def start_phase(self, phase: str) -> None:
        self.check_stop()
        self._phase = phase
        self._callback.on_phase(phase)
        start, end = PHASE_SPANS[phase]
        self._set(start + (end - start) * self._share[0], force=True)

    def share(self, index: int, count: int) -> None:
        """The phases that follow are round ``index`` of ``count``: their progress fills
        that part of each phase's span."""
        self._share = (index / count, (index + 1) / count)

    def within(self, fraction: float) -> None:
        """Progress inside the current phase (the current round's part of it), 0..1."""
        assert self._phase is not None
        start, end = PHASE_SPANS[self._phase]
        lo, hi = self._share
        fraction = lo + (hi - lo) * min(max(fraction, 0.0), 1.0)
        self._set(start + (end - start) * fraction)

    def finish(self) -> None:
        self._set(1.0, force=True)

    def log(self, message: str, *, level: str = "info", data: dict | None = None) -> None:
        self._callback.on_log(message, level=level, data=data)

    def timing(self) -> contextlib.AbstractContextManager[None]:
        """Around a latency measurement: no training step of this host runs inside."""
        return self._host.timing() if self._host is not None else contextlib.nullcontext()

    def working(self) -> contextlib.AbstractContextManager[None]:
        """Around a training step: waits while a timing of this host runs."""
        return self._host.working() if self._host is not None else contextlib.nullcontext()

    def check_stop(self) -> None:
        if self._callback.should_stop():
            raise EngineStopped(f"stopped on request during {self._phase or 'start-up'}")

    def _set(self, value: float, *, force: bool = False) -> None:
        value = max(value, self._value)
        self._value = value
        if value <= self._reported:
            return
        if force or value >= 1.0 or value - self._reported >= _MIN_REPORTED_STEP:
            self._reported = value
            self._callback.on_progress(value)
