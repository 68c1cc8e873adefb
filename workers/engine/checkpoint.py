"""Self-describing checkpoints: one file holds everything a run needs to continue.

Like nanoGPT's checkpoint dict: weights, optimizer, scheduler, step, RNG states and the
stage the run was in, plus a fingerprint of the spec so that a checkpoint is never
resumed into a different job. Saved with ``torch.save`` and read back with
``weights_only=True``: only tensors and plain containers, nothing that runs code.

Stages:
- ``teacher_finetune``: mid fine-tuning; ``loop`` and the teacher's current weights.
- ``teacher_done``: fine-tuning finished; the teacher's weights and scores.
- ``distilling``: mid distillation; the student (config and weights), the trained
  extras (hidden-state projections, sparsity masks), ``loop``, and the teacher.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from workers.engine.progress import Progress

VERSION = 1
STAGES = ("teacher_finetune", "teacher_done", "distilling")
FILENAME = "checkpoint.pt"
# Spec fields that do not change what a run computes, so a resume may differ in them.
_NOT_FINGERPRINTED = ("device", "latency_threads")
_NOT_FINGERPRINTED_TRAINING = ("checkpoint_every_steps",)

LoopState = dict[str, Any]
# What a training loop hands its caller when it is time to checkpoint.
SaveLoop = Callable[[LoopState], None]


def fingerprint(summary: dict[str, Any]) -> str:
    """A hash of what the run computes (the report's spec summary)."""
    kept = {k: v for k, v in summary.items() if k not in _NOT_FINGERPRINTED}
    training = {
        k: v for k, v in kept.get("training", {}).items() if k not in _NOT_FINGERPRINTED_TRAINING
    }
    kept["training"] = training
    return hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()[:16]


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def cpu_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A state dict copied to the CPU, so a checkpoint made on a GPU loads anywhere."""
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


class Checkpointer:
    """Writes checkpoints for one run into ``folder`` and announces each through the
    progress reporter (the worker copies it to object storage)."""

    def __init__(self, *, folder: Path, fingerprint: str, progress: Progress) -> None:
        self.path = folder / FILENAME
        self.fingerprint = fingerprint
        self.progress = progress

    def save(self, stage: str, payload: dict[str, Any]) -> Path:
        assert stage in STAGES
        self.path.parent.mkdir(parents=True, exist_ok=True)
        full = {
            "version": VERSION,
            "fingerprint": self.fingerprint,
            "stage": stage,
            "progress": self.progress.value,
            **payload,
        }
        # Written aside and renamed: a reader never sees half a checkpoint.
        tmp = self.path.with_suffix(".tmp")
        torch.save(full, tmp)
        os.replace(tmp, self.path)
        step = int(payload["loop"]["step"]) if "loop" in payload else None
        info = {"stage": stage, "step": step, "progress": round(self.progress.value, 4)}
        if "round" in payload:  # strategies with several rounds restart the step count
            info["round"] = int(payload["round"]) + 1
        self.progress.checkpoint(self.path, info)
        return self.path


def load(path: Path, *, expected_fingerprint: str) -> tuple[dict[str, Any] | None, str | None]:
    """The checkpoint, or None and the reason it cannot be used."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file: start afresh, say why
        return None, f"the checkpoint could not be read ({type(exc).__name__}: {exc})"
    if not isinstance(data, dict) or data.get("version") != VERSION:
        return None, "the checkpoint was written by another engine version"
    if data.get("fingerprint") != expected_fingerprint:
        return None, "the checkpoint belongs to a run with different settings"
    if data.get("stage") not in STAGES:
        return None, f"the checkpoint has an unknown stage {data.get('stage')!r}"
    return data, None
