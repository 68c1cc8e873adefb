"""One training loop for teacher fine-tuning and distillation alike.

AdamW with a linear schedule (10% warm-up), gradient clipping, a stop check every step
and a short loss curve. What a step computes is the caller's ``step_loss(batch,
share)``: the loss of a pass over (part of) a batch, each term weighted by the pass's
``share`` of what it averages over (``shares.py``).

A step trains on ``batch_size`` examples however it is run: in one pass on one device,
in ``runtime.accumulation`` passes whose gradients add up, or shared between
``runtime.devices`` processes that average their gradients (``data_parallel.py``).
With one device and one pass the loop is what it was before either existed. With
several processes, ``step_loss`` and ``hooks.after_step`` are handed to the other
processes as objects (pickled): plain functions and objects, no closures.
"""

from __future__ import annotations

import contextlib
import itertools
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn

from workers.engine import data_parallel
from workers.engine.buckets import bucketed_batches
from workers.engine.checkpoint import LoopState, SaveLoop, rng_state, set_rng_state
from workers.engine.data import EncodedSplit, collate, index_batches, to_device
from workers.engine.data_parallel import Group, LoopPayload, StepLoss, rank_passes
from workers.engine.progress import Progress
from workers.engine.runtime import Runtime
from workers.engine.shares import NOTHING, WHOLE, Counts, Share

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
    # Length-bucketed batches (buckets.py) over spans of this many batches; 0: batches
    # of random rows padded to their longest, as jobs train (bench/gpu_throughput.py
    # measures the difference before a job may ask for it).
    length_buckets: int = 0


@dataclass
class LoopHooks:
    """How a caller checkpoints, resumes and extends a training loop.

    Every ``checkpoint_every`` steps ``save`` gets the loop's state (optimizer, schedule,
    step, data order, RNG); given back as ``resume`` (with the modules' weights restored
    by the caller) the loop continues exactly where it was. ``after_step(step)`` runs
    after each optimizer step (sparsity masks use it), in every process of a
    data-parallel loop; ``save`` runs in the first only.
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
    step_loss: StepLoss,
    runtime: Runtime,
    progress: Progress,
    hooks: LoopHooks | None = None,
) -> list[dict[str, float]]:
    """Train ``modules`` (all their parameters) and return the loss curve; on
    ``runtime.devices`` processes when there are several (this one is the first)."""
    hooks = hooks or LoopHooks()
    if runtime.devices <= 1:
        return run_loop(
            config=config,
            modules=modules,
            data=data,
            step_loss=step_loss,
            runtime=runtime,
            progress=progress,
            hooks=hooks,
        )
    threads = torch.get_num_threads()
    # CPU processes share the cores; GPU processes each drive their own device.
    share = threads if runtime.is_cuda else max(1, threads // runtime.devices)
    payload = LoopPayload(
        config=config,
        modules=modules,
        data=data,
        step_loss=step_loss,
        after_step=hooks.after_step,
        resume=hooks.resume,
        phase=progress.phase,
        accumulation=runtime.accumulation,
        threads=share,
    )
    torch.set_num_threads(share)
    try:
        with data_parallel.launch(payload, runtime) as group:
            return run_loop(
                config=config,
                modules=modules,
                data=data,
                step_loss=step_loss,
                runtime=runtime,
                progress=progress,
                hooks=hooks,
                group=group,
            )
    finally:
        torch.set_num_threads(threads)


def run_loop(
    *,
    config: TrainConfig,
    modules: list[nn.Module],
    data: EncodedSplit,
    step_loss: StepLoss,
    runtime: Runtime,
    progress: Progress,
    hooks: LoopHooks,
    group: Group | None = None,
) -> list[dict[str, float]]:
    """The loop in this process: alone (``group`` None) or as one rank of ``group``."""
    checkpoint_every, save = hooks.checkpoint_every, hooks.save
    resume, after_step = hooks.resume, hooks.after_step
    rank, world = (group.rank, group.world) if group is not None else (0, 1)
    named = [item for module in modules for item in module.named_parameters()]
    optimizer = torch.optim.AdamW(
        parameter_groups(named),
        lr=config.learning_rate,
        # None: PyTorch's default (foreach); the fused kernel only where asked.
        fused=True if runtime.fused_adamw else None,
    )
    steps_per_epoch = data.num_batches(config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    warmup_steps = max(1, math.ceil(WARMUP_FRACTION * total_steps))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, linear_schedule(total_steps, warmup_steps)
    )
    window = max(1, math.ceil(total_steps / CURVE_POINTS))
    params = [p for group_ in optimizer.param_groups for p in group_["params"]]
    # A separate generator: shuffling must not depend on how many random numbers the
    # model code drew before (dropout, initialisation). Every rank draws the same order.
    generator = torch.Generator().manual_seed(config.seed)
    # Several ranks: DDP averages the gradients of the modules as they come (its
    # buckets overlap the reduction with the backward pass).
    trained = group.wrap(modules, step_loss) if group is not None else None
    # Several passes per step: what each pass's share of its batch is counted from.
    counts = Counts.of(data) if world > 1 or runtime.accumulation > 1 else None

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
        if rank == 0:  # the other ranks draw from their own streams
            set_rng_state(resume["rng"])
    for module in modules:
        module.train()
    # A step waits while another job of this host times its models (host_lock.py). Not
    # across data-parallel ranks: one rank held back while another waits for it in an
    # all_reduce, holding the lock the timing waits for, would never move again.
    step_guard = progress.working if world == 1 else contextlib.nullcontext
    for epoch in range(first_epoch, config.epochs):
        if epoch != first_epoch or resume is None:
            epoch_sum, epoch_steps = 0.0, 0
        # The shuffle of this epoch is drawn from this state: a resumed run redraws it.
        epoch_generator = generator.get_state()
        batches = (
            bucketed_batches(
                data, config.batch_size, generator=generator, span=config.length_buckets
            )
            if config.length_buckets
            else index_batches(data, config.batch_size, generator=generator)
        )
        start = skip + 1 if epoch == first_epoch else 1
        if epoch == first_epoch and skip:
            batches = itertools.islice(batches, skip, None)
        for index, rows in enumerate(batches, start=start):
            progress.check_stop()
            with step_guard():
                optimizer.zero_grad(set_to_none=True)
                loss = _backward(
                    trained if trained is not None else step_loss,
                    trained,
                    _passes(
                        rows, counts, rank=rank, world=world, accumulation=runtime.accumulation
                    ),
                    data=data,
                    pad_token_id=config.pad_token_id,
                    runtime=runtime,
                    world=world,
                )
                if group is not None:
                    group.all_reduce(loss)  # the batch's mean loss, on every rank
                torch.nn.utils.clip_grad_norm_(params, MAX_GRAD_NORM)
                optimizer.step()
                scheduler.step()
            step += 1
            if after_step is not None:
                after_step(step)
            running += loss
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


def _passes(
    rows: list[int], counts: Counts | None, *, rank: int, world: int, accumulation: int
) -> list[tuple[list[int], Share]]:
    """This process's passes over a batch's ``rows``, each with its share of the batch.
    A process whose share is empty makes one pass of share nothing on the batch's first
    row: every process must take part in each gradient reduction."""
    if counts is None:  # one process, one pass: the batch as it is
        return [(rows, WHOLE)]
    passes = rank_passes(rows, rank=rank, world=world, accumulation=accumulation)
    if not passes:
        return [(rows[:1], NOTHING)]
    return [(part, counts.share(part, rows)) for part in passes]


def _backward(
    forward: StepLoss,
    trained: nn.Module | None,
    passes: list[tuple[list[int], Share]],
    *,
    data: EncodedSplit,
    pad_token_id: int,
    runtime: Runtime,
    world: int,
) -> torch.Tensor:
    """Forward and backward over this process's passes of a batch (gradients add up);
    its part of the batch's loss. ``trained``: the DDP module, whose reduction waits for
    the last pass and averages over the processes (hence the loss times ``world``)."""
    total: torch.Tensor | None = None
    for i, (rows, share) in enumerate(passes):
        batch = to_device(collate(data, rows, pad_token_id), runtime.device)
        last = i == len(passes) - 1
        deferred = trained.no_sync() if trained is not None and not last else None
        with deferred if deferred is not None else contextlib.nullcontext():
            loss = forward(batch, share)
            (loss if world == 1 else loss * world).backward()
        part = loss.detach().float()
        total = part if total is None else total + part
    assert total is not None  # _passes gives one pass at least
    return total
