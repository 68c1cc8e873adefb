"""When to prune how much: the gradual schedule of Zhu & Gupta (2017), "To prune, or not to
prune", and the default placement of that schedule inside a training run."""

from __future__ import annotations

import math
from dataclasses import dataclass

# The training loop warms its learning rate up over the first 10% of steps
# (train.WARMUP_FRACTION). Pruning starts after it: by then distillation has re-aligned a
# student just cut by structured pruning, so its magnitudes say more about importance.
BEGIN_FRACTION = 0.1
# The last third of training runs with fixed masks, so the surviving weights recover
# from the final (largest) pruning step before the model is evaluated.
END_FRACTION = 2 / 3
# About this many mask updates between begin and end: small enough increments that each
# one costs little accuracy, few enough that ranking the weights stays cheap.
MASK_UPDATES = 32


def cubic_sparsity(
    step: int, *, final: float, initial: float = 0.0, begin_step: int, end_step: int
) -> float:
    """s_t = s_f + (s_i - s_f) (1 - (t - t0) / (t_end - t0))^3: prunes fast while many
    redundant weights remain and slowly near the target. ``initial`` before
    ``begin_step``, ``final`` from ``end_step`` on (also when they are equal: one shot)."""
    if end_step < begin_step:
        raise ValueError(f"end_step {end_step} is before begin_step {begin_step}")
    if step >= end_step:
        return final
    if step <= begin_step:
        return initial
    remaining = 1.0 - (step - begin_step) / (end_step - begin_step)
    return final + (initial - final) * remaining**3


def is_update_step(step: int, *, begin_step: int, end_step: int, update_every: int) -> bool:
    """Whether masks on this schedule change at ``step``: on ``begin_step``, every
    ``update_every`` steps after it, and at or past ``end_step`` always (a loop that
    skipped end_step, resumed elsewhere or shorter than planned, still ends at the
    exact target). The caller stops asking once its masks are frozen."""
    if step < begin_step:
        return False
    return step >= end_step or (step - begin_step) % update_every == 0


@dataclass(frozen=True)
class ScheduleSteps:
    begin_step: int
    end_step: int
    update_every: int


def default_schedule(total_steps: int) -> ScheduleSteps:
    """Begin after the learning-rate warm-up (10%), reach the target at 2/3 of training,
    about ``MASK_UPDATES`` mask updates in between. Steps count optimizer steps taken
    (the loop's ``step`` after it is incremented), so they run from 1 to total_steps."""
    if total_steps < 1:
        raise ValueError(f"total_steps must be at least 1, got {total_steps}")
    begin = math.floor(BEGIN_FRACTION * total_steps)
    end = min(total_steps, max(begin + 1, math.ceil(END_FRACTION * total_steps)))
    update_every = max(1, (end - begin) // MASK_UPDATES)
    return ScheduleSteps(begin_step=begin, end_step=end, update_every=update_every)
