"""Distillation losses, registered by name: a new loss is a new function here.

Every loss takes the same ``LossInputs`` and returns a scalar in float32 (autocast may
hand over bf16 activations; reductions in bf16 lose too much precision).

The prediction losses (``ce``, ``kd_kl``) work on any task by the shape of the logits:
``[batch, classes]`` with one label per row (sequence classification), or
``[batch, tokens, classes]`` with one label per token, where ``IGNORE_INDEX`` marks the
tokens that carry none (later word pieces, special tokens, padding); those are left out
of both terms, so the teacher's opinion on them is not distilled either.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from workers.engine.data import IGNORE_INDEX
from workers.engine.spec import EngineInputError


@dataclass
class LossInputs:
    student_logits: torch.Tensor
    labels: torch.Tensor
    attention_mask: torch.Tensor
    teacher_logits: torch.Tensor | None = None
    temperature: float = 1.0
    # Pairs already aligned by the layer map: student_hidden[i] learns teacher_hidden[i].
    student_hidden: list[torch.Tensor] | None = None
    teacher_hidden: list[torch.Tensor] | None = None
    # One projection per pair (nn.Identity when widths match).
    projections: nn.ModuleList | None = None


LossFn = Callable[[LossInputs], torch.Tensor]
LOSSES: dict[str, LossFn] = {}


def register(name: str) -> Callable[[LossFn], LossFn]:
    def add(fn: LossFn) -> LossFn:
        LOSSES[name] = fn
        return fn

    return add


def get_loss(name: str) -> LossFn:
    try:
        return LOSSES[name]
    except KeyError:
        raise EngineInputError(
            "unsupported_loss", f"loss {name!r} is not available; available: {sorted(LOSSES)}"
        ) from None


def labelled_rows(
    inputs: LossInputs,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Student logits, teacher logits and labels as ``[rows, classes]`` / ``[rows]``, one
    row per labelled position: per-token logits are flattened and the positions labelled
    ``IGNORE_INDEX`` dropped; per-sequence logits pass through unchanged."""
    student, teacher, labels = inputs.student_logits, inputs.teacher_logits, inputs.labels
    if student.ndim == 2:
        return student, teacher, labels
    if student.shape[:-1] != labels.shape:
        raise ValueError(
            f"per-token logits {tuple(student.shape)} need labels of shape "
            f"{tuple(student.shape[:-1])}, got {tuple(labels.shape)}"
        )
    classes = student.shape[-1]
    keep = labels.reshape(-1) != IGNORE_INDEX
    flat_teacher = None if teacher is None else teacher.reshape(-1, classes)[keep]
    return student.reshape(-1, classes)[keep], flat_teacher, labels.reshape(-1)[keep]


def _nothing_to_learn(logits: torch.Tensor) -> torch.Tensor:
    # A batch without a labelled position (every word tokenised to nothing): a zero that
    # keeps the graph, rather than the NaN an empty mean gives.
    return logits.float().sum() * 0.0


@register("ce")
def cross_entropy(inputs: LossInputs) -> torch.Tensor:
    student, _, labels = labelled_rows(inputs)
    if labels.numel() == 0:
        return _nothing_to_learn(inputs.student_logits)
    return F.cross_entropy(student.float(), labels)


@register("kd_kl")
def kd_kl(inputs: LossInputs) -> torch.Tensor:
    """Hinton et al. 2015: T² · KL(teacher/T ‖ student/T).

    The T² keeps the gradient scale independent of the temperature, so alpha means
    the same thing at any T.
    """
    if inputs.teacher_logits is None:
        raise ValueError("kd_kl needs teacher logits")
    student_rows, teacher_rows, _ = labelled_rows(inputs)
    assert teacher_rows is not None
    if student_rows.shape[0] == 0:
        return _nothing_to_learn(inputs.student_logits)
    t = inputs.temperature
    log_student = F.log_softmax(student_rows.float() / t, dim=-1)
    teacher = F.softmax(teacher_rows.float() / t, dim=-1)
    # batchmean over labelled rows: per sentence for sequence tasks, per word for
    # token tasks.
    return F.kl_div(log_student, teacher, reduction="batchmean") * (t * t)


@register("hidden_mse")
def hidden_mse(inputs: LossInputs) -> torch.Tensor:
    """MSE between mapped hidden states, averaged over real tokens and layer pairs.

    Padding positions are masked out: their states are meaningless and, with dynamic
    padding, their number depends on the batch.
    """
    if inputs.student_hidden is None or inputs.teacher_hidden is None:
        raise ValueError("hidden_mse needs student and teacher hidden states")
    mask = inputs.attention_mask.unsqueeze(-1).float()
    tokens = mask.sum().clamp_min(1.0)
    total = inputs.student_logits.new_zeros((), dtype=torch.float32)
    pairs = list(zip(inputs.student_hidden, inputs.teacher_hidden, strict=True))
    for i, (student_h, teacher_h) in enumerate(pairs):
        projected = student_h if inputs.projections is None else inputs.projections[i](student_h)
        squared = (projected.float() - teacher_h.float()).pow(2).mean(dim=-1, keepdim=True)
        total = total + (squared * mask).sum() / tokens
    return total / max(len(pairs), 1)
