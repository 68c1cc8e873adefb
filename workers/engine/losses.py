"""Distillation losses, registered by name: a new loss is a new function here.

Every loss takes the same ``LossInputs`` and returns a scalar in float32 (autocast may
hand over bf16 activations; reductions in bf16 lose too much precision).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

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


@register("ce")
def cross_entropy(inputs: LossInputs) -> torch.Tensor:
    return F.cross_entropy(inputs.student_logits.float(), inputs.labels)


@register("kd_kl")
def kd_kl(inputs: LossInputs) -> torch.Tensor:
    """Hinton et al. 2015: T² · KL(teacher/T ‖ student/T).

    The T² keeps the gradient scale independent of the temperature, so alpha means
    the same thing at any T.
    """
    if inputs.teacher_logits is None:
        raise ValueError("kd_kl needs teacher logits")
    t = inputs.temperature
    log_student = F.log_softmax(inputs.student_logits.float() / t, dim=-1)
    teacher = F.softmax(inputs.teacher_logits.float() / t, dim=-1)
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
