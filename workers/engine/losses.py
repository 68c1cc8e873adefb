"""Distillation losses, registered by name: a new loss is a new function here.

Every loss takes the same ``LossInputs`` and returns a scalar in float32 (autocast may
hand over bf16 activations; reductions in bf16 lose too much precision).

The prediction losses (``ce``, ``kd_kl``) work on any task by the shape of the logits:
``[batch, classes]`` with one label per row (sequence classification), or
``[batch, tokens, classes]`` with one label per token, where ``IGNORE_INDEX`` marks the
tokens that carry none (later word pieces, special tokens, padding); those are left out
of both terms, so the teacher's opinion on them is not distilled either.

The representation losses (``hidden_mse``, ``attention_kl``) cover every real token
(the attention mask), whatever its label.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from app.jobspec.registry import Registry
from workers.engine.data import IGNORE_INDEX


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
    # Attention probabilities [batch, heads, queries, keys], aligned by the layer map:
    # student_attentions[i] learns teacher_attentions[i].
    student_attentions: list[torch.Tensor] | None = None
    teacher_attentions: list[torch.Tensor] | None = None


LossFn = Callable[[LossInputs], torch.Tensor]
# vocabulary.LOSSES names them (tests/engine/test_registries.py checks the two agree).
LOSSES: Registry[LossFn] = Registry("loss")
register = LOSSES.register
get_loss = LOSSES.get


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


# Below any probability a float32 softmax of real scores gives; keeps log() finite where
# a model gave a key exactly zero (a masked key, a future token in causal attention).
_PROB_FLOOR = 1e-12


@register("attention_kl")
def attention_kl(inputs: LossInputs) -> torch.Tensor:
    """KL(teacher ‖ student) between attention distributions (MiniLM's self-attention
    transfer), summed over keys, averaged over real query tokens, heads and layer pairs.

    The models hand over probabilities (transformers returns softmax outputs, not
    TinyBERT's pre-softmax scores); each query row is a distribution over keys, so KL is
    the divergence that fits them, is 0 exactly when the maps agree, and does not shrink
    with the sequence length the way an MSE on probabilities of size ~1/length does.

    Padding is masked on both axes: padded query rows are dropped, and the terms of
    padded keys too, so neither their number nor their values change the loss. When the
    student has a different number of heads (hidden-width pruning removes whole heads),
    the maps are averaged over heads on both sides first: the mean of distributions is a
    distribution, and which teacher head a student head came from is not known here.
    """
    if inputs.student_attentions is None or inputs.teacher_attentions is None:
        raise ValueError("attention_kl needs student and teacher attention maps")
    mask = inputs.attention_mask.bool()
    # [batch, 1, queries, keys]: real query rows against real keys.
    real = mask[:, None, :, None] & mask[:, None, None, :]
    real_rows = mask.sum().clamp_min(1).float()
    total = inputs.student_logits.new_zeros((), dtype=torch.float32)
    pairs = list(zip(inputs.student_attentions, inputs.teacher_attentions, strict=True))
    for student_a, teacher_a in pairs:
        student, teacher = student_a.float(), teacher_a.float()
        if student.shape[1] != teacher.shape[1]:
            student = student.mean(dim=1, keepdim=True)
            teacher = teacher.mean(dim=1, keepdim=True)
        # xlogy: a teacher probability of 0 contributes 0, not 0 · log 0 = NaN.
        pointwise = torch.xlogy(teacher, teacher) - teacher * student.clamp_min(_PROB_FLOOR).log()
        # where, not a product with the mask: whatever sits at padded positions (even a
        # NaN) stays out of the value and the gradient.
        kl = torch.where(real, pointwise, 0.0).sum()
        total = total + kl / (real_rows * pointwise.shape[1])
    return total / max(len(pairs), 1)
