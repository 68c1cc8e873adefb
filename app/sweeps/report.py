"""A sweep's report: every candidate with its numbers, the Pareto front and the pick
(the ``sweep`` key of the parent's metrics and report.json)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from app.sweeps.policy import Answer, CandidateResult
from app.sweeps.state import SweepPlan


def sweep_report(
    *,
    plan: SweepPlan,
    results: Sequence[CandidateResult],
    answer: Answer,
    job_ids: Mapping[int, str],
    stopped_by: str | None = None,
) -> dict[str, Any]:
    front = set(answer.front)
    candidates = []
    for r in sorted(results, key=lambda r: r.index):
        candidates.append(
            {
                **dataclasses.asdict(r),
                "job_id": job_ids.get(r.index),
                "met": plan.goal.met_by(r),
                "pareto": r.index in front,
                "picked": r.index == answer.pick_index,
            }
        )
    return {
        "goal": {"kind": plan.kind, "value": plan.value},
        "runtime": plan.runtime,
        "batch_size": plan.batch_size,
        "axis": {"lo": plan.lo, "hi": plan.hi},
        "parallel": plan.parallel,
        "budget": {"candidates": plan.candidates, "max_seconds": plan.max_seconds},
        "candidates": candidates,
        "front": list(answer.front),
        "pick": answer.pick_index,
        "met": answer.met,
        "message": answer.message,
        "stopped_by": stopped_by,
    }
