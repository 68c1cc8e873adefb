"""A sweep's answer step times its candidates again, all together, on the answering
worker (workers/engine/retime.py says why): the front and the pick rest on one pass.

Each candidate's own reading stays in the report beside the one taken here. Where the
pass cannot be made (the runtime's artifact was not exported, an input is gone, the
pass fails), the answer goes on with the candidates' own readings and says why.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

from sqlalchemy import select

from app.db import session_scope
from app.jobs.tables import Artifact, Job
from app.jobspec import vocabulary
from app.models.service import archive_limits
from app.settings import Settings
from app.storage import Storage
from app.sweeps.policy import CandidateResult
from app.sweeps.state import SweepPlan, Timing
from workers import teacher_cache
from workers.callback import JobCallback
from workers.engine.spec import EngineStopped
from workers.inputs import extract_archive

log = logging.getLogger(__name__)


def artifact_name(runtime: str) -> str:
    """The artifact holding a candidate as ``runtime`` runs it."""
    fmt = vocabulary.SPEEDUP_RUNTIMES[runtime]
    return vocabulary.FORMAT_ARTIFACTS[fmt or vocabulary.PYTORCH_FORMAT]


def retimed_results(
    *,
    parent_id: str,
    attempt: int,
    plan: SweepPlan,
    results: Sequence[CandidateResult],
    kids: Mapping[int, str],
    storage: Storage,
    settings: Settings,
    workdir: Path,
    callback: JobCallback,
) -> tuple[list[CandidateResult], Timing]:
    """``results`` with each succeeded candidate's latency and speed-up from one pass.
    ``kids``: each candidate's job id by its index.

    Raises EngineStopped when the sweep is cancelled (or its lease lost) meanwhile."""
    ok = [r for r in results if r.ok and r.index in kids]
    if not ok:
        return list(results), Timing(False, "no candidate succeeded")
    try:
        return _retime(
            parent_id=parent_id,
            attempt=attempt,
            plan=plan,
            results=results,
            ok=ok,
            kids=kids,
            storage=storage,
            settings=settings,
            workdir=workdir,
            callback=callback,
        )
    except EngineStopped:
        raise
    except _NotRetimed as e:
        reason = str(e)
    except Exception as e:
        log.exception("sweep %s: its candidates could not be timed again", parent_id)
        reason = f"the pass failed ({type(e).__name__}: {str(e)[:200]})"
    callback.on_log(
        f"candidates not timed again together: {reason}; the report gives each "
        "candidate's own timing",
        level="warning",
        data={"stage": "sweep", "retimed": False},
    )
    return list(results), Timing(False, reason)


class _NotRetimed(Exception):
    """Why the pass cannot be made, in words for the report."""


def _retime(
    *,
    parent_id: str,
    attempt: int,
    plan: SweepPlan,
    results: Sequence[CandidateResult],
    ok: Sequence[CandidateResult],
    kids: Mapping[int, str],
    storage: Storage,
    settings: Settings,
    workdir: Path,
    callback: JobCallback,
) -> tuple[list[CandidateResult], Timing]:
    name = artifact_name(plan.runtime)
    workdir.mkdir(parents=True, exist_ok=True)
    with session_scope() as s:
        rows = {
            a.job_id: (a.storage_key, a.filename)  # one artifact of a name per job
            for a in s.scalars(
                select(Artifact).where(
                    Artifact.job_id.in_([kids[r.index] for r in ok]), Artifact.name == name
                )
            )
        }
        missing = [r.index for r in ok if kids[r.index] not in rows]
        if missing:
            raise _NotRetimed(
                f"candidates {missing} have no {name!r} artifact to time in {plan.runtime} "
                "(export.formats left it out)"
            )
        spec, _ = teacher_cache.job_spec(
            session=s,
            job=s.get(Job, kids[ok[0].index]),
            storage=storage,
            settings=settings,
            attempt=attempt,
            workdir=workdir,
        )
    students: dict[str, Path] = {}
    for r in ok:
        key, filename = rows[kids[r.index]]
        archive = workdir / "candidates" / f"{r.index}-{filename}"
        archive.parent.mkdir(parents=True, exist_ok=True)
        storage.download_file(key, archive)
        students[str(r.index)] = extract_archive(
            archive, workdir / "candidates" / str(r.index), archive_limits(settings)
        )
        archive.unlink()
    from workers.engine.progress import Progress  # torch: workers only
    from workers.engine.retime import retime

    callback.on_log(
        f"timing {len(students)} candidates again with the teacher, in one pass",
        data={"stage": "sweep", "candidates": sorted(int(i) for i in students)},
    )
    progress = Progress(callback, host_lock=spec.host_lock)
    found = retime(
        spec,
        students,
        runtime=plan.runtime,
        batch_size=plan.batch_size,
        seq_len=plan.seq_len,
        progress=progress,
    )
    speedups = found.speedup
    out = []
    for r in results:
        if str(r.index) in found.latency_ms:
            r = dataclasses.replace(
                r, latency_ms=found.latency_ms[str(r.index)], speedup=speedups[str(r.index)]
            )
        out.append(r)
    timing = Timing(
        True,
        detail={
            "runtime": found.runtime,
            "batch_size": found.batch_size,
            "seq_len": found.seq_len,
            "threads": found.threads,
            "teacher": found.teacher,
            "teacher_latency_ms": found.teacher_ms,
        },
        own={r.index: {"speedup": r.speedup, "latency_ms": r.latency_ms} for r in ok},
    )
    return out, timing
