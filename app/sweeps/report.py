"""A sweep's report: every candidate with its numbers, the Pareto front and the pick
(the ``sweep`` key of the parent's metrics and report.json)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from app.sweeps import repeats
from app.sweeps.policy import Answer, CandidateResult
from app.sweeps.state import SweepPlan, Timing


def sweep_report(
    *,
    plan: SweepPlan,
    results: Sequence[CandidateResult],
    answer: Answer,
    job_ids: Mapping[int, str],
    stopped_by: str | None = None,
    timing: Timing | None = None,
) -> dict[str, Any]:
    """``timing``: how the latencies were read (retimed together in the answer step, or
    each candidate's own); a candidate's own reading stays beside a retimed one."""
    front = set(answer.front)
    own = timing.own if timing is not None else {}
    # A target trained twice is decided on its trainings' mean: each row says so.
    groups = {i: m for m in repeats.merged(results) for i in m.trainings}
    candidates = []
    for r in sorted(results, key=lambda r: r.index):
        group = groups.get(r.index)
        candidates.append(
            {
                **dataclasses.asdict(r),
                **(
                    {
                        "trainings": list(group.trainings),
                        "retentions": list(group.retentions),
                        "mean_retention": group.retention,
                    }
                    if group is not None
                    else {"trainings": [], "retentions": []}
                ),
                "job_id": job_ids.get(r.index),
                "met": plan.goal.met_by(group or r),
                "pareto": r.index in front,
                "picked": r.index == answer.pick_index,
                **(
                    {
                        "own_speedup": own[r.index]["speedup"],
                        "own_latency_ms": own[r.index]["latency_ms"],
                    }
                    if r.index in own
                    else {}
                ),
            }
        )
    return {
        "goal": {"kind": plan.kind, "value": plan.value},
        "runtime": plan.runtime,
        "batch_size": plan.batch_size,
        "axis": {"lo": plan.lo, "hi": plan.hi, "steps": plan.steps},
        "parallel": plan.parallel,
        "budget": {"candidates": plan.candidates, "max_seconds": plan.max_seconds},
        "candidates": candidates,
        "front": list(answer.front),
        "pick": answer.pick_index,
        "met": answer.met,
        "message": answer.message,
        "stopped_by": stopped_by,
        "timing": timing.to_json() if timing is not None else {"retimed": False},
    }


def sweep_table(sweep: dict[str, Any]) -> str:
    """A sweep's candidates, one line each (* picked, + on the Pareto front), then its
    answer in a sentence."""

    def cell(value: Any, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    lines = [" #  asked  speedup  retention  latency_ms  job"]
    for c in sweep.get("candidates") or ():
        mark = "*" if c.get("picked") else "+" if c.get("pareto") else " "
        mean = c.get("mean_retention")
        lines.append(
            f"{mark}{c['index']:<2} {c['speedup_target']:>5g}x "
            f"{cell(c.get('speedup'), '.2f'):>7}x {cell(c.get('retention'), '.2%'):>10} "
            f"{cell(c.get('latency_ms'), '.2f'):>11}  {c.get('job_id') or '-'}"
            + ("" if mean is None else f"  (mean of {len(c['trainings'])} trainings {mean:.2%})")
        )
    lines.append(sweep.get("message") or "")
    return "\n".join(lines)
