"""Self-describing checkpoints: one file holds everything a run needs to continue.

Like nanoGPT's checkpoint dict: weights, optimizer, scheduler, step, RNG states and the
stage the run was in, plus a fingerprint of the spec so that a checkpoint is never
resumed into a different job. Saved with ``torch.save`` and read back with
``weights_only=True``: only tensors and plain containers, nothing that runs code.

What the file holds, stage by stage, and its schema version are ``RunState``'s
(run_state.py); this module writes and reads the file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from workers.engine.progress import Progress
from workers.engine.run_state import LoopState, RunState, UnusableCheckpoint

FILENAME = "checkpoint.pt"
# Spec fields that do not change what a run computes, so a resume may differ in them.
_NOT_FINGERPRINTED = ("device", "latency_threads", "latency_budget_s")
# How many processes train and in how many passes each takes its share of a batch change
# the speed, not the update (train.py): a run checkpointed on 4 GPUs resumes on 1. Whether
# a cached teacher may be used changes where the teacher comes from, not what it is.
_NOT_FINGERPRINTED_TRAINING = (
    "checkpoint_every_steps",
    "devices",
    "gradient_accumulation_steps",
    "teacher_cache",
)

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

    def save(self, state: RunState) -> Path:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        stamped = dataclasses.replace(
            state, fingerprint=self.fingerprint, progress=self.progress.value
        )
        # Written aside and renamed: a reader never sees half a checkpoint.
        tmp = self.path.with_suffix(".tmp")
        torch.save(stamped.to_checkpoint(), tmp)
        os.replace(tmp, self.path)
        info: dict[str, Any] = {
            "stage": state.stage,
            "step": state.step,
            "progress": round(self.progress.value, 4),
        }
        if state.distilling is not None:  # strategies with several rounds restart the step count
            info["round"] = state.distilling.round + 1
        self.progress.checkpoint(self.path, info)
        return self.path

    def resume(self, path: Path | None) -> RunState | None:
        """The state to continue from, if ``path`` names a checkpoint of this run; a
        resumed run reports the progress it had before it reports anything else. One
        that cannot be used is named in a warning and the run starts afresh."""
        if path is None:
            return None
        state, problem = load(path, expected_fingerprint=self.fingerprint)
        if state is None:
            self.progress.log(f"starting afresh: {problem}", level="warning")
            return None
        at = f" at step {state.step}" if state.step is not None else ""
        self.progress.log(
            f"resuming from the checkpoint made in {state.stage}{at}",
            data={"stage": state.stage, "step": state.step, "progress": state.progress},
        )
        self.progress.resume_at(state.progress)
        return state


def load(path: Path, *, expected_fingerprint: str) -> tuple[RunState | None, str | None]:
    """The checkpoint's state, or None and the reason it cannot be used."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file: start afresh, say why
        return None, f"the checkpoint could not be read ({type(exc).__name__}: {exc})"
    try:
        state = RunState.from_checkpoint(data)
    except UnusableCheckpoint as exc:
        return None, str(exc)
    if state.fingerprint != expected_fingerprint:
        return None, "the checkpoint belongs to a run with different settings"
    return state, None
