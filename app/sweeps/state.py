"""What a sweep keeps in its rows: the plan on the parent, each child's place in it, and
a child's end read back as a policy.CandidateResult (docs/sweeps.md).

Typed here, stored as JSON in ``jobs.sweep``: the rest of the code reads dataclasses,
never the dict.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from typing import Any

from app.jobspec import vocabulary
from app.sweeps.policy import CandidateResult, Goal, goal_of

# The error of a candidate whose speed-up no shape reached on its worker.
UNREACHABLE = "target_unreachable"


@dataclass(frozen=True)
class SweepPlan:
    """The parent's plan, written once its teacher is ready: the speed-up axis the
    candidates are spread on, and how many run at once."""

    kind: str
    value: float
    runtime: str
    batch_size: int
    lo: float
    hi: float
    parallel: int
    candidates: int
    max_seconds: int | None
    # Indices of the children a `candidate` event was written for (one each).
    reported: list[int] = field(default_factory=list)
    # Tokens per row of a max_latency_ms sweep's timing (None: training.max_seq_length).
    seq_len: int | None = None
    # Where a speed-up target drops a layer, ascending: each layer count's fastest by the
    # teacher step's latency fit, less the planner's margin (axis.steps_of). The
    # candidates' points are spread by them. Empty in plans from before.
    steps: list[float] = field(default_factory=list)

    @property
    def goal(self) -> Goal:
        return Goal(self.kind, self.value)

    def to_json(self) -> dict[str, Any]:
        return {"plan": asdict(self)}

    @classmethod
    def of(cls, stored: dict[str, Any] | None) -> SweepPlan | None:
        if not stored or "plan" not in stored:
            return None
        return cls(**stored["plan"])


@dataclass(frozen=True)
class ChildPlace:
    """A child's place in its sweep: the candidate's index, the speed-up it tries, and
    which training of that speed-up it is (0 the first; repeats.py)."""

    index: int
    speedup: float
    repeat: int = 0
    # A repeat's shape: its first training's speed plan (SpeedPlan.as_dict), trained
    # again as it is rather than planned again from the speed-up, since timings on a
    # busy host can pick another shape for the same target, and a mean over two
    # shapes says nothing about either.
    speed_plan: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {"candidate": asdict(self)}

    @classmethod
    def of(cls, stored: dict[str, Any] | None) -> ChildPlace | None:
        if not stored or "candidate" not in stored:
            return None
        return cls(**stored["candidate"])


def is_sweep(request: dict[str, Any]) -> bool:
    target = request.get("target") or {}
    return any(target.get(kind) is not None for kind in vocabulary.SWEEP_TARGET_KINDS)


def sweep_goal(request: dict[str, Any]) -> Goal:
    target = request["target"]
    return goal_of(type("T", (), {k: target.get(k) for k in vocabulary.SWEEP_TARGET_KINDS}))


def child_request(request: dict[str, Any], speedup: float, repeat: int = 0) -> dict[str, Any]:
    """A candidate's request: the sweep's with the target ``{speedup, runtime}``; every
    other section as the sweep has it, with the teacher cache on (the parent fine-tuned
    the teacher into it). A max_latency_ms sweep's candidate keeps the sweep's
    ``batch_size`` and ``seq_len``: it is also timed there (the report's
    ``latency_point``), which is what the sweep reads. A ``repeat`` trains its student
    on the student seed that many past the sweep's, with the same teacher."""
    child = copy.deepcopy(request)
    target = request["target"]
    child["target"] = {"speedup": speedup, "runtime": target.get("runtime") or "pytorch"}
    if target.get("max_latency_ms") is not None:
        child["target"]["batch_size"] = int(target.get("batch_size") or 1)
        child["target"]["seq_len"] = target.get("seq_len")
    child["training"] = {**child["training"], "teacher_cache": True}
    if repeat:
        training = child["training"]
        base = training.get("student_seed")
        base = training.get("seed", 0) if base is None else base
        training["student_seed"] = base + repeat
    # What the sweep keeps of its candidates is the sweep's business, not theirs.
    child.get("export", {}).pop("keep_candidates", None)
    return child


def keeps_candidates(request: dict[str, Any]) -> bool:
    """export.keep_candidates: the candidates besides the pick become the sweep's own
    artifacts (``candidate-<index>-<name>``)."""
    return bool((request.get("export") or {}).get("keep_candidates"))


def candidate_artifact(index: int, name: str) -> str:
    return f"candidate-{index}-{name}"


def latency_of(metrics: dict[str, Any], *, runtime: str, batch_size: int) -> float | None:
    """The student's latency in ``runtime`` at ``batch_size`` rows, from a child's
    report: its ``latency_point`` where it was timed at the sweep's point, else the PyTorch
    student, or its row in ``formats`` for an ONNX runtime (batch 1 and 32)."""
    point = metrics.get("latency_point")
    if point is not None:
        return point["latency_ms"]
    key = f"latency_ms_cpu_bs{batch_size}"
    if runtime == vocabulary.DEFAULT_RUNTIME:
        return (metrics.get("student") or {}).get(key)
    fmt = vocabulary.SPEEDUP_RUNTIMES.get(runtime)
    row = (metrics.get("formats") or {}).get(fmt) or {}
    return row.get(key)


def result_of(
    place: ChildPlace,
    *,
    status: str,
    metrics: dict[str, Any] | None,
    plan: SweepPlan,
    error_code: str | None = None,
) -> CandidateResult:
    """A child that ended, as the policy reads it; failed or cancelled: not ok."""
    if status != "succeeded" or not metrics:
        return CandidateResult(
            place.index,
            place.speedup,
            None,
            None,
            None,
            None,
            None,
            ok=False,
            unreachable=error_code == UNREACHABLE,
            repeat=place.repeat,
        )
    student = metrics.get("student") or {}
    main = metrics.get("main_metric") or "accuracy"
    measured = (metrics.get("speedup_target") or {}).get("measured")
    if measured is None:
        measured = metrics.get("speedup_cpu_bs1")
    point = metrics.get("latency_point")
    return CandidateResult(
        index=place.index,
        speedup_target=place.speedup,
        # Where the sweep times its candidates, if the candidate was timed there.
        speedup=point["speedup"] if point is not None else measured,
        retention=metrics.get("retention"),
        score=student.get(main),
        latency_ms=latency_of(metrics, runtime=plan.runtime, batch_size=plan.batch_size),
        size_bytes=student.get("size_bytes"),
        repeat=place.repeat,
    )


@dataclass(frozen=True)
class Timing:
    """How the report's latencies were read: ``retimed`` in one pass here (``detail``:
    runtime, batch size, tokens, threads, which teacher, its latency), or each
    candidate's own (``reason`` says why). ``own`` keeps each candidate's own reading."""

    retimed: bool
    reason: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    own: dict[int, dict[str, float | None]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"retimed": self.retimed, **self.detail}
        if self.reason is not None:
            out["reason"] = self.reason
        return out


def speed_plan_of(metrics: dict[str, Any] | None) -> dict[str, Any] | None:
    """The shape a speedup candidate was trained at, from its report (None: none)."""
    return ((metrics or {}).get("pruning_plan") or {}).get("speed_plan")
