"""Choosing layers and building the shallower student."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from tests.engine.tiny_models import logits, random_batches, reload, tiny_llama
from tests.tiny import make_tiny_bert
from workers.engine.layers import encoder_layers, encoder_layers_name, parameter_counts
from workers.engine.prune_layers import build_student, choose_layers, evenly_spaced_layers
from workers.engine.teacher import has_trained_head, head_output_size, load_teacher


@pytest.mark.parametrize(
    ("num_layers", "keep", "expected"),
    [
        (6, 3, [1, 3, 5]),
        (6, 2, [2, 5]),
        (6, 1, [5]),
        (6, 6, [0, 1, 2, 3, 4, 5]),
        (12, 4, [2, 5, 8, 11]),
        (4, 3, [0, 1, 3]),
    ],
)
def test_evenly_spaced_layers(num_layers: int, keep: int, expected: list[int]) -> None:
    assert evenly_spaced_layers(num_layers, keep) == expected


def test_evenly_spaced_layers_rejects_impossible_counts() -> None:
    with pytest.raises(ValueError):
        evenly_spaced_layers(4, 0)
    with pytest.raises(ValueError):
        evenly_spaced_layers(4, 5)


@pytest.fixture(scope="module")
def six_layer_teacher(tmp_path_factory: pytest.TempPathFactory) -> torch.nn.Module:
    folder = make_tiny_bert(tmp_path_factory.mktemp("six"), num_labels=None, num_layers=6)
    return load_teacher(folder, ("a", "b"))


@pytest.mark.parametrize(
    ("ratio", "expected"),
    [(1.0, [0, 1, 2, 3, 4, 5]), (0.5, [1, 3, 5]), (0.3, [2, 5]), (0.25, [2, 5]), (0.01, [5])],
)
def test_choose_layers_meets_the_target_with_the_fewest_layers(
    six_layer_teacher: torch.nn.Module, ratio: float, expected: list[int]
) -> None:
    counts = parameter_counts(six_layer_teacher)
    chosen = choose_layers(six_layer_teacher, ratio, counts.non_embedding)
    assert chosen == expected
    kept = parameter_counts(build_student(six_layer_teacher, chosen)).non_embedding
    assert kept >= ratio * counts.non_embedding
    if len(chosen) > 1:
        fewer = build_student(six_layer_teacher, evenly_spaced_layers(6, len(chosen) - 1))
        assert parameter_counts(fewer).non_embedding < ratio * counts.non_embedding


def test_non_embedding_count_excludes_only_the_embeddings(
    six_layer_teacher: torch.nn.Module,
) -> None:
    counts = parameter_counts(six_layer_teacher)
    embeddings = sum(p.numel() for p in six_layer_teacher.bert.embeddings.parameters())
    assert counts.total == sum(p.numel() for p in six_layer_teacher.parameters())
    assert counts.non_embedding == counts.total - embeddings


def test_student_copies_the_kept_layers(six_layer_teacher: torch.nn.Module, tmp_path: Path) -> None:
    keep = [1, 3, 5]
    student = build_student(six_layer_teacher, keep)
    assert student.config.num_hidden_layers == 3
    assert six_layer_teacher.config.num_hidden_layers == 6  # the teacher is untouched
    s_layers, t_layers = encoder_layers(student), encoder_layers(six_layer_teacher)
    for i, j in enumerate(keep):
        for (name, s_param), (_, t_param) in zip(
            s_layers[i].named_parameters(), t_layers[j].named_parameters(), strict=True
        ):
            assert torch.equal(s_param, t_param), (i, j, name)
            assert s_param.data_ptr() != t_param.data_ptr()  # a copy, not shared storage
    assert torch.equal(
        student.bert.embeddings.word_embeddings.weight,
        six_layer_teacher.bert.embeddings.word_embeddings.weight,
    )
    assert torch.equal(student.classifier.weight, six_layer_teacher.classifier.weight)

    student.save_pretrained(tmp_path)
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    student.eval()
    ids = torch.tensor([[2, 7, 8, 9, 3]])
    with torch.inference_mode():
        assert torch.allclose(student(input_ids=ids).logits, reloaded(input_ids=ids).logits)


def test_head_detection_reads_the_checkpoint(tmp_path: Path) -> None:
    base = make_tiny_bert(tmp_path / "base", num_labels=None)
    two = make_tiny_bert(tmp_path / "two", num_labels=2)
    three = make_tiny_bert(tmp_path / "three", num_labels=3)
    assert head_output_size(base) is None
    assert not has_trained_head(base, 2)
    assert has_trained_head(two, 2)
    assert not has_trained_head(three, 2)  # a head for other labels is not ours
    # ...and loading it for two labels replaces the head instead of failing.
    assert load_teacher(three, ("a", "b")).classifier.out_features == 2


def test_llama_layers_are_found_chosen_and_copied(tmp_path: Path) -> None:
    teacher = tiny_llama()
    layers = encoder_layers(teacher)
    assert layers is teacher.model.layers and len(layers) == 4
    assert encoder_layers_name(teacher) == "model.layers"
    counts = parameter_counts(teacher)
    assert counts.total - counts.non_embedding == teacher.model.embed_tokens.weight.numel()
    keep = choose_layers(teacher, 0.5, counts.non_embedding)
    assert keep == [1, 3]
    student = build_student(teacher, keep)
    assert student.config.num_hidden_layers == 2
    assert parameter_counts(student).non_embedding >= 0.5 * counts.non_embedding
    for i, j in enumerate(keep):
        s_state, t_state = encoder_layers(student)[i].state_dict(), layers[j].state_dict()
        assert s_state.keys() == t_state.keys()
        assert all(torch.equal(s_state[k], t_state[k]) for k in s_state)
    assert torch.equal(student.score.weight, teacher.score.weight)
    assert torch.equal(student.model.norm.weight, teacher.model.norm.weight)
    batch = random_batches(1)[0]
    reloaded = reload(student, tmp_path)
    assert torch.allclose(logits(reloaded, batch), logits(student, batch), atol=1e-5)


@pytest.mark.parametrize(
    ("num_layers", "keep", "expected"),
    [
        (6, 3, [0, 2, 5]),
        (6, 2, [0, 5]),
        (6, 1, [5]),
        (6, 6, [0, 1, 2, 3, 4, 5]),
        (12, 4, [0, 3, 7, 11]),
    ],
)
def test_first_and_last_layers(num_layers: int, keep: int, expected: list[int]) -> None:
    from app.jobspec.plan import first_and_last_layers

    assert first_and_last_layers(num_layers, keep) == expected


def test_each_task_has_a_layer_rule() -> None:
    from app.jobspec.plan import LAYER_RULES
    from workers.engine.tasks import get_task

    assert get_task("sequence-classification").layer_rule == "top"
    assert get_task("token-classification").layer_rule == "first_last"
    assert {
        get_task(t).layer_rule for t in ("sequence-classification", "token-classification")
    } <= set(LAYER_RULES)
