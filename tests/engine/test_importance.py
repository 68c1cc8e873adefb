"""Importance rankings find a planted unimportant neuron, head, channel and layer."""

from __future__ import annotations

import pytest
import torch
from transformers import PreTrainedModel

from tests.engine.tiny_models import random_batches, tiny_encoder, tiny_llama
from workers.engine.criteria import STRUCTURES
from workers.engine.importance import get_importance, layer_scores, top_units
from workers.engine.layers import attention, encoder_layers, ffn, residual_norms
from workers.engine.runtime import Runtime

CPU = Runtime(torch.device("cpu"))
SCALE = 1e-3  # "unimportant": scaled down, not zeroed
NEURON, HEAD, CHANNEL, LAYER = 5, 3, 7, 2
STRATEGIES = ("taylor", "activation", "magnitude")


def _model(family: str) -> PreTrainedModel:
    return tiny_llama(seed=3) if family == "llama" else tiny_encoder("bert", seed=3)


def _scale_neuron(model: PreTrainedModel) -> None:
    with torch.no_grad():
        for layer in encoder_layers(model):
            part = ffn(model, layer)
            for lin in part.rows:
                lin.weight[NEURON] *= SCALE
                if lin.bias is not None:
                    lin.bias[NEURON] *= SCALE
            part.down.weight[:, NEURON] *= SCALE


def _scale_head(model: PreTrainedModel) -> None:
    with torch.no_grad():
        for layer in encoder_layers(model):
            att = attention(model, layer)
            rows = slice(HEAD * att.head_dim, (HEAD + 1) * att.head_dim)
            att.query.weight[rows] *= SCALE
            att.output.weight[:, rows] *= SCALE


def _scale_channel(model: PreTrainedModel) -> None:
    with torch.no_grad():
        for norm in residual_norms(model):
            norm.weight[CHANNEL] *= SCALE
            if getattr(norm, "bias", None) is not None:
                norm.bias[CHANNEL] = norm.bias[CHANNEL] * SCALE + SCALE  # BERT's is 0


def _scale_layer(model: PreTrainedModel) -> None:
    """What the layer adds to the residual stream shrinks to almost nothing."""
    with torch.no_grad():
        layer = encoder_layers(model)[LAYER]
        for lin in (attention(model, layer).output, ffn(model, layer).down):
            lin.weight *= SCALE
            if lin.bias is not None:
                lin.bias *= SCALE


def _assert_last(scores: torch.Tensor, planted: int) -> None:
    assert scores.dtype == torch.float32
    assert int(torch.argmin(scores)) == planted, scores
    others = torch.cat([scores[:planted], scores[planted + 1 :]])
    assert bool((others > scores[planted]).all())
    assert planted not in top_units(scores, len(scores) - 1).tolist()


@pytest.mark.parametrize("family", ["bert", "llama"])
@pytest.mark.parametrize("name", STRATEGIES)
def test_a_scaled_down_neuron_ranks_last_in_every_layer(family: str, name: str) -> None:
    model = _model(family)
    _scale_neuron(model)
    scores = get_importance(name).structure_scores(
        model, random_batches(), runtime=CPU, want=("neurons",)
    )
    assert scores.neurons is not None and scores.heads is None and scores.channels is None
    assert len(scores.neurons) == model.config.num_hidden_layers
    for per_layer in scores.neurons:
        assert per_layer.shape == (model.config.intermediate_size,)
        _assert_last(per_layer, NEURON)


@pytest.mark.parametrize("family", ["bert", "llama"])
@pytest.mark.parametrize("name", STRATEGIES)
def test_a_scaled_down_head_ranks_last_in_every_layer(family: str, name: str) -> None:
    model = _model(family)
    _scale_head(model)
    scores = get_importance(name).structure_scores(
        model, random_batches(), runtime=CPU, want=("heads",)
    )
    assert scores.heads is not None
    for per_layer in scores.heads:
        assert per_layer.shape == (model.config.num_attention_heads,)
        _assert_last(per_layer, HEAD)


@pytest.mark.parametrize("family", ["bert", "llama"])
@pytest.mark.parametrize("name", STRATEGIES)
def test_a_scaled_down_channel_ranks_last(family: str, name: str) -> None:
    model = _model(family)
    _scale_channel(model)
    scores = get_importance(name).structure_scores(
        model, random_batches(), runtime=CPU, want=("channels",)
    )
    assert scores.channels is not None
    assert scores.channels.shape == (model.config.hidden_size,)
    _assert_last(scores.channels, CHANNEL)


@pytest.mark.parametrize("family", ["bert", "llama"])
def test_a_layer_that_barely_changes_its_input_ranks_last(family: str) -> None:
    model = _model(family)
    before = layer_scores(model, random_batches(), runtime=CPU)
    _scale_layer(model)
    after = layer_scores(model, random_batches(), runtime=CPU)
    assert after.shape == (model.config.num_hidden_layers,)
    assert bool((before > 0).all())  # every random layer changes its input a little
    _assert_last(after, LAYER)
    others = torch.cat([after[:LAYER], after[LAYER + 1 :]])
    assert float(after[LAYER]) < 0.01 * float(others.min())


@pytest.mark.parametrize("name", STRATEGIES)
def test_classifier_dense_scores_cover_the_pooler(name: str) -> None:
    model = tiny_encoder("roberta")
    with torch.no_grad():
        model.classifier.dense.weight[NEURON] *= SCALE
        model.classifier.dense.bias[NEURON] *= SCALE
        model.classifier.out_proj.weight[:, NEURON] *= SCALE
    scores = get_importance(name).structure_scores(
        model, random_batches(), runtime=CPU, want=("classifier",)
    )
    assert scores.classifier is not None
    _assert_last(scores.classifier, NEURON)
    # A Llama head is a plain projection: nothing to score.
    llama = get_importance(name).structure_scores(
        tiny_llama(), random_batches(), runtime=CPU, want=("classifier",)
    )
    assert llama.classifier is None


@pytest.mark.parametrize("name", STRATEGIES)
def test_scoring_everything_leaves_the_model_as_it_was(name: str) -> None:
    model = tiny_llama()
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    model.model.layers[0].mlp.up_proj.weight.requires_grad_(False)
    flags["model.layers.0.mlp.up_proj.weight"] = False
    scores = get_importance(name).structure_scores(
        model, random_batches(), runtime=CPU, want=STRUCTURES
    )
    assert scores.neurons is not None and scores.heads is not None
    assert scores.channels is not None
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert model.training  # the mode it was in
    assert all(p.grad is None for p in model.parameters())
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags


def test_unknown_structures_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown structures"):
        get_importance("magnitude").structure_scores(tiny_llama(), [], runtime=CPU, want=("rows",))
