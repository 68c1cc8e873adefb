"""Strategies: how pruning and distillation alternate, as a list of rounds.

Each round prunes the current model (the teacher, at first) to a fraction of the
teacher's non-embedding parameters, importance measured through that model, then
distils the result from the teacher for some epochs, optionally zeroing weights on a
schedule. The training budget (``training.epochs``) is the same whatever the strategy:
the rounds share it.

- ``prune_then_distill`` (default): one round, the target at once; sparsity zeroed on
  the gradual schedule (begins after warm-up, complete at 2/3), masks fixed for the
  last third.
- ``distill_then_prune``: the classic two-step recipe. First a layers-only student at
  about the square root of the target (layers taken from the teacher), distilled for
  half the epochs; then pruned the rest of the way with every allowed structure and
  recovered with the other half. With a sparsity target: a dense distillation, then
  one-shot magnitude pruning and recovery with fixed masks.
- ``joint``: prune while distilling, in rounds that each remove at most about 30% of
  what is left (one-shot pruning past 30-50% collapses accuracy; Minitron and ModelOpt
  advise about 30% per cycle). Where ``ffn`` may be pruned, a round cuts layers (and
  hidden width, heads) at its start but narrows the FFN gradually while it distils
  (``neurons.NeuronPruner``: Taylor-ranked neurons masked on the cubic schedule, cut
  away at the round's end), as Intel Neural Compressor's ``auto_slim`` does. With a
  sparsity target: the gradual schedule over the whole run, no fixed-mask tail.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from app.jobspec.plan import Shape
from app.jobspec.registry import Registry
from workers.engine import criteria
from workers.engine.sparsity import SparsityConfig
from workers.engine.sparsity_schedule import default_schedule
from workers.engine.spec import CompressionSpec, EngineInputError

# The most a joint round removes of what is left.
JOINT_STEP = 0.7


@dataclass(frozen=True)
class Zeroing:
    """Weights zeroed during a round: ``schedule`` "gradual" (cubic, to 2/3 of the
    round), "gradual_full" (cubic, to the round's end) or "oneshot" (at its first step);
    ``criterion`` and ``scope`` as ``SparsityConfig`` takes them."""

    target: float
    pattern: str
    schedule: str
    criterion: str = "magnitude"
    scope: str = "per_matrix"

    def config(self, total_steps: int) -> SparsityConfig:
        if self.schedule == "oneshot":
            begin, end, every = 0, 0, 1
        else:
            steps = default_schedule(total_steps)
            begin, every = steps.begin_step, steps.update_every
            end = total_steps if self.schedule == "gradual_full" else steps.end_step
        return SparsityConfig(
            target=self.target,
            pattern=self.pattern,
            begin_step=begin,
            end_step=end,
            update_every=every,
            criterion=self.criterion,
            scope=self.scope,
        )


@dataclass(frozen=True)
class Round:
    """``ratio``: the teacher's non-embedding parameters kept after this round's pruning
    (1.0: nothing removed); ``structured``: what it may remove."""

    ratio: float
    structured: tuple[str, ...]
    epochs: int
    zeroing: Zeroing | None = None
    # Narrow the FFN during the round's distillation instead of at its start.
    gradual_ffn: bool = False
    # The student's shape, when it was chosen for speed (speed_plan.py) rather than
    # planned from ``ratio``.
    shape: Shape | None = None


@dataclass(frozen=True)
class FixedShape:
    """A ``speedup`` target's student: its shape, its non-embedding parameters as a
    fraction of the teacher's, and the same for its depth at the teacher's widths."""

    shape: Shape
    ratio: float
    depth_ratio: float


@dataclass(frozen=True)
class RoundsAsked:
    """What a strategy plans its rounds from: the spec, the teacher's parameters the
    student keeps in the end (``ratio``) and, for a speedup target, its shape."""

    spec: CompressionSpec
    ratio: float
    fixed: FixedShape | None = None

    @property
    def epochs(self) -> int:
        return self.spec.training.epochs

    @property
    def structured(self) -> tuple[str, ...]:
        return tuple(self.spec.pruning.structured)

    @property
    def shape(self) -> Shape | None:
        return self.fixed.shape if self.fixed is not None else None

    def zeroing(self, schedule: str) -> Zeroing | None:
        """The round's weight zeroing on ``schedule``, where the spec asks for any."""
        target, pattern = zeroing_target(self.spec)
        if not target:
            return None
        name, scope = weight_criterion(self.spec)
        return Zeroing(target, pattern, schedule, name, scope)


Strategy = Callable[[RoundsAsked], list[Round]]
# vocabulary.STRATEGIES names them (tests/engine/test_registries.py checks the two agree).
STRATEGIES: Registry[Strategy] = Registry("strategy", param="strategy")


def plan_rounds(spec: CompressionSpec, fixed: FixedShape | None = None) -> list[Round]:
    """The rounds of ``spec.strategy``; with ``fixed`` (a ``speedup`` target) the last
    round prunes to that shape."""
    if fixed is not None:
        ratio = fixed.ratio
    else:
        ratio = spec.target.params_ratio if spec.target.sparsity is None else 1.0
    assert ratio is not None
    return STRATEGIES.get(spec.strategy)(RoundsAsked(spec, ratio, fixed))


@STRATEGIES.register("prune_then_distill")
def _prune_then_distill(asked: RoundsAsked) -> list[Round]:
    return [
        Round(
            asked.ratio,
            asked.structured,
            asked.epochs,
            asked.zeroing("gradual"),
            shape=asked.shape,
        )
    ]


@STRATEGIES.register("distill_then_prune")
def _distill_then_prune(asked: RoundsAsked) -> list[Round]:
    _need_epochs(asked.spec, 2)
    epochs, fixed = asked.epochs, asked.fixed
    first = math.ceil(epochs / 2)
    # The first round keeps at least the layers a fixed shape needs: a shape of many
    # narrow layers cannot be cut from fewer wide ones.
    first_ratio = max(math.sqrt(asked.ratio), fixed.depth_ratio if fixed else 0.0)
    # With nothing to remove (a sparsity target) the first round only distils.
    return [
        Round(min(first_ratio, 1.0), ("layers",), first),
        Round(
            asked.ratio,
            asked.structured,
            epochs - first,
            asked.zeroing("oneshot"),
            shape=asked.shape,
        ),
    ]


@STRATEGIES.register("joint")
def _joint(asked: RoundsAsked) -> list[Round]:
    if asked.fixed is not None:  # validate_spec refuses it; a direct caller is told here
        raise EngineInputError(
            "not_supported_yet", "joint plans by parameters, not for a speedup target"
        )
    ratio, epochs, structured = asked.ratio, asked.epochs, asked.structured
    count = 1 if ratio >= 1.0 else max(1, math.ceil(math.log(ratio) / math.log(JOINT_STEP)))
    count = min(count, epochs)
    shares = _split(epochs, count)
    return [
        Round(
            ratio ** ((k + 1) / count),
            structured,
            shares[k],
            asked.zeroing("gradual_full") if k == count - 1 else None,
            gradual_ffn="ffn" in structured,
        )
        for k in range(count)
    ]


def zeroing_target(spec: CompressionSpec) -> tuple[float, str]:
    """(fraction of single weights zeroed, pattern); 0.0 where none are."""
    if spec.target.sparsity is not None:
        return spec.target.sparsity, spec.target.pattern
    return spec.pruning.unstructured_sparsity, "unstructured"


def weight_criterion(spec: CompressionSpec) -> tuple[str, str]:
    """(criterion, scope) that zeroes single weights, from ``pruning.importance``: the
    criterion says whether its scores compare across matrices (``criteria/``)."""
    criterion = criteria.get(spec.pruning.importance)
    return criterion.name, criterion.scope


def _need_epochs(spec: CompressionSpec, rounds: int) -> None:
    if spec.training.epochs < rounds:
        raise EngineInputError(
            "bad_training",
            f"strategy {spec.strategy!r} distils in {rounds} rounds, one epoch at least "
            f"each: set training.epochs to {rounds} or more",
        )


def _split(total: int, parts: int) -> list[int]:
    """``total`` epochs in ``parts`` shares as even as can be, the larger ones first."""
    base, extra = divmod(total, parts)
    return [base + (1 if k < extra else 0) for k in range(parts)]
