"""The Llama family (Llama, Mistral, Qwen2) through the same checks as the others; KV
groups and head pruning in depth are tests/engine/test_head_pruning.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import (
    AutoModelForSequenceClassification,
    MistralConfig,
    PretrainedConfig,
    PreTrainedModel,
    Qwen2Config,
)

from app.jobspec.plan import sizes_from_config
from tests.engine.families.checks import (
    assert_reloads_and_matches,
    assert_silent_neurons_go_exactly,
    pruned,
    sizes_of,
)
from tests.engine.tiny_models import tiny_llama


def _decoder(config_class: type[PretrainedConfig]) -> PreTrainedModel:
    """A tiny Qwen2 or Mistral of the tiny Llama's sizes (8 query heads over 2 KV)."""
    config = config_class(
        vocab_size=40, hidden_size=64, intermediate_size=96, num_hidden_layers=4,
        num_attention_heads=8, num_key_value_heads=2, pad_token_id=0, num_labels=2,
    )  # fmt: skip
    return AutoModelForSequenceClassification.from_config(config).eval()


BUILDS = {
    "llama": tiny_llama,
    "qwen2": lambda: _decoder(Qwen2Config),
    "mistral": lambda: _decoder(MistralConfig),
}


@pytest.mark.parametrize("kind", sorted(BUILDS))
def test_the_config_counts_what_the_model_holds(kind: str) -> None:
    model = BUILDS[kind]()
    sizes = sizes_of(model)
    assert sizes.explicit_heads and sizes.family == "llama"
    assert sizes_from_config(model.config.to_dict()) == sizes


@pytest.mark.parametrize("kind", sorted(BUILDS))
def test_a_pruned_student_reloads_in_plain_transformers(kind: str, tmp_path: Path) -> None:
    structured = ("layers", "ffn", "hidden", "heads")
    student, plan = pruned(BUILDS[kind](), 0.5, structured)
    assert student.config.head_dim == plan.head_dim
    assert_reloads_and_matches(student, tmp_path)


def test_silent_neurons_go_with_their_gate_and_up_rows() -> None:
    assert_silent_neurons_go_exactly(tiny_llama(seed=1), [0, 50, 95])
