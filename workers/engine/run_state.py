"""What a run can resume from, typed: ``RunState`` and its checkpoint payload.

The payload is one flat, self-describing dict, as in nanoGPT's checkpoints: a schema
version, the spec's fingerprint, the stage, the progress, then the stage's own entries.
``to_checkpoint`` writes it and ``from_checkpoint`` is the only place that reads it
back, so the rest of the engine sees attributes, never string keys.

Schema version 1 is the layout every release so far has written; it is kept as is, so a
job in flight across an upgrade resumes where it was. A payload of any other version
(or one lacking an entry its stage needs) is refused with the reason, and the run
starts afresh: a checkpoint read the wrong way would continue a different run.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal, get_args

import torch

SCHEMA_VERSION = 1
Stage = Literal["teacher_finetune", "teacher_done", "distilling"]
STAGES: tuple[str, ...] = get_args(Stage)

StateDict = dict[str, torch.Tensor]
# A training loop's optimizer, schedule, step, data order and RNG (train.py).
LoopState = dict[str, Any]
# torch's CPU (and CUDA) generator states (checkpoint.rng_state).
RngState = dict[str, Any]
Curve = list[dict[str, float]]


class UnusableCheckpoint(Exception):
    """A payload this engine will not resume from; the message says why."""


@dataclass(frozen=True)
class DistillingState:
    """Where a strategy's rounds stood when a distillation checkpoint was made.

    The student is carried as config and weights, not as the pruning that made it: a
    later round pruned a student the round before had distilled. Field names are the
    payload's keys."""

    round: int  # the round being distilled, from 0
    student_config: dict[str, Any]
    student: StateDict
    layer_map: list[int]
    achieved: float  # the student's share of the teacher's non-embedding parameters
    pruning_plan: dict[str, Any]
    rounds: list[dict[str, Any]]  # the report of every round so far
    speed_plan: dict[str, Any] | None  # a later round prunes to it (distill_then_prune)
    curve_before: Curve  # the distillation curve of the rounds before this one
    sparsity: dict[str, Any] | None  # SparsityPruner.state_dict
    neurons: dict[str, Any] | None  # NeuronPruner.state_dict


_DISTILLING_KEYS = tuple(f.name for f in dataclasses.fields(DistillingState))
_TEACHER_KEYS = ("teacher", "teacher_curve", "teacher_scores")
# The entries each stage's payload holds, besides the header (_HEADER).
_STAGE_KEYS: dict[str, tuple[str, ...]] = {
    "teacher_finetune": ("loop", "teacher"),
    "teacher_done": (*_TEACHER_KEYS, "rng"),
    "distilling": ("loop", *_TEACHER_KEYS, *_DISTILLING_KEYS),
}
_HEADER = ("version", "fingerprint", "stage", "progress")
# RunState's own fields that are payload entries, under the same names.
_ENTRIES = ("loop", *_TEACHER_KEYS, "rng")


@dataclass(frozen=True)
class RunState:
    """What a checkpoint holds, by stage:

    - ``teacher_finetune``: ``loop`` and ``teacher``, its weights so far.
    - ``teacher_done``: the fine-tuned ``teacher`` with its curve and scores, and ``rng``.
    - ``distilling``: ``loop``, ``distilling``, and the fine-tuned teacher with its curve
      and scores (all three None when the teacher came with a trained head).

    ``fingerprint`` and ``progress`` are filled in by the Checkpointer that saves it.
    """

    stage: Stage
    loop: LoopState | None = None
    teacher: StateDict | None = None
    teacher_curve: Curve | None = None
    teacher_scores: dict[str, Any] | None = None  # dataclasses.asdict of the task's scores
    rng: RngState | None = None
    distilling: DistillingState | None = None
    fingerprint: str = ""
    progress: float = 0.0

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ValueError(f"unknown stage {self.stage!r}")
        if (self.stage == "distilling") != (self.distilling is not None):
            raise ValueError("distilling state goes with, and only with, the distilling stage")

    @property
    def step(self) -> int | None:
        """The training step the checkpoint was made at (None between loops)."""
        return int(self.loop["step"]) if self.loop is not None else None

    def to_checkpoint(self) -> dict[str, Any]:
        """The payload ``torch.save`` writes: plain containers and tensors only."""
        entries = {k: getattr(self, k) for k in _ENTRIES}
        if self.distilling is not None:
            entries |= {k: getattr(self.distilling, k) for k in _DISTILLING_KEYS}
        return {
            "version": SCHEMA_VERSION,
            "fingerprint": self.fingerprint,
            "stage": self.stage,
            "progress": self.progress,
            **{k: entries[k] for k in _STAGE_KEYS[self.stage]},
        }

    @classmethod
    def from_checkpoint(cls, data: object) -> RunState:
        """The state a payload describes; ``UnusableCheckpoint`` says why it cannot be."""
        if not isinstance(data, dict):
            raise UnusableCheckpoint(f"the checkpoint holds a {type(data).__name__}, not a dict")
        version = data.get("version")
        if version != SCHEMA_VERSION:
            raise UnusableCheckpoint(
                f"the checkpoint has schema version {version!r} and this engine reads "
                f"version {SCHEMA_VERSION}: it was written by another engine release"
            )
        stage = data.get("stage")
        if stage not in STAGES:
            raise UnusableCheckpoint(f"the checkpoint has an unknown stage {stage!r}")
        missing = [k for k in (*_HEADER, *_STAGE_KEYS[stage]) if k not in data]
        if missing:
            raise UnusableCheckpoint(
                f"the checkpoint made in {stage} lacks {', '.join(missing)}, which schema "
                f"version {SCHEMA_VERSION} requires"
            )
        return cls(
            stage=stage,
            **{k: data.get(k) for k in _ENTRIES},
            distilling=(
                DistillingState(**{k: data[k] for k in _DISTILLING_KEYS})
                if stage == "distilling"
                else None
            ),
            fingerprint=str(data["fingerprint"]),
            progress=float(data["progress"]),
        )
