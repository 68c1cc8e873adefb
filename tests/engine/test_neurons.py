"""Gradual FFN-neuron pruning: the schedule of widths, which neurons go, masks that hold,
a cut-away student that computes what the masked one did, and state for resuming."""

from __future__ import annotations

import itertools

import pytest
import torch

from tests.engine.tiny_models import logits, random_batches, reload, tiny_encoder, tiny_llama
from workers.engine.layers import encoder_layers, ffn
from workers.engine.neurons import NeuronPruner, NeuronSchedule, neuron_schedule
from workers.engine.prune_width import Selection, build_pruned


def _train(model, pruner: NeuronPruner, steps: int, *, after=None) -> None:
    """A few real optimizer steps, the pruner called after each as the loop does (then
    ``after(step)``, when given)."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    for step, batch in enumerate(random_batches(steps), start=1):
        loss = model(**batch).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        pruner.on_step(step)
        if after is not None:
            after(step)


def test_width_falls_on_the_cubic_schedule_and_ends_exactly():
    model = tiny_encoder()  # FFN 64
    pruner = NeuronPruner(model, NeuronSchedule(final_width=24, begin_step=2, end_step=12))
    widths = [pruner.width_at(step) for step in range(0, 16)]
    assert widths[:3] == [64, 64, 64]
    assert widths == sorted(widths, reverse=True)
    assert widths[12:] == [24] * 4
    # Cubic: more goes early than late.
    assert widths[2] - widths[7] > widths[7] - widths[12]


def test_default_placement_follows_the_sparsity_schedule():
    s = neuron_schedule(32, 90)
    assert (s.begin_step, s.end_step, s.final_width) == (9, 60, 32)


def test_a_planted_dead_neuron_goes_first_and_masks_never_come_back():
    model = tiny_encoder()
    dead = 5
    with torch.no_grad():
        for layer in encoder_layers(model):
            # Nothing in, nothing out: a neuron that does nothing, and gets no gradient.
            part = ffn(model, layer)
            part.up.weight[dead] = 0.0
            part.up.bias[dead] = 0.0
            part.down.weight[:, dead] = 0.0
    pruner = NeuronPruner(model, NeuronSchedule(final_width=16, begin_step=2, end_step=8))
    seen: list[list[torch.Tensor]] = []

    def check(step: int) -> None:
        seen.append([m.clone() for m in pruner._masks])
        if step == 3:  # the first update that removes (after begin_step) took it
            assert all(not bool(m[dead]) for m in pruner._masks)
            assert 16 < pruner.current_width() < 64

    _train(model, pruner, 10, after=check)
    assert len(seen) == 10
    for before, after in itertools.pairwise(seen):
        for a, b in zip(before, after, strict=True):
            assert not bool((b & ~a).any())  # a masked neuron is never kept again
    assert pruner.frozen and pruner.current_width() == 16
    _assert_masked_rows_are_zero(model, pruner)


def _assert_masked_rows_are_zero(model, pruner: NeuronPruner) -> None:
    for layer, mask in zip(encoder_layers(model), pruner._masks, strict=True):
        part = ffn(model, layer)
        assert part.up.weight.shape[0] == 64  # masked, not yet cut away
        assert bool((part.up.weight[~mask] == 0).all())
        assert bool((part.up.bias[~mask] == 0).all())
        assert bool((part.down.weight[:, ~mask] == 0).all())


@pytest.mark.parametrize("build", [tiny_encoder, tiny_llama], ids=["bert", "llama"])
def test_cutting_the_masked_neurons_away_keeps_the_function(build, tmp_path):
    model = build()
    final = 16 if build is tiny_encoder else 32
    pruner = NeuronPruner(model, NeuronSchedule(final_width=final, begin_step=1, end_step=4))
    _train(model, pruner, 5)
    kept = pruner.kept()
    assert all(len(k) == final for k in kept)
    layers = tuple(range(len(encoder_layers(model))))
    student = build_pruned(model, Selection(layers=layers, neurons=kept))
    assert student.config.intermediate_size == final
    batch = random_batches(1, seed=3)[0]
    assert torch.allclose(logits(student, batch), logits(model, batch), atol=1e-5)
    again = reload(student, tmp_path / "student")
    assert torch.allclose(logits(again, batch), logits(model, batch), atol=1e-5)


def test_state_round_trips_and_refuses_another_target():
    model = tiny_encoder()
    schedule = NeuronSchedule(final_width=24, begin_step=1, end_step=6)
    pruner = NeuronPruner(model, schedule)
    _train(model, pruner, 3)
    state = pruner.state_dict()
    fresh = tiny_encoder(seed=1)
    other = NeuronPruner(fresh, schedule)
    other.load_state_dict(state)
    assert all(torch.equal(a, b) for a, b in zip(other._masks, pruner._masks, strict=True))
    assert other.current_width() == pruner.current_width() < 64
    _assert_masked_rows_are_zero(fresh, other)  # loading applies the masks
    narrower = NeuronPruner(tiny_encoder(), NeuronSchedule(final_width=8, begin_step=1, end_step=6))
    with pytest.raises(ValueError, match="narrows the FFN to 24"):
        narrower.load_state_dict(state)


def test_a_width_above_the_model_is_refused():
    with pytest.raises(ValueError, match="cannot narrow 64"):
        NeuronPruner(tiny_encoder(), NeuronSchedule(final_width=80, begin_step=0, end_step=1))
