"""A sweep's work on a worker (app/sweeps/service.py holds its rows and decisions).

- ``start``: the parent's attempt fine-tunes the teacher into the tenant's cache (the
  engine's first phases alone), plans the speed-up axis and starts the first round.
- ``advance``: sent when a child ends; starts the next round or answers the sweep.
- the answer itself: workers/sweep_answer.py.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from app.db import session_scope
from app.jobs import queue as job_queue
from app.jobs import service as jobs
from app.jobs.tables import Job
from app.settings import Settings
from app.storage import Storage
from app.sweeps import policy
from app.sweeps import service as sweeps
from app.sweeps.axis import steps_of
from app.sweeps.state import SweepPlan, child_request, sweep_goal
from workers import sweep_answer, teacher_cache
from workers.callback import JobCallback
from workers.engine.spec import EngineInputError, EngineStopped
from workers.inputs import cleanup

log = logging.getLogger(__name__)


def start(*, job_id: str, attempt: int, worker: str, settings: Settings, storage: Storage) -> str:
    """The parent's attempt: teacher, plan, first round. Returns what happened."""
    with session_scope() as s:
        job = s.get(Job, job_id)
        planned = SweepPlan.of(job.sweep) is not None
        max_runtime = job.request.get("max_runtime_s")
    if planned:
        # A parent requeued after its answering worker died: answer (or wait) again.
        return advance(parent_id=job_id, worker=worker, settings=settings, storage=storage)
    from workers.runner import LeaseKeeper, _failure  # the runner imports this module

    workdir = Path(tempfile.mkdtemp(prefix=f"modelpress-{job_id}-"))
    callback = JobCallback(job_id, attempt, max_runtime_s=max_runtime, storage=storage)
    keeper = LeaseKeeper(job_id, attempt, settings.lease_seconds, on_lost=callback.lost)
    keeper.start()
    try:
        with session_scope() as s:
            job = s.get(Job, job_id)
            spec, callback.teacher_keeper = teacher_cache.job_spec(
                session=s,
                job=_probe(job),
                storage=storage,
                settings=settings,
                attempt=attempt,
                workdir=workdir,
            )
            request = dict(job.request)
        target = request["target"]
        from workers.engine.compress import prepare_teacher  # torch: workers only

        teacher_info = prepare_teacher(spec, callback)
        if callback.check_now():
            raise EngineStopped()
        lo, hi = policy.axis_for(teacher_info["fastest_speedup"])
        budget = target.get("budget") or {}
        goal = sweep_goal(request)
        plan = SweepPlan(
            kind=goal.kind,
            value=goal.value,
            runtime=target.get("runtime") or "pytorch",
            batch_size=int(target.get("batch_size") or 1),
            seq_len=target.get("seq_len"),
            lo=lo,
            hi=hi,
            steps=steps_of(teacher_info["layer_steps"]),
            parallel=settings.sweep_parallel,
            candidates=int(budget.get("candidates") or 6),
            max_seconds=budget.get("max_seconds"),
        )
        callback.on_log(
            f"sweep of {plan.candidates} candidates at most, {plan.parallel} at a time, "
            f"speed-ups {plan.lo:g}x to {plan.hi:g}x ({plan.runtime})",
            data={"stage": "sweep", "plan": plan.to_json()["plan"], **teacher_info},
        )
        outcome: tuple[str, str | None, str | None] | None = None
    except EngineStopped:
        reason = callback.stop_reason
        if reason == "lost":
            return "lost"
        outcome = (
            (
                "failed",
                "max_runtime_exceeded",
                f"The sweep ran longer than its max_runtime_s ({max_runtime} s) while "
                "preparing its teacher; raise max_runtime_s.",
            )
            if reason == "max_runtime"
            else ("cancelled", None, None)
        )
    except EngineInputError as e:
        outcome = ("failed", e.code, e.message)
    except Exception as e:
        log.exception("sweep %s attempt %s failed preparing its teacher", job_id, attempt)
        outcome = ("failed", *_failure(e))
    finally:
        keeper.stop()
        cleanup(workdir)
    if outcome is not None:
        status, code, message = outcome
        with session_scope() as s:
            jobs.finish(
                session=s,
                job_id=job_id,
                attempt=attempt,
                status=status,
                error_code=code,
                error_message=message,
            )
        return status
    with session_scope() as s:
        step = sweeps.begin(session=s, parent_id=job_id, attempt=attempt, plan=plan)
    _send(step.to_send)
    return "sweeping"


def advance(*, parent_id: str, worker: str, settings: Settings, storage: Storage) -> str:
    """Move the sweep on (app/sweeps/service.py advance); answer it where that falls to
    this worker. Returns what happened."""
    with session_scope() as s:
        step = sweeps.advance(session=s, parent_id=parent_id, worker=worker, settings=settings)
    _send(step.to_send)
    if step.ended:
        return step.ended
    if step.answer is None:
        return "started" if step.to_send else "waiting"
    assert step.plan is not None
    return sweep_answer.answer(parent_id=parent_id, step=step, settings=settings, storage=storage)


def _probe(job: Job) -> Job:
    """The parent as one of its candidates (unsaved): the engine runs the teacher phases
    of a candidate's request, under the same cache key every child looks its teacher up
    with."""
    columns = ("id", "tenant", "queue", "task", "teacher_id", "dataset_id")
    probe = Job(**{c: getattr(job, c) for c in columns})
    probe.request = child_request(job.request, policy.DEFAULT_LO)
    return probe


def _send(to_send: list[tuple[str, str]]) -> None:
    # Committed first (the callers' sessions have closed): a worker finds the row.
    for child_id, queue in to_send:
        job_queue.enqueue(job_id=child_id, queue=queue)
