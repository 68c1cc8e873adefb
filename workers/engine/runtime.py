"""Where and how tensors run: device choice, mixed precision and seeding."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from workers.engine.spec import EngineInputError


@dataclass(frozen=True)
class Runtime:
    device: torch.device

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        # bf16 halves activation memory and runs on tensor cores without the loss
        # scaling fp16 needs; on CPU autocast gains little and costs accuracy.
        if self.is_cuda:
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


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
