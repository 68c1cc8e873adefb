"""Where a ``speedup`` target lands among the shapes ``pruning.structured`` allows.

Those shapes come in steps: layers alone give one per depth (about L/k for k of L
layers), so a target between two steps is met by the faster one, and the student pays
in quality for speed nobody asked for. A MiniLM-L6 job asking for 2.0x with layers
alone got 2 of 6 layers at 2.82x, keeping 93.6% of the teacher's accuracy, because 3
layers measured 1.94x (issue #20). The API says so when the job is created, from an
estimate; the worker's report says so again from what it measured (report.py).

Pure Python, no torch: the API prices shapes with ``ESTIMATE_FIT``, the worker with
the latency law its speed plan fitted on its own hardware (speed_plan.py).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from app.jobspec.plan import Shape, TeacherSizes
from app.jobspec.speed_plan import MARGIN, LatencyFit, predicted_speedups

# The latency law the speed planner fitted for MiniLM-L6 on 2 CPU threads at 128
# tokens (bench/results/sst2-full-cpu2.json, the speedup=2.15 row: 0.78 ms fixed,
# 0.37 ms per layer, 714 ms per GFLOP-per-token of a layer). The API has no worker to
# time shapes on, so it prices them with this law: the fixed and per-layer costs are
# what make 3 of 6 layers 1.92x rather than FLOPs' 2x, which is the difference
# between a target of 2 met and overshot. An estimate: the worker measures its own.
ESTIMATE_FIT = LatencyFit(fixed_ms=0.78, layer_ms=0.37, ms_per_gflop=714.0)
# A student faster than its target by more than this is worth a warning: the quality
# it gave up bought speed the job did not ask for.
OVERSHOOT = 0.25


@dataclass(frozen=True)
class Step:
    shape: Shape
    speedup: float


@dataclass(frozen=True)
class Landing:
    """The step a target lands on (``taken``: the most parameters predicted to reach
    it with the planner's margin) and the fastest larger step that falls short of it
    (``short``), if any; ``taken`` is None when no allowed shape is predicted to reach
    the target."""

    target: float
    taken: Step | None
    short: Step | None

    @property
    def overshoot(self) -> float:
        return self.taken.speedup / self.target - 1.0 if self.taken is not None else 0.0


def landing(
    sizes: TeacherSizes,
    structured: Collection[str],
    speedup: float,
    *,
    seq_len: int,
    fit: LatencyFit = ESTIMATE_FIT,
    taken: Shape | None = None,
) -> Landing:
    """Where ``speedup`` lands by ``fit``: the shape the planner would choose (or the
    one it did choose, ``taken``) and the fastest allowed shape larger than it."""
    predicted = predicted_speedups(sizes, structured, fit, seq_len)
    steps = [Step(s, speed) for s, speed in predicted.items()]
    if taken is None:
        fitting = [s for s in steps if s.speedup >= speedup * (1 + MARGIN)]
        chosen = max(
            fitting,
            key=lambda s: (sizes.shape_params(s.shape), s.shape.num_layers),
            default=None,
        )
    else:
        teacher_ms = fit.predict(sizes, sizes.teacher_shape, seq_len)
        chosen = Step(taken, teacher_ms / fit.predict(sizes, taken, seq_len))
    floor = sizes.shape_params(chosen.shape) if chosen is not None else -1
    larger = [s for s in steps if sizes.shape_params(s.shape) > floor]
    short = max(larger, key=lambda s: s.speedup, default=None)
    return Landing(speedup, chosen, short)


def describe(sizes: TeacherSizes, shape: Shape) -> str:
    """ "3 of 6 layers", with any width that differs from the teacher's."""
    teacher = sizes.teacher_shape
    parts = [f"{shape.num_layers} of {teacher.num_layers} layers"]
    if shape.intermediate_size != teacher.intermediate_size:
        parts.append(f"FFN {shape.intermediate_size} of {teacher.intermediate_size}")
    if shape.hidden_size != teacher.hidden_size:
        parts.append(f"hidden {shape.hidden_size} of {teacher.hidden_size}")
    if shape.num_heads != teacher.num_heads:
        parts.append(f"{shape.num_heads} of {teacher.num_heads} heads")
    return ", ".join(parts)


def finer(structured: Collection[str]) -> str:
    """The advice to add FFN neurons to what may be removed, or "" if they are."""
    return "" if "ffn" in structured else "add 'ffn' to pruning.structured"


def speedup_warnings(
    sizes: TeacherSizes,
    structured: Collection[str],
    speedup: float,
    *,
    seq_len: int,
) -> list[dict[str, Any]]:
    """What a user should hear before a speedup job runs, from an estimate of the steps
    the allowed shapes make (ESTIMATE_FIT): that the target falls between
    two steps far apart and the job will take the faster one, or that no allowed shape
    is estimated to reach it. Each: ``code``, ``message``, ``param`` and ``data``."""
    where = landing(sizes, structured, speedup, seq_len=seq_len)
    asked = f"target.speedup {speedup:g} with pruning.structured {sorted(structured)}"
    finer_by = finer(structured)
    estimate = (
        "Estimated from FLOPs and a CPU latency law measured on MiniLM-L6 "
        "(docs/engine.md); the worker times the shapes on its own hardware."
    )
    taken, short = where.taken, where.short
    if taken is None:
        assert short is not None  # every teacher has a smaller shape
        fastest = describe(sizes, short.shape)
        return [
            {
                "code": "speedup_may_be_unreachable",
                "param": "target.speedup",
                "message": f"{asked}: the fastest student these structures allow ({fastest}) "
                f"is estimated at {short.speedup:.2f}x, so the job may fail with "
                "target_unreachable once the worker has timed it. Ask for less"
                + (f", or {finer_by} for narrower, faster students" if finer_by else "")
                + f". {estimate}",
                "data": {"estimated_fastest": round(short.speedup, 3), "shape": fastest},
            }
        ]
    if where.overshoot <= OVERSHOOT:
        return []
    landed = describe(sizes, taken.shape)
    below = describe(sizes, short.shape) if short is not None else None
    between = (
        f"none is estimated between {short.speedup:.2f}x ({below}) and "
        f"{taken.speedup:.2f}x ({landed})"
        if short is not None
        else f"the largest that reaches it is {landed}, estimated at {taken.speedup:.2f}x"
    )
    fixes = [f"{finer_by} for the steps in between"] if finer_by else []
    if short is not None:
        fixes.append(f"ask for at most {short.speedup:.2f}x to keep the larger student")
    return [
        {
            "code": "speedup_overshoot",
            "param": "target.speedup",
            "message": f"{asked}: the students these structures allow come in steps, and "
            f"{between}. The job will take the faster step, about {taken.speedup:.2f}x "
            f"({where.overshoot:.0%} more than asked), and keep less of the teacher's "
            "quality for it" + (f"; {' or '.join(fixes)}" if fixes else "") + f". {estimate}",
            "data": {
                "estimated_speedup": round(taken.speedup, 3),
                "shape": landed,
                "step_below": round(short.speedup, 3) if short is not None else None,
                "step_below_shape": below,
            },
        }
    ]
