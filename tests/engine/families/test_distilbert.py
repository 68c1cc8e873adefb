"""DistilBERT as a family: its blocks under other names (transformer.layer, q_lin...,
ffn.lin1/lin2) and other config keys (n_layers, dim, hidden_dim, n_heads)."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.jobspec.plan import sizes_from_config
from tests.engine.families.checks import (
    assert_reloads_and_matches,
    assert_silent_neurons_go_exactly,
    pruned,
    sizes_of,
)
from tests.engine.families.tiny_families import distilbert_config, tiny


@pytest.mark.parametrize("tokens", [False, True])
def test_the_config_counts_what_the_model_holds(tokens: bool) -> None:
    model = tiny(distilbert_config(), tokens=tokens)
    sizes = sizes_of(model)  # checked against every layer and the total
    assert (sizes.num_layers, sizes.hidden_size, sizes.intermediate_size) == (4, 32, 64)
    assert sizes.head_dense is not tokens  # pre_classifier on the sequence head only
    as_json = sizes_from_config(model.config.to_dict(), head_dense=not tokens)
    assert as_json == sizes  # what the API computes from config.json


@pytest.mark.parametrize(
    "structured", [("layers",), ("layers", "ffn"), ("layers", "ffn", "hidden")]
)
def test_a_pruned_student_reloads_in_plain_transformers(
    structured: tuple[str, ...], tmp_path: Path
) -> None:
    teacher = tiny(distilbert_config())
    student, plan = pruned(teacher, 0.5, structured)
    config = student.config
    assert (config.n_layers, config.hidden_dim, config.dim) == (
        plan.num_layers,
        plan.intermediate_size,
        plan.hidden_size,
    )
    assert plan.params_ratio < 0.6
    again = assert_reloads_and_matches(student, tmp_path)
    assert again.config.n_layers == plan.num_layers


def test_a_token_classifier_loses_layers_and_ffn(tmp_path: Path) -> None:
    student, _ = pruned(tiny(distilbert_config(), tokens=True), 0.5, ("layers", "ffn"))
    assert_reloads_and_matches(student, tmp_path, tokens=True)


def test_silent_neurons_go_without_changing_the_logits() -> None:
    assert_silent_neurons_go_exactly(tiny(distilbert_config(), seed=1), [0, 5, 17, 63])
