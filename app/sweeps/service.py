"""A sweep's rows: its children, the rounds it plans and the moment it answers.

The parent is a job whose target is a sweep kind. Its first attempt, on a worker,
fine-tunes the teacher into the tenant's cache and calls ``begin`` with the plan; from
then on the parent holds no worker and no lease: it waits in ``running`` (phase
``sweeping``) while its children, ordinary jobs with ``parent_id`` set, run on any
worker. Each child's end sends ``ADVANCE_SWEEP_TASK``, whose ``advance`` reads the
children under a lock on the parent's row and either waits (a child still runs), starts
the next round (policy.next_round), or hands the answer to the worker that called it
(phase ``answering``, with a lease: a worker that dies there is reaped like any job, and
the parent's next attempt answers again).

Invariants: a round's children are inserted in the transaction that decides the round,
so two advances never both start one (the second finds them active); a parent is
answered by the one worker that set ``answering``; every decision is a function of the
children's rows, so an advance may be sent any number of times.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.db import utcnow
from app.ids import new_id
from app.jobs.schemas import TERMINAL
from app.jobs.service import OWNED_STATES, _event, _request_hash, finish
from app.jobs.tables import Job, JobEvent
from app.settings import Settings
from app.sweeps import policy
from app.sweeps.policy import Candidate, CandidateResult
from app.sweeps.state import ChildPlace, SweepPlan, child_request, result_of, speed_plan_of

log = logging.getLogger(__name__)
SWEEPING, ANSWERING = "sweeping", "answering"


@dataclass
class Step:
    """What ``begin`` or ``advance`` decided, for its caller to act on once committed."""

    # (child id, queue) to enqueue
    to_send: list[tuple[str, str]] = field(default_factory=list)
    # The caller answers the sweep (report, artifacts, finish) with these results.
    answer: list[CandidateResult] | None = None
    plan: SweepPlan | None = None
    # Why no new round started although the policy had one (the time budget).
    stopped_by: str | None = None
    # The parent ended here (cancelled once its children had ended).
    ended: str | None = None


def children(session: Session, parent_id: str) -> list[Job]:
    return list(
        session.scalars(select(Job).where(Job.parent_id == parent_id).order_by(Job.created_at))
    )


def begin(*, session: Session, parent_id: str, attempt: int, plan: SweepPlan) -> Step:
    """Record the plan and start the first round; the attempt that owns the parent (its
    teacher ready) gives it up here: the parent then waits on its children, with no
    worker and no lease. Nothing happens when the attempt no longer owns the parent."""
    parent = _locked(session, parent_id)
    if parent is None or parent.attempt != attempt or parent.status != "running":
        session.rollback()
        return Step()
    if SweepPlan.of(parent.sweep) is not None:
        # A plan from an earlier attempt: its rounds stand; carry on from them.
        session.rollback()
        return Step()
    batch = policy.first_round(
        lo=plan.lo, hi=plan.hi, budget=plan.candidates, parallel=plan.parallel, steps=plan.steps
    )
    _wait(parent, plan)
    _event(session, parent_id, attempt, "phase", {"phase": SWEEPING})
    step = Step(to_send=_start(session, parent, batch), plan=plan)
    session.commit()
    return step


def advance(*, session: Session, parent_id: str, worker: str, settings: Settings) -> Step:
    """Move the sweep on from its children's rows (see the module's docstring)."""
    parent = _locked(session, parent_id)
    plan = SweepPlan.of(parent.sweep) if parent is not None else None
    if parent is None or plan is None or parent.status not in OWNED_STATES:
        # Gone, ended, or still fine-tuning its teacher (that attempt goes on).
        session.rollback()
        return Step()
    now = utcnow()
    if parent.phase == ANSWERING and parent.lease_expires_at and parent.lease_expires_at > now:
        session.rollback()
        return Step()  # another worker answers it
    kids = children(session, parent_id)
    plan = _report_ended(session, parent, plan, kids)
    if any(k.status not in TERMINAL for k in kids):
        _wait(parent, plan)
        session.commit()
        return Step()
    if parent.status == "cancelling":
        session.commit()
        finish(session=session, job_id=parent_id, attempt=parent.attempt, status="cancelled")
        return Step(ended="cancelled")
    results = sorted(
        (
            result_of(
                ChildPlace.of(k.sweep),
                status=k.status,
                metrics=k.metrics,
                plan=plan,
                error_code=k.error_code,
            )
            for k in kids
            if ChildPlace.of(k.sweep) is not None
        ),
        key=lambda r: r.index,
    )
    batch = policy.next_round(
        goal=plan.goal,
        results=results,
        budget=plan.candidates,
        parallel=plan.parallel,
        lo=plan.lo,
        hi=plan.hi,
        steps=plan.steps,
    )
    stopped_by = None
    spent = _worker_seconds(kids)
    if batch and plan.max_seconds is not None and spent >= plan.max_seconds:
        stopped_by = (
            f"budget.max_seconds: the candidates used {spent:.0f} s of worker time, the "
            f"budget is {plan.max_seconds} s, so the {len(batch)} planned next were not started"
        )
        batch = []
    if batch:
        _wait(parent, plan)
        step = Step(to_send=_start(session, parent, batch), plan=plan)
        session.commit()
        return step
    parent.phase = ANSWERING
    parent.worker = worker
    parent.lease_expires_at = now + timedelta(seconds=settings.lease_seconds)
    parent.updated_at = now
    _event(session, parent_id, parent.attempt, "phase", {"phase": ANSWERING})
    session.commit()
    return Step(answer=results, plan=plan, stopped_by=stopped_by)


def stalled(*, session: Session, settings: Settings) -> list[tuple[str, str]]:
    """Sweeps waiting on children that have all ended for a while (their advance was
    lost with a broker or a worker): (parent id, queue) to send an advance for."""
    stale = utcnow() - timedelta(seconds=settings.requeue_after_seconds)
    out = []
    waiting = session.execute(
        select(Job.id, Job.queue).where(
            Job.status.in_(OWNED_STATES),
            Job.sweep.is_not(None),
            Job.parent_id.is_(None),
            Job.lease_expires_at.is_(None),
            Job.updated_at < stale,
        )
    ).all()
    for parent_id, queue in waiting:
        active = session.scalar(
            select(Job.id).where(Job.parent_id == parent_id, Job.status.not_in(TERMINAL)).limit(1)
        )
        if active is None:
            out.append((parent_id, queue))
    return out


def parents_of(*, session: Session, job_ids: list[str]) -> list[tuple[str, str]]:
    """The sweeps (id, queue) some of these jobs are children of."""
    if not job_ids:
        return []
    parent = Job.__table__.alias("parent")
    rows = session.execute(
        select(parent.c.id, parent.c.queue)
        .join(Job, Job.parent_id == parent.c.id)
        .where(Job.id.in_(job_ids))
        .distinct()
    ).all()
    return [(r[0], r[1]) for r in rows]


def cancel_children(*, session: Session, parent_id: str) -> int:
    """Cancel a sweep's children with it: queued ones at once, running ones through
    their workers (cancelling). Not committed: the caller's cancel commits both."""
    now = utcnow()
    changed = 0
    for kid in children(session, parent_id):
        if kid.status == "queued":
            values: dict[str, Any] = {"status": "cancelled", "finished_at": now, "phase": None}
        elif kid.status == "running":
            values = {"status": "cancelling"}
        else:
            continue
        done = session.execute(
            update(Job)
            .where(Job.id == kid.id, Job.status == kid.status)
            .values(updated_at=now, **values)
        ).rowcount
        if done:
            changed += 1
            _event(session, kid.id, kid.attempt, "status", {"status": values["status"]})
    return changed


# ---------------------------------------------------------------- inside a transaction


def _locked(session: Session, parent_id: str) -> Job | None:
    # SQLite (embedded mode) ignores FOR UPDATE; its writers are serialized anyway.
    return session.scalar(
        select(Job)
        .where(Job.id == parent_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )


def _wait(parent: Job, plan: SweepPlan) -> None:
    """The parent waits on its children: no worker, no lease (the reaper leaves it)."""
    parent.sweep = plan.to_json()
    parent.phase = SWEEPING
    parent.worker = None
    parent.lease_expires_at = None
    parent.updated_at = utcnow()


def _start(session: Session, parent: Job, batch: list[Candidate]) -> list[tuple[str, str]]:
    """Insert one queued child per candidate, each told on the parent."""
    out = []
    kids = children(session, parent.id) if any(c.repeat for c in batch) else []
    for cand in batch:
        request = child_request(parent.request, cand.speedup, cand.repeat)
        plan = _first_plan(kids, cand.speedup) if cand.repeat else None
        child = Job(
            id=new_id("job"),
            tenant=parent.tenant,
            name=f"{parent.name or parent.id} candidate {cand.index}"[:200],
            task=parent.task,
            status="queued",
            phase=None,
            progress=0.0,
            attempt=0,
            queue=parent.queue,
            teacher_id=parent.teacher_id,
            dataset_id=parent.dataset_id,
            request=request,
            request_hash=_request_hash(request),
            parent_id=parent.id,
            sweep=ChildPlace(cand.index, cand.speedup, cand.repeat, plan).to_json(),
        )
        session.add(child)
        session.add(JobEvent(job_id=child.id, type="status", attempt=0, data={"status": "queued"}))
        _event(
            session,
            parent.id,
            parent.attempt,
            "log",
            {
                "level": "info",
                "message": f"candidate {cand.index}: speedup {cand.speedup:g}x"
                + (f", trained again (student seed +{cand.repeat})" if cand.repeat else "")
                + f", job {child.id}",
                "data": {
                    "candidate": cand.index,
                    "speedup": cand.speedup,
                    "repeat": cand.repeat,
                    "job_id": child.id,
                },
            },
        )
        out.append((child.id, child.queue))
    session.flush()
    return out


def _first_plan(kids: list[Job], speedup: float) -> dict[str, Any] | None:
    """The speed plan of the first training of ``speedup`` that succeeded: the shape a
    repeat trains again."""
    for kid in kids:
        place = ChildPlace.of(kid.sweep)
        if place and place.speedup == speedup and place.repeat == 0 and kid.status == "succeeded":
            return speed_plan_of(kid.metrics)
    return None


def _report_ended(session: Session, parent: Job, plan: SweepPlan, kids: list[Job]) -> SweepPlan:
    """One event on the parent per candidate that ended, once."""
    reported = list(plan.reported)
    for kid in kids:
        place = ChildPlace.of(kid.sweep)
        if kid.status not in TERMINAL or place is None or place.index in reported:
            continue
        r = result_of(
            place, status=kid.status, metrics=kid.metrics, plan=plan, error_code=kid.error_code
        )
        data: dict[str, Any] = {
            "candidate": place.index,
            "job_id": kid.id,
            "status": kid.status,
            **dataclasses.asdict(r),
            "met": plan.goal.met_by(r),
        }
        if kid.status == "succeeded":
            message = f"{policy.describe(r)}: {'meets' if data['met'] else 'misses'} the goal"
        else:
            message = f"candidate {place.index} ({place.speedup:g}x asked) {kid.status}"
            if kid.error_code:
                data["error"] = {"code": kid.error_code, "message": kid.error_message}
                message += f": {kid.error_code}"
        _event(
            session,
            parent.id,
            parent.attempt,
            "log",
            {
                "level": "info" if kid.status == "succeeded" else "warning",
                "message": message,
                "data": data,
            },
        )
        reported.append(place.index)
    # Candidates ended out of the most the budget allows: a sweep that stops early
    # jumps to 1 when it answers.
    progress = round(0.99 * len(reported) / plan.candidates, 4)
    if progress > parent.progress:
        parent.progress = progress
        _event(session, parent.id, parent.attempt, "progress", {"progress": progress})
    return dataclasses.replace(plan, reported=sorted(reported))


def _worker_seconds(kids: list[Job]) -> float:
    """Worker time the children used: start to end (or to now, for one still running)."""
    now = utcnow()
    return sum(
        ((k.finished_at or now) - k.started_at).total_seconds() for k in kids if k.started_at
    )
