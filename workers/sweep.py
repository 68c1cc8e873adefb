"""A sweep's work on a worker (app/sweeps/service.py holds its rows and decisions).

- ``start``: the parent's attempt fine-tunes the teacher into the tenant's cache (the
  engine's first phases alone), plans the speed-up axis and starts the first round.
- ``advance``: sent when a child ends; starts the next round or answers the sweep.
- ``answer``: the report (every candidate, the Pareto front, the pick, a plot of
  retention against latency), the picked child's artifacts copied as the parent's, and
  the parent finished.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import tempfile
from pathlib import Path

from sqlalchemy import select

from app.db import session_scope
from app.jobs import queue as job_queue
from app.jobs import service as jobs
from app.jobs.tables import Artifact, Job
from app.settings import Settings
from app.storage import Storage
from app.sweeps import policy
from app.sweeps import service as sweeps
from app.sweeps.report import sweep_report
from app.sweeps.state import ChildPlace, SweepPlan, child_request, sweep_goal
from workers import teacher_cache
from workers.callback import JobCallback
from workers.engine.spec import EngineInputError, EngineStopped
from workers.inputs import cleanup
from workers.sweep_plot import SWEEP_PNG, draw_sweep
from workers.sweep_retime import Timing, retimed_results

log = logging.getLogger(__name__)
ARTIFACT_COLUMNS = (
    "name",
    "kind",
    "filename",
    "content_type",
    "storage_key",
    "size_bytes",
    "sha256",
)


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
            lo=lo,
            hi=hi,
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
    return answer(parent_id=parent_id, step=step, settings=settings, storage=storage)


def answer(*, parent_id: str, step: sweeps.Step, settings: Settings, storage: Storage) -> str:
    """Finish the sweep from its candidates' results, timed again together first
    (workers/sweep_retime.py), under the parent's lease."""
    from workers.runner import LeaseKeeper  # the runner imports this module

    assert step.answer is not None and step.plan is not None
    with session_scope() as s:
        attempt = s.get(Job, parent_id).attempt
        kids = {}
        for kid in sweeps.children(s, parent_id):
            place = ChildPlace.of(kid.sweep)
            if place is not None:
                kids[place.index] = kid.id
    callback = JobCallback(parent_id, attempt, storage=storage)
    keeper = LeaseKeeper(parent_id, attempt, settings.lease_seconds, on_lost=callback.lost)
    keeper.start()
    workdir = Path(tempfile.mkdtemp(prefix=f"modelpress-{parent_id}-"))
    try:
        results, timing = retimed_results(
            parent_id=parent_id,
            attempt=attempt,
            plan=step.plan,
            results=step.answer,
            kids=kids,
            storage=storage,
            settings=settings,
            workdir=workdir / "retime",
            callback=callback,
        )
        return _finish(
            parent_id=parent_id,
            attempt=attempt,
            step=dataclasses.replace(step, answer=results),
            timing=timing,
            kids=kids,
            storage=storage,
            workdir=workdir,
        )
    except EngineStopped:
        if callback.stop_reason == "lost":
            return "lost"
    finally:
        keeper.stop()
        cleanup(workdir)
    with session_scope() as s:  # cancelled while the candidates were timed
        jobs.finish(session=s, job_id=parent_id, attempt=attempt, status="cancelled")
    return "cancelled"


def _finish(
    *,
    parent_id: str,
    attempt: int,
    step: sweeps.Step,
    timing: Timing,
    kids: dict[int, str],
    storage: Storage,
    workdir: Path,
) -> str:
    """The pick's artifacts copied as the parent's, with the sweep's report and plot."""
    from workers.runner import attempt_prefix  # the runner imports this module

    assert step.answer is not None and step.plan is not None
    results, plan = step.answer, step.plan
    verdict = policy.pick(plan.goal, results)
    with session_scope() as s:
        if verdict.pick_index is None:
            errors = sorted(
                {f"{k.error_code}" for k in sweeps.children(s, parent_id) if k.error_code}
            )
            jobs.finish(
                session=s,
                job_id=parent_id,
                attempt=attempt,
                status="failed",
                error_code="sweep_no_candidate",
                error_message=f"No candidate of the sweep succeeded (errors: "
                f"{', '.join(errors) or 'none'}); read each candidate's error with "
                f"GET /v1/jobs?parent_id={parent_id}",
            )
            return "failed"
        picked = s.get(Job, kids[verdict.pick_index])
        metrics = dict(picked.metrics or {})
        report = sweep_report(
            plan=plan,
            results=results,
            answer=verdict,
            job_ids=kids,
            stopped_by=step.stopped_by,
            timing=timing,
        )
        metrics["sweep"] = report
        picked_artifacts = list(
            s.scalars(select(Artifact).where(Artifact.job_id == picked.id).order_by(Artifact.id))
        )
        picked_rows = [{c: getattr(a, c) for c in ARTIFACT_COLUMNS} for a in picked_artifacts]
    prefix = attempt_prefix(parent_id, attempt)
    records = []
    try:
        for row in picked_rows:
            local = workdir / row["filename"]
            storage.download_file(row["storage_key"], local)
            if row["name"] == "report":
                # The picked student's report, with the sweep's beside its metrics.
                content = json.loads(local.read_text(encoding="utf-8"))
                content["metrics"] = metrics
                local.write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")
            stored = storage.put_file(prefix + row["filename"], local)
            records.append(
                {
                    **row,
                    "storage_key": prefix + row["filename"],
                    "size_bytes": stored.size_bytes,
                    "sha256": stored.sha256,
                }
            )
            local.unlink()
        png = draw_sweep(report, workdir / SWEEP_PNG)
        stored = storage.put_file(prefix + png.name, png)
        records.append(
            {
                "name": "sweep-plot",
                "kind": "plot",
                "filename": png.name,
                "content_type": "image/png",
                "storage_key": prefix + png.name,
                "size_bytes": stored.size_bytes,
                "sha256": stored.sha256,
            }
        )
    except Exception:
        log.exception("sweep %s: its answer could not be stored", parent_id)
        storage.delete_prefix(prefix)
        raise
    with session_scope() as s:
        jobs.add_event(
            session=s,
            job_id=parent_id,
            attempt=attempt,
            type="log",
            data={
                "level": "info" if verdict.met else "warning",
                "message": verdict.message,
                "data": {
                    "stage": "sweep",
                    "pick": verdict.pick_index,
                    "met": verdict.met,
                    "front": verdict.front,
                },
            },
        )
        done = jobs.finish(
            session=s,
            job_id=parent_id,
            attempt=attempt,
            status="succeeded",
            metrics=metrics,
            artifacts=records,
        )
    if not done:
        storage.delete_prefix(prefix)
        return "lost"
    return "succeeded"


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
