"""The BERT-like families (BERT, RoBERTa, ELECTRA) through the same checks as the new
families; their pruning in depth is tests/engine/test_width_pruning.py and others."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.jobspec import families
from app.jobspec.plan import sizes_from_config
from tests.engine.families.checks import (
    assert_reloads_and_matches,
    assert_silent_neurons_go_exactly,
    pruned,
    sizes_of,
)
from tests.engine.tiny_models import tiny_encoder

KINDS = ["bert", "roberta", "electra"]


@pytest.mark.parametrize("tokens", [False, True])
@pytest.mark.parametrize("kind", KINDS)
def test_the_config_counts_what_the_model_holds(kind: str, tokens: bool) -> None:
    model = tiny_encoder(kind, tokens=tokens)
    sizes = sizes_of(model)
    assert sizes_from_config(model.config.to_dict(), head_dense=not tokens) == sizes
    assert sizes.family == ("roberta" if kind == "roberta" else "bert")


@pytest.mark.parametrize("kind", KINDS)
def test_a_pruned_student_reloads_in_plain_transformers(kind: str, tmp_path: Path) -> None:
    student, _ = pruned(tiny_encoder(kind), 0.5, ("layers", "ffn", "hidden"))
    assert_reloads_and_matches(student, tmp_path)


def test_silent_neurons_go_without_changing_the_logits() -> None:
    assert_silent_neurons_go_exactly(tiny_encoder("bert", seed=1), [3, 4, 60])


def test_roberta_positions_start_after_the_padding_index() -> None:
    assert families.family_of("xlm-roberta").position_offset
    assert not families.family_of("bert").position_offset
