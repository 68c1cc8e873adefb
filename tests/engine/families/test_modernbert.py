"""ModernBERT as a family: global and local attention alternating by layer, a gated FFN
whose input and gate rows share one projection (Wi), and a first layer without an
attention norm, which every student keeps first."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from app.jobspec.plan import check_structured, layers_for, sizes_from_config
from tests.engine.families.checks import (
    assert_reloads_and_matches,
    assert_silent_neurons_go_exactly,
    pruned,
    sizes_of,
)
from tests.engine.families.tiny_families import modernbert_config, tiny
from tests.engine.tiny_models import logits, random_batches
from workers.engine.layers import encoder_layers, ffn
from workers.engine.neurons import NeuronPruner, NeuronSchedule
from workers.engine.prune_width import Selection, build_pruned
from workers.engine.spec import EngineInputError

BIASED = {"norm_bias": True, "attention_bias": True, "mlp_bias": True, "classifier_bias": True}


@pytest.mark.parametrize("tokens", [False, True])
@pytest.mark.parametrize("settings", [{}, BIASED], ids=["bias-free", "biased"])
def test_the_config_counts_what_the_model_holds(tokens: bool, settings: dict) -> None:
    model = tiny(modernbert_config(**settings), tokens=tokens)
    sizes = sizes_of(model)  # every layer (the first has one norm fewer) and the total
    assert sizes.head_dense  # ModernBERT's token head has its dense too
    assert sizes_from_config(model.config.to_dict(), head_dense=not tokens) == sizes


def test_students_keep_the_first_layer_and_each_layers_attention_kind() -> None:
    sizes = sizes_of(tiny(modernbert_config()))
    assert layers_for(sizes, "top", 2) == [0, 3]  # not the task's [1, 3]
    assert layers_for(sizes, "top", 1) == [0]
    assert layers_for(sizes, "first_last", 3) == [0, 1, 3]
    teacher = tiny(modernbert_config())
    assert teacher.config.layer_types == [
        "full_attention",
        "sliding_attention",
        "sliding_attention",
        "full_attention",
    ]
    student = build_pruned(teacher, Selection(layers=(0, 2)))
    assert student.config.layer_types == ["full_attention", "sliding_attention"]
    with pytest.raises(ValueError, match="first layer"):
        build_pruned(teacher, Selection(layers=(1, 3)))


@pytest.mark.parametrize("settings", [{}, BIASED], ids=["bias-free", "biased"])
@pytest.mark.parametrize("structured", [("layers",), ("layers", "ffn")])
def test_a_pruned_student_reloads_in_plain_transformers(
    settings: dict, structured: tuple[str, ...], tmp_path: Path
) -> None:
    teacher = tiny(modernbert_config(**settings))
    student, plan = pruned(teacher, 0.5, structured)
    assert plan.layer_map[0] == 0
    assert student.config.num_hidden_layers == plan.num_layers
    assert student.model.layers[0].mlp.Wi.out_features == 2 * plan.intermediate_size
    assert_reloads_and_matches(student, tmp_path)


def test_a_token_classifier_loses_layers_and_ffn(tmp_path: Path) -> None:
    student, _ = pruned(tiny(modernbert_config(), tokens=True), 0.5, ("layers", "ffn"))
    assert_reloads_and_matches(student, tmp_path, tokens=True)


@pytest.mark.parametrize("importance", ["taylor", "activation"])
def test_every_importance_ranks_neurons_across_both_halves(importance: str) -> None:
    teacher = tiny(modernbert_config(mlp_bias=True))
    student, plan = pruned(teacher, 0.5, ("layers", "ffn"), importance=importance)
    assert student.model.layers[0].mlp.Wo.in_features == plan.intermediate_size < 64


@pytest.mark.parametrize("settings", [{}, BIASED], ids=["bias-free", "biased"])
def test_silent_neurons_go_with_both_halves_of_wi(settings: dict) -> None:
    assert_silent_neurons_go_exactly(tiny(modernbert_config(**settings), seed=1), [0, 9, 40, 63])


def test_gradual_masks_zero_both_halves_and_the_cut_student_computes_the_same() -> None:
    model = tiny(modernbert_config(mlp_bias=True), seed=2).train()
    pruner = NeuronPruner(model, NeuronSchedule(final_width=40, begin_step=0, end_step=0))
    batch = random_batches(1, seed=5)[0]
    model(**batch).loss.backward()
    pruner.on_step(0)
    assert pruner.current_width() == 40
    for layer, kept in zip(encoder_layers(model), pruner.kept(), strict=True):
        part = ffn(model, layer)
        gone = torch.ones(64, dtype=torch.bool)
        gone[kept] = False
        assert not part.up.weight[part.unfold(gone)].any()  # input and gate rows
        assert not part.down.weight[:, gone].any()
    layers = tuple(range(4))
    student = build_pruned(model, Selection(layers=layers, neurons=pruner.kept()))
    torch.testing.assert_close(logits(student, batch), logits(model, batch), atol=1e-5, rtol=0)


def test_hidden_width_and_heads_are_refused_as_not_supported_yet() -> None:
    sizes = sizes_of(tiny(modernbert_config()))
    for structure in ("hidden", "heads"):
        refused = f"Pruning '{structure}' of a modernbert teacher is not supported yet"
        with pytest.raises(EngineInputError, match=refused) as info:
            check_structured(sizes, ("layers", structure))
        assert info.value.code == "not_supported_yet"
