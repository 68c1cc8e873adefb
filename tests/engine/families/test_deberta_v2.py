"""DeBERTa-v2/v3 as a family: BERT's blocks with disentangled attention over relative
positions, whose embeddings (and their LayerNorm) sit outside the layers and go with
none of them."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from app.jobspec.plan import check_structured, sizes_from_config
from tests.engine.families.checks import (
    assert_reloads_and_matches,
    assert_silent_neurons_go_exactly,
    pruned,
    sizes_of,
)
from tests.engine.families.tiny_families import deberta_v3_config, tiny
from workers.engine.spec import EngineInputError

# DeBERTa-v2's own settings: unshared keys (a pos_key_proj and a pos_query_proj per
# layer), plain relative distances instead of buckets, a convolution beside layer 0.
V2 = {
    "share_att_key": False,
    "position_buckets": -1,
    "max_relative_positions": 16,
    "norm_rel_ebd": "none",
    "conv_kernel_size": 3,
}


@pytest.mark.parametrize("tokens", [False, True])
@pytest.mark.parametrize("settings", [{}, V2], ids=["v3", "v2"])
def test_the_config_counts_what_the_model_holds(tokens: bool, settings: dict) -> None:
    model = tiny(deberta_v3_config(**settings), tokens=tokens)
    sizes = sizes_of(model)  # checked against every layer and the total
    assert sizes.layout.hidden_rows == (16 if not settings else 32)
    assert sizes_from_config(model.config.to_dict(), head_dense=not tokens) == sizes


@pytest.mark.parametrize("settings", [{}, V2], ids=["v3", "v2"])
@pytest.mark.parametrize("structured", [("layers",), ("layers", "ffn")])
def test_a_pruned_student_reloads_in_plain_transformers(
    settings: dict, structured: tuple[str, ...], tmp_path: Path
) -> None:
    teacher = tiny(deberta_v3_config(**settings))
    student, plan = pruned(teacher, 0.6, structured)
    assert student.config.num_hidden_layers == plan.num_layers
    assert student.config.intermediate_size == plan.intermediate_size
    # The relative position table is shared by all layers: copied whole.
    rel = student.deberta.encoder.rel_embeddings.weight
    torch.testing.assert_close(rel, teacher.deberta.encoder.rel_embeddings.weight)
    assert student.config.position_buckets == teacher.config.position_buckets
    assert_reloads_and_matches(student, tmp_path)


def test_a_token_classifier_loses_layers_and_ffn(tmp_path: Path) -> None:
    student, _ = pruned(tiny(deberta_v3_config(), tokens=True), 0.5, ("layers", "ffn"))
    assert_reloads_and_matches(student, tmp_path, tokens=True)


def test_silent_neurons_go_without_changing_the_logits() -> None:
    assert_silent_neurons_go_exactly(tiny(deberta_v3_config(), seed=1), [1, 2, 30, 63])


def test_hidden_width_is_refused_as_not_supported_yet() -> None:
    sizes = sizes_of(tiny(deberta_v3_config()))
    with pytest.raises(EngineInputError, match="Pruning 'hidden' of a deberta-v2 teacher") as info:
        check_structured(sizes, ("layers", "hidden"))
    assert info.value.code == "not_supported_yet"
    with pytest.raises(EngineInputError, match="derives the head size"):
        check_structured(sizes, ("layers", "heads"))
