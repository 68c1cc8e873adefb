"""A sweep's answer on the worker it fell to (app/sweeps/service.py ``advance`` hands it
over with a lease): the candidates timed again together (workers/sweep_retime.py), the
pick and the Pareto front, the picked student's artifacts copied as the sweep's own
with the sweep's report and plot, the other candidates' too where the request asks to
keep them (``export.keep_candidates``), and the sweep finished.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import tempfile
from pathlib import Path
from typing import Any

from sqlalchemy import select

from app.db import session_scope
from app.jobs import service as jobs
from app.jobs.tables import Artifact, Job
from app.settings import Settings
from app.storage import Storage
from app.sweeps import policy
from app.sweeps import service as sweeps
from app.sweeps.report import sweep_report
from app.sweeps.state import ChildPlace, Timing, candidate_artifact, keeps_candidates
from workers.callback import JobCallback
from workers.engine.spec import EngineStopped
from workers.inputs import cleanup
from workers.sweep_plot import SWEEP_PNG, draw_sweep
from workers.sweep_retime import retimed_results

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


def answer(*, parent_id: str, step: sweeps.Step, settings: Settings, storage: Storage) -> str:
    """Finish the sweep from its candidates' results, timed again together first, under
    the parent's lease. Returns what happened."""
    from workers.runner import LeaseKeeper  # the runner imports workers.sweep

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


@dataclasses.dataclass(frozen=True)
class _Copy:
    """One child artifact to store under the sweep's prefix, as ``name``/``filename``."""

    row: dict[str, Any]
    name: str
    filename: str


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
    from workers.runner import attempt_prefix  # the runner imports workers.sweep

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
        keep = keeps_candidates(s.get(Job, parent_id).request)
        copies: dict[int, list[_Copy]] = {}
        for r in results:
            if r.ok and (r.index == verdict.pick_index or keep):
                copies[r.index] = _copies_of(s, kids[r.index], r.index, verdict.pick_index)
        metrics = dict(s.get(Job, kids[verdict.pick_index]).metrics or {})
    report = sweep_report(
        plan=plan,
        results=results,
        answer=verdict,
        job_ids=kids,
        stopped_by=step.stopped_by,
        timing=timing,
    )
    for row in report["candidates"]:
        # Where each candidate's student is among the sweep's own artifacts, if it is.
        row["artifacts"] = [c.name for c in copies.get(row["index"], ())]
    metrics["sweep"] = report
    prefix = attempt_prefix(parent_id, attempt)
    records = []
    try:
        for copy in (c for index in sorted(copies) for c in copies[index]):
            # The picked student's report carries the sweep's beside its metrics.
            with_metrics = metrics if copy.name == "report" else None
            records.append(_store(storage, prefix, copy, workdir, with_metrics))
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


def _copies_of(session, child_id: str, index: int, pick: int | None) -> list[_Copy]:
    """The child's artifacts as the sweep stores them: the pick's under their own names,
    another candidate's as ``candidate-<index>-<name>``."""
    rows = session.scalars(
        select(Artifact).where(Artifact.job_id == child_id).order_by(Artifact.id)
    )
    out = []
    for a in rows:
        row = {c: getattr(a, c) for c in ARTIFACT_COLUMNS}
        if index == pick:
            out.append(_Copy(row, a.name, a.filename))
        else:
            name = candidate_artifact(index, a.name)
            out.append(_Copy(row, name, candidate_artifact(index, a.filename)))
    return out


def _store(
    storage: Storage,
    prefix: str,
    copy: _Copy,
    workdir: Path,
    metrics: dict[str, Any] | None,
) -> dict[str, Any]:
    """Copy one artifact under the sweep's prefix; ``metrics`` replaces a report's."""
    local = workdir / copy.filename
    storage.download_file(copy.row["storage_key"], local)
    if metrics is not None:
        content = json.loads(local.read_text(encoding="utf-8"))
        content["metrics"] = metrics
        local.write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")
    stored = storage.put_file(prefix + copy.filename, local)
    local.unlink()
    return {
        **copy.row,
        "name": copy.name,
        "filename": copy.filename,
        "storage_key": prefix + copy.filename,
        "size_bytes": stored.size_bytes,
        "sha256": stored.sha256,
    }
