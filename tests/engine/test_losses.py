"""The distillation losses and their registry."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from workers.engine.losses import LOSSES, LossInputs, get_loss, register
from workers.engine.spec import EngineInputError


def _inputs(**kw: object) -> LossInputs:
    base: dict[str, object] = {
        "student_logits": torch.tensor([[2.0, -1.0], [0.5, 0.3]]),
        "labels": torch.tensor([0, 1]),
        "attention_mask": torch.ones(2, 3, dtype=torch.long),
    }
    base.update(kw)
    return LossInputs(**base)  # type: ignore[arg-type]


def test_registry_has_the_builtin_losses() -> None:
    assert {"ce", "kd_kl", "hidden_mse", "attention_kl"} <= set(LOSSES)


def test_unknown_loss_is_an_input_error() -> None:
    with pytest.raises(EngineInputError) as info:
        get_loss("nope")
    assert info.value.code == "not_supported_yet" and "'kd_kl'" in info.value.message


def test_a_new_loss_is_a_new_function() -> None:
    @register("test_zero")
    def zero(inputs: LossInputs) -> torch.Tensor:
        return inputs.student_logits.sum() * 0

    try:
        assert get_loss("test_zero") is zero
    finally:
        LOSSES.pop("test_zero")


def test_ce_matches_torch() -> None:
    inputs = _inputs()
    expected = F.cross_entropy(inputs.student_logits, inputs.labels)
    assert torch.allclose(get_loss("ce")(inputs), expected)


def test_kd_kl_is_zero_for_identical_logits_and_scaled_by_t_squared() -> None:
    logits = torch.tensor([[2.0, -1.0, 0.0], [0.1, 0.2, 0.3]])
    same = _inputs(student_logits=logits, teacher_logits=logits.clone(), temperature=3.0)
    assert get_loss("kd_kl")(same).abs().item() < 1e-6

    teacher = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, -1.0]])
    t = 2.0
    value = get_loss("kd_kl")(_inputs(student_logits=logits, teacher_logits=teacher, temperature=t))
    p = F.softmax(teacher / t, dim=-1)
    q = F.softmax(logits / t, dim=-1)
    manual = (p * (p.log() - q.log())).sum(dim=-1).mean() * t * t
    assert torch.allclose(value, manual, atol=1e-6)


def test_hidden_mse_ignores_padding() -> None:
    mask = torch.tensor([[1, 1, 0]])
    student = [torch.zeros(1, 3, 4)]
    teacher = [torch.zeros(1, 3, 4)]
    teacher[0][0, 2] = 100.0  # a padded position: must not count
    teacher[0][0, 0] = 1.0
    value = get_loss("hidden_mse")(
        _inputs(
            attention_mask=mask,
            student_hidden=student,
            teacher_hidden=teacher,
            projections=nn.ModuleList([nn.Identity()]),
        )
    )
    # One of two real tokens differs by 1 in every feature: mean squared error 0.5.
    assert value.item() == pytest.approx(0.5)


def test_hidden_mse_uses_the_projection() -> None:
    projection = nn.Linear(2, 4)
    student = [torch.randn(1, 3, 2, requires_grad=True)]
    teacher = [torch.randn(1, 3, 4)]
    value = get_loss("hidden_mse")(
        _inputs(
            attention_mask=torch.ones(1, 3, dtype=torch.long),
            student_hidden=student,
            teacher_hidden=teacher,
            projections=nn.ModuleList([projection]),
        )
    )
    value.backward()
    assert projection.weight.grad is not None
    assert student[0].grad is not None


def test_token_losses_skip_positions_labelled_ignore_index() -> None:
    """Per-token logits [batch 1, tokens 3, classes 2]; only the middle token (a word's
    first piece) carries a label, so CE and KL are the single-position values."""
    student = torch.tensor([[[9.0, -9.0], [1.0, 0.0], [-5.0, 5.0]]], requires_grad=True)
    teacher = torch.tensor([[[0.0, 3.0], [0.0, 1.0], [4.0, 0.0]]])
    labels = torch.tensor([[-100, 1, -100]])
    inputs = _inputs(
        student_logits=student,
        labels=labels,
        attention_mask=torch.ones(1, 3, dtype=torch.long),
        teacher_logits=teacher,
        temperature=1.0,
    )
    # CE at the middle token: -log softmax([1, 0])[1] = log(1 + e).
    ce = get_loss("ce")(inputs)
    assert ce.item() == pytest.approx(math.log(1 + math.e))
    # KL(p || q) with p = softmax([0, 1]) = (1 - s, s) and q = softmax([1, 0]) = (s, 1 - s),
    # s = e / (1 + e): log p - log q is (-1, +1), so KL = s - (1 - s).
    s = math.e / (1 + math.e)
    kl = get_loss("kd_kl")(inputs)
    assert kl.item() == pytest.approx(s - (1 - s))
    # The unlabelled positions get no gradient at all.
    (ce + kl).backward()
    assert student.grad is not None
    assert student.grad[0, 0].abs().sum() == 0 and student.grad[0, 2].abs().sum() == 0
    assert student.grad[0, 1].abs().sum() > 0


def test_token_losses_are_zero_not_nan_without_labelled_positions() -> None:
    student = torch.randn(2, 4, 3, requires_grad=True)
    inputs = _inputs(
        student_logits=student,
        labels=torch.full((2, 4), -100),
        attention_mask=torch.ones(2, 4, dtype=torch.long),
        teacher_logits=torch.randn(2, 4, 3),
    )
    for name in ("ce", "kd_kl"):
        value = get_loss(name)(inputs)
        assert value.item() == 0.0
        value.backward()  # still part of the graph


def test_hidden_mse_masks_padding_of_token_batches() -> None:
    """hidden_mse does not depend on the labels: later word pieces (label -100) still
    count, padding (attention 0) does not."""
    mask = torch.tensor([[1, 1, 1, 0]])
    teacher = [torch.zeros(1, 4, 2)]
    teacher[0][0, 2] = 2.0  # a later word piece: counts
    teacher[0][0, 3] = 50.0  # padding: does not
    value = get_loss("hidden_mse")(
        _inputs(
            student_logits=torch.zeros(1, 4, 3),
            labels=torch.tensor([[-100, 1, -100, -100]]),
            attention_mask=mask,
            student_hidden=[torch.zeros(1, 4, 2)],
            teacher_hidden=teacher,
            projections=nn.ModuleList([nn.Identity()]),
        )
    )
    assert value.item() == pytest.approx(4.0 / 3)
