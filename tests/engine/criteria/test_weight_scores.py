"""The scores that decide which single weights are zeroed (each criterion's
``weight_scorer``, workers/engine/criteria/): hand-computed cases."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from workers.engine.criteria.activation import ActivationWeights
from workers.engine.criteria.magnitude import MagnitudeWeights
from workers.engine.criteria.taylor import TaylorMomentumWeights


def linear(weight: list[list[float]]) -> nn.Linear:
    layer = nn.Linear(len(weight[0]), len(weight), bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(weight))
    return layer


def test_magnitude_is_the_absolute_weight():
    layer = linear([[1.0, -2.0], [0.0, 0.5]])
    (scores,) = MagnitudeWeights([layer]).scores()
    assert scores.tolist() == [[1.0, 2.0], [0.0, 0.5]]


def test_taylor_is_w_times_grad_with_momentum():
    layer = linear([[1.0, -2.0, 0.5, 0.0]])
    criterion = TaylorMomentumWeights([layer])
    layer.weight.grad = torch.tensor([[0.5, 0.25, -4.0, 9.0]])
    criterion.observe()
    assert criterion.scores()[0].tolist() == [[0.5, 0.5, 2.0, 0.0]]
    layer.weight.grad = torch.tensor([[-1.0, 0.0, 0.0, 1.0]])
    criterion.observe()
    expected = torch.tensor([[0.9 * 0.5 + 1.0, 0.9 * 0.5, 0.9 * 2.0, 0.0]])
    assert criterion.scores()[0] == pytest.approx(expected)
    layer.weight.grad = None  # a step that did not reach the weight: scores only decay
    criterion.observe()
    assert criterion.scores()[0] == pytest.approx(0.9 * expected)


def test_activation_is_w_times_the_inputs_rms_over_training_batches():
    layer = linear([[1.0, 1.0, -3.0], [2.0, 0.0, 1.0]])
    w = layer.weight.detach().abs()
    criterion = ActivationWeights([layer])
    layer.train()
    # Feature 0 has mean square 2.5, feature 1 is always zero, feature 2 has 4.
    layer(torch.tensor([[[1.0, 0.0, 2.0], [2.0, 0.0, -2.0]]]))
    layer.eval()
    layer(torch.full((1, 3), 100.0))  # an evaluation pass does not count
    criterion.observe()
    rms = torch.tensor([2.5, 0.0, 4.0]).sqrt()
    assert criterion.scores()[0] == pytest.approx(w * rms)
    # A large weight on a dead feature (w[0][1] = 1) scores below a small live one.
    assert criterion.scores()[0][0, 1] == 0 < criterion.scores()[0][1, 2]
    layer.train()
    layer(torch.tensor([[0.0, 2.0, 0.0]]))
    criterion.observe()
    second = 0.9 * torch.tensor([2.5, 0.0, 4.0]) + torch.tensor([0.0, 4.0, 0.0])
    assert criterion.scores()[0] == pytest.approx(w * second.sqrt())
    state = criterion.state_dict()
    criterion.close()
    layer(torch.tensor([[9.0, 9.0, 9.0]]))  # closed: no hook left to count it
    criterion.observe()
    assert criterion.scores()[0] == pytest.approx(w * (0.9 * second).sqrt())
    restored = ActivationWeights([linear([[1.0, 1.0, -3.0], [2.0, 0.0, 1.0]])])
    restored.load_state_dict(state)
    assert restored.scores()[0] == pytest.approx(w * second.sqrt())
    with pytest.raises(ValueError, match="do not fit"):
        ActivationWeights([linear([[1.0, 2.0]])]).load_state_dict(state)
