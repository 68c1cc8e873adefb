"""What a sweep's policy reads and writes: its goal, the candidates it starts, what
they measured, and its answer (app/sweeps/policy.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

from app.jobspec import vocabulary

MIN_RETENTION, MAX_LATENCY_MS = vocabulary.SWEEP_TARGET_KINDS


@dataclass(frozen=True)
class Goal:
    """What the sweep is for: ``kind`` one of vocabulary.SWEEP_TARGET_KINDS, and its
    ``value`` (a share of the teacher's score, or milliseconds)."""

    kind: str
    value: float

    def __post_init__(self) -> None:
        if self.kind not in vocabulary.SWEEP_TARGET_KINDS:
            raise ValueError(f"a sweep's goal is one of {vocabulary.SWEEP_TARGET_KINDS}")

    def met_by(self, result: CandidateResult) -> bool:
        if not result.ok:
            return False
        if self.kind == MIN_RETENTION:
            return result.retention is not None and result.retention >= self.value
        return result.latency_ms is not None and result.latency_ms <= self.value


def goal_of(target: object) -> Goal:
    """The goal of a request's target (any object with the sweep kinds' fields)."""
    for kind in vocabulary.SWEEP_TARGET_KINDS:
        value = getattr(target, kind, None)
        if value is not None:
            return Goal(kind, float(value))
    raise ValueError("the target is not a sweep")


@dataclass(frozen=True)
class Candidate:
    """A child to run: target ``{speedup: speedup, runtime: the sweep's}``."""

    index: int
    speedup: float
    # Trainings of this target before this one (0: the first); a repeat trains on the
    # student seed this much past the sweep's (app/sweeps/repeats.py).
    repeat: int = 0


@dataclass(frozen=True)
class CandidateResult:
    """A child that ended. ``speedup_target`` is what it was asked for, ``speedup`` what
    it measured; ``ok`` False for a child that failed (its numbers then None)."""

    index: int
    speedup_target: float
    speedup: float | None
    retention: float | None
    score: float | None
    latency_ms: float | None
    size_bytes: int | None
    ok: bool = True
    # Failed because no shape reached its speed-up on the worker (target_unreachable):
    # the axis ends below it.
    unreachable: bool = False
    # Which training of its target this was (Candidate.repeat).
    repeat: int = 0
    # Where several trainings of one target were merged (repeats.merged): their
    # indices and retentions, this result's retention and score being their mean.
    trainings: tuple[int, ...] = ()
    retentions: tuple[float, ...] = ()


@dataclass(frozen=True)
class Answer:
    """The sweep's answer: the picked candidate's index (None when no candidate
    succeeded), whether it meets the goal, a sentence for the report, and the indices
    of the Pareto front (retention against latency), fastest first."""

    pick_index: int | None
    met: bool
    message: str
    front: list[int] = field(default_factory=list)
