"""Where and how tensors run: device choice, how many processes train, mixed precision
and seeding."""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from workers.engine.spec import EngineInputError


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    # Processes a training loop runs in, data-parallel (data_parallel.py): 1 on a CPU
    # unless asked for, else the GPUs the job may use.
    devices: int = 1
    # Passes in which each process takes its share of a batch (train.py).
    accumulation: int = 1
    # bf16 autocast on CUDA; off: fp32 (bench/gpu_throughput.py compares the two).
    mixed_precision: bool = True
    # AdamW's fused kernel (one launch for all parameters) instead of its foreach one;
    # off unless asked (bench/gpu_throughput.py measures it), so CPU runs stay as they were.
    fused_adamw: bool = False

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        # bf16 halves activation memory and runs on tensor cores without the loss
        # scaling fp16 needs; on CPU autocast gains little and costs accuracy.
        if self.is_cuda and self.mixed_precision:
            with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
                yield
        else:
            yield


def resolve_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cpu":
        return torch.device("cpu")
    if requested == "cuda":
        if not torch.cuda.is_available():
            raise EngineInputError(
                "device_unavailable", "device 'cuda' was requested but no CUDA GPU is visible"
            )
        return torch.device("cuda")
    raise EngineInputError(
        "unsupported_device", f"device must be 'auto', 'cpu' or 'cuda', not {requested!r}"
    )


@dataclass(frozen=True)
class Devices:
    """How many processes train, and why that is fewer than asked where it is."""

    used: int
    warning: str | None = None


def resolve_devices(
    requested: int | None, device: torch.device, *, batch_size: int, accumulation: int
) -> Devices:
    """``training.devices`` on this worker: the GPUs asked for (None: every visible
    one), or CPU processes (None: one, which already uses every core), never more than
    there are, nor more than a batch has shares (each process takes at least one
    example per pass). The API refuses a request that no worker could satisfy; what
    only the worker knows (its GPUs) is clamped here and said in the report."""
    if device.type == "cuda":
        available, unit = torch.cuda.device_count(), "GPU"
        wanted = available if requested is None else requested
    else:
        available, unit = len(os.sched_getaffinity(0)), "CPU core"
        wanted = 1 if requested is None else requested
    shares = max(1, batch_size // accumulation)
    used = max(1, min(wanted, available, shares))
    if used == wanted:
        return Devices(used)
    asked = f"all {wanted}" if requested is None else str(requested)
    why = (
        f"this worker has {available} {unit}{'' if available == 1 else 's'}"
        if available < wanted
        else f"a batch of {batch_size} in {accumulation} pass(es) has {shares} shares"
    )
    return Devices(used, f"training.devices asked for {asked} but {why}: trained on {used}")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
