"""One training loop for teacher fine-tuning and distillation alike.

AdamW with a linear schedule (10% warm-up), gradient clipping, a stop check every step
and a short loss curve. What a step computes is the caller's ``step_loss``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn

from workers.engine.checkpoint import LoopState, SaveLoop, rng_state, set_rng_state
from workers.engine.data import Batch, EncodedSplit, iter_batches, to_device
from workers.engine.progress import Progress
from workers.engine.runtime import Runtime

WARMUP_FRACTION = 0.1
WEIGHT_DECAY = 0.01
MAX_GRAD_NORM = 1.0
# The report wants the shape of the curve, not every step.
CURVE_POINTS = 20


@dataclass(frozen=True)
class TrainConfig:
    name: str
    epochs: int
    batch_size: int
    learning_rate: float
    seed: int
    pad_token_id: int


@dataclass
class LoopHooks:
    """How a caller checkpoints, resumes and extends a training loop.

    Every ``checkpoint_every`` steps ``save`` gets the loop's state (optimizer, schedule,
    step, data order, RNG); given back as ``resume`` (with the modules' weights restored
    by the caller) the loop continues exactly where it was. ``after_step(step)`` runs
    after each optimizer step (sparsity masks use it).
    """

    checkpoint_every: int = 0
    save: SaveLoop | None = None
    resume: LoopState | None = None
    after_step: Callable[[int], None] | None = None


def linear_schedule(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        # step + 1: the first step already learns (a zero learning rate wastes it).
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return factor


def parameter_groups(
    named: Iterable[tuple[str, nn.Parameter]],
) -> list[dict[str, object]]:
    """No weight decay on biases and norm scales (1-D tensors), as in BERT's recipe."""
    decay, no_decay = [], []
    for _, param in named:
        if not param.requires_grad:
            continue
        (decay if param.ndim >= 2 else no_decay).append(param)
    return [
        {"params": decay, "weight_decay": WEIGHT_DECAY},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def train_loop(
    *,
    config: TrainConfig,
    modules: list[nn.Module],
    data: EncodedSplit,
    step_loss: Callable[[Batch], torch.Tensor],
    runtime: Runtime,
    progress: Progress,
    hooks: LoopHooks | None = None,
) -> list[dict[str, float]]:
    """Train ``modules`` (all their parameters) and return the loss curve."""
    hooks = hooks or LoopHooks()
    checkpoint_every, save = hooks.checkpoint_every, hooks.save
    resume, after_step = hooks.resume, hooks.after_step
    named = [item for module in modules for item in module.named_parameters()]
    optimizer = torch.optim.AdamW(parameter_groups(named), lr=config.learning_rate)
    steps_per_epoch = data.num_batches(config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    warmup_steps = max(1, math.ceil(WARMUP_FRACTION * total_steps))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, linear_schedule(total_steps, warmup_steps)
    )
    window = max(1, math.ceil(total_steps / CURVE_POINTS))
    params = [p for group in optimizer.param_groups for p in group["params"]]
    # A separate generator: shuffling must not depend on how many random numbers the
    # model code drew before (dropout, initialisation).
    generator = torch.Generator().manual_seed(config.seed)

    curve: list[dict[str, float]] = []
    running = torch.zeros((), device=runtime.device)
    in_window = 0
    step = 0
    first_epoch, skip = 0, 0
    epoch_sum, epoch_steps = 0.0, 0
    if resume is not None:
        optimizer.load_state_dict(resume["optimizer"])
        scheduler.load_state_dict(resume["scheduler"])
        generator.set_state(resume["epoch_generator"])
        step, first_epoch, skip = resume["step"], resume["epoch"], resume["batch_in_epoch"]
        curve = [dict(point) for point in resume["curve"]]
        running += resume["running"]
        in_window = resume["in_window"]
        epoch_sum, epoch_steps = resume["epoch_sum"], resume["epoch_steps"]
        set_rng_state(resume["rng"])
    for module in modules:
        module.train()
    for epoch in range(first_epoch, config.epochs):
        if epoch != first_epoch or resume is None:
            epoch_sum, epoch_steps = 0.0, 0
        # The shuffle of this epoch is drawn from this state: a resumed run redraws it.
        epoch_generator = generator.get_state()
        batches = iter_batches(
            data, config.batch_size, pad_token_id=config.pad_token_id, generator=generator
        )
        start = skip + 1 if epoch == first_epoch else 1
        if epoch == first_epoch and skip:
            batches = itertools.islice(batches, skip, None)
        for index, batch in enumerate(batches, start=start):
            progress.check_stop()
            loss = step_loss(to_device(batch, runtime.device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, MAX_GRAD_NORM)
            optimizer.step()
            scheduler.step()
            step += 1
            if after_step is not None:
                after_step(step)
            running += loss.detach().float()
            in_window += 1
            # Reading the loss syncs a GPU, so it happens once per window (and at the end
            # of each epoch, so epoch means are exact), not per step.
            if in_window == window or index == steps_per_epoch:
                mean = running.item() / in_window
                if not math.isfinite(mean):
                    raise RuntimeError(f"{config.name}: loss became {mean} at step {step}")
                curve.append(
                    {"step": step, "epoch": round(step / steps_per_epoch, 3), "loss": mean}
                )
                epoch_sum += mean * in_window
                epoch_steps += in_window
                running.zero_()
                in_window = 0
            progress.within(step / total_steps)
            # The phase's last step is checkpointed by the caller, with its results.
            due = checkpoint_every and step % checkpoint_every == 0 and step < total_steps
            if save is not None and due:
                ended_epoch = index == steps_per_epoch
                save(
                    {
                        "step": step,
                        # At an epoch's end the next run starts the next epoch afresh.
                        "epoch": epoch + 1 if ended_epoch else epoch,
                        "batch_in_epoch": 0 if ended_epoch else index,
                        "epoch_generator": (
                            generator.get_state() if ended_epoch else epoch_generator
                        ),
                        "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(),
                        "curve": [dict(point) for point in curve],
                        "running": float(running.item()),
                        "in_window": in_window,
                        "epoch_sum": 0.0 if ended_epoch else epoch_sum,
                        "epoch_steps": 0 if ended_epoch else epoch_steps,
                        "rng": rng_state(),
                    }
                )
        epoch_loss = epoch_sum / max(epoch_steps, 1)
        progress.log(
            f"{config.name} epoch {epoch + 1}/{config.epochs}: loss {epoch_loss:.4f}",
            data={"stage": config.name, "epoch": epoch + 1, "loss": epoch_loss},
        )
    for module in modules:
        module.eval()
    return curve
