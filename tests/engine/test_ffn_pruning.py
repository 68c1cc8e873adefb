"""FFN-neuron importance and the narrower student built from it."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, PreTrainedModel

from app.jobspec import vocabulary
from app.jobspec.plan import plan_student
from tests.engine.conftest import LABELS
from tests.engine.tiny_models import logits, random_batches, reload, tiny_llama
from workers.engine.criteria import Criterion
from workers.engine.data import Batch, encode, iter_batches, read_jsonl
from workers.engine.importance import get_importance, top_neurons
from workers.engine.layers import encoder_layers, ffn, parameter_counts
from workers.engine.prune_layers import build_student, sizes_from_model
from workers.engine.runtime import Runtime
from workers.engine.spec import EngineInputError
from workers.engine.teacher import load_teacher

CPU = Runtime(torch.device("cpu"))
ZEROED = 5  # the neuron silenced in every layer


@pytest.fixture(scope="module")
def batches(headed_teacher: Path, tiny_splits: tuple[Path, Path]) -> list[Batch]:
    tokenizer = AutoTokenizer.from_pretrained(headed_teacher)
    examples = read_jsonl(tiny_splits[0], num_labels=2, split="train")
    split = encode(tokenizer, examples, max_length=32, split="train")
    stream = iter_batches(split, 16, pad_token_id=0, generator=torch.Generator().manual_seed(0))
    return list(itertools.islice(stream, 3))


@pytest.fixture
def teacher(headed_teacher: Path) -> PreTrainedModel:
    return load_teacher(headed_teacher, LABELS).eval()


def _silence(model: PreTrainedModel, neuron: int) -> None:
    """Zero one FFN neuron's weights (row, bias, column) in every layer."""
    with torch.no_grad():
        for layer in encoder_layers(model):
            part = ffn(model, layer)
            part.up.weight[neuron] = 0
            part.up.bias[neuron] = 0
            part.down.weight[:, neuron] = 0


def test_each_criterion_says_what_it_needs_and_where_its_weights_rank() -> None:
    assert vocabulary.DEFAULT_IMPORTANCE == "taylor"
    for name in vocabulary.IMPORTANCE:
        importance = get_importance(name)
        assert isinstance(importance, Criterion)
        assert importance.name == name
    assert get_importance("magnitude").needs_data is False
    assert get_importance("taylor").needs_data is True
    # Taylor scores estimate the loss a weight costs in any matrix: ranked globally.
    scopes = {name: get_importance(name).scope for name in vocabulary.IMPORTANCE}
    assert scopes == {"taylor": "global", "activation": "per_matrix", "magnitude": "per_matrix"}


def test_unknown_importance_is_an_input_error() -> None:
    with pytest.raises(EngineInputError) as info:
        get_importance("entropy")
    assert (info.value.code, info.value.param) == ("not_supported_yet", "pruning.importance")
    assert "taylor" in info.value.message


@pytest.mark.parametrize("name", ["magnitude", "taylor", "activation"])
def test_a_silenced_neuron_ranks_lowest(
    teacher: PreTrainedModel, batches: list[Batch], name: str
) -> None:
    _silence(teacher, ZEROED)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    scores = get_importance(name).scores(teacher, batches, runtime=CPU)

    assert len(scores) == len(encoder_layers(teacher))
    for layer_scores in scores:
        assert layer_scores.shape == (teacher.config.intermediate_size,)
        assert layer_scores.dtype == torch.float32
        assert layer_scores[ZEROED] == 0
        others = torch.cat([layer_scores[:ZEROED], layer_scores[ZEROED + 1 :]])
        assert bool((others > 0).all())
    kept = top_neurons(scores, teacher.config.intermediate_size - 1)
    assert all(ZEROED not in k.tolist() for k in kept)
    # Scoring leaves the model as it found it: weights, mode, no gradients.
    after = teacher.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not teacher.training
    assert all(p.grad is None for p in teacher.parameters())


def test_taylor_scores_depend_on_the_data(teacher: PreTrainedModel, batches: list[Batch]) -> None:
    taylor = get_importance("taylor")
    one = taylor.scores(teacher, batches[:1], runtime=CPU)
    three = taylor.scores(teacher, batches, runtime=CPU)
    # Absolute values are summed batch by batch, so more batches only add.
    for a, b in zip(one, three, strict=True):
        assert bool((b >= a).all())
        assert not torch.equal(a, b)


def test_top_neurons_are_sorted_and_break_ties_to_the_lower_index() -> None:
    scores = [torch.tensor([0.1, 0.5, 0.5, 0.9, 0.0]), torch.tensor([3.0, 2.0, 1.0, 0.0, 4.0])]
    assert [k.tolist() for k in top_neurons(scores, 2)] == [[1, 3], [0, 4]]
    assert [k.tolist() for k in top_neurons(scores, 3)] == [[1, 2, 3], [0, 1, 4]]


def test_dropping_silenced_neurons_changes_nothing(teacher: PreTrainedModel) -> None:
    """Slicing is exact: removing neurons that contribute nothing keeps the logits."""
    width = teacher.config.intermediate_size
    silenced = list(range(0, width, 2))
    for neuron in silenced:
        _silence(teacher, neuron)
    layers = list(range(teacher.config.num_hidden_layers))
    kept = [torch.tensor([n for n in range(width) if n not in silenced])] * len(layers)
    student = build_student(teacher, layers, kept).eval()
    assert student.config.intermediate_size == width // 2
    ids = torch.tensor([[2, 7, 8, 9, 10, 3], [2, 11, 12, 3, 0, 0]])
    mask = (ids != 0).long()
    with torch.inference_mode():
        expected = teacher(input_ids=ids, attention_mask=mask).logits
        actual = student(input_ids=ids, attention_mask=mask).logits
    assert torch.allclose(expected, actual, atol=1e-6)


def test_ffn_pruned_student_reloads_with_plain_transformers(
    teacher: PreTrainedModel, batches: list[Batch], tmp_path: Path
) -> None:
    counts = parameter_counts(teacher)
    sizes = sizes_from_model(teacher, counts.non_embedding)
    plan = plan_student(sizes, 0.5, ffn=True)
    assert plan.intermediate_size < sizes.intermediate_size  # the FFNs do get narrower
    scores = get_importance("taylor").scores(teacher, batches, runtime=CPU)
    kept = top_neurons([scores[j] for j in plan.layer_map], plan.intermediate_size)
    student = build_student(teacher, plan.layer_map, kept).eval()

    assert parameter_counts(student).non_embedding == plan.non_embedding
    assert student.config.num_hidden_layers == plan.num_layers
    assert student.config.intermediate_size == plan.intermediate_size
    assert teacher.config.intermediate_size == sizes.intermediate_size  # teacher untouched
    for i, j in enumerate(plan.layer_map):
        s_ffn, t_ffn = (
            ffn(student, encoder_layers(student)[i]),
            ffn(teacher, encoder_layers(teacher)[j]),
        )
        assert torch.equal(s_ffn.up.weight, t_ffn.up.weight[kept[i]])
        assert torch.equal(s_ffn.up.bias, t_ffn.up.bias[kept[i]])
        assert torch.equal(s_ffn.down.weight, t_ffn.down.weight[:, kept[i]])
        assert torch.equal(s_ffn.down.bias, t_ffn.down.bias)

    student.save_pretrained(tmp_path)
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    assert reloaded.config.intermediate_size == plan.intermediate_size
    ids = torch.tensor([[2, 7, 8, 9, 3], [2, 10, 3, 0, 0]])
    mask = (ids != 0).long()
    with torch.inference_mode():
        expected = student(input_ids=ids, attention_mask=mask).logits
        actual = reloaded(input_ids=ids, attention_mask=mask).logits
    assert torch.allclose(expected, actual, atol=1e-6)


def test_uneven_or_bad_neuron_sets_are_refused(teacher: PreTrainedModel) -> None:
    with pytest.raises(ValueError, match="same FFN width"):
        build_student(teacher, [1, 3], [torch.arange(8), torch.arange(16)])
    with pytest.raises(ValueError, match="distinct"):
        build_student(teacher, [3], [torch.tensor([1, 1, 2])])
    with pytest.raises(ValueError, match="distinct"):
        build_student(teacher, [3], [torch.tensor([0, 64])])
    with pytest.raises(ValueError, match="neuron sets"):
        build_student(teacher, [1, 3], [torch.arange(8)])


def test_llama_ffn_is_gate_and_up_rows_and_down_columns(tmp_path: Path) -> None:
    """Silent neurons (zero down columns) go without changing the logits; the kept
    ones are the teacher's gate and up rows and down columns."""
    teacher = tiny_llama()
    part = ffn(teacher, encoder_layers(teacher)[0])
    assert part.gate is teacher.model.layers[0].mlp.gate_proj
    assert part.up is teacher.model.layers[0].mlp.up_proj
    assert part.down is teacher.model.layers[0].mlp.down_proj
    width = teacher.config.intermediate_size
    silent = list(range(1, width, 3))
    with torch.no_grad():
        for layer in encoder_layers(teacher):
            ffn(teacher, layer).down.weight[:, silent] = 0
    batches = random_batches()
    scores = get_importance("taylor").scores(teacher, batches, runtime=CPU)
    assert all(s[silent].abs().max() == 0 for s in scores)
    kept = top_neurons(scores, width - len(silent))
    assert all(not set(k.tolist()) & set(silent) for k in kept)
    student = build_student(teacher, [0, 1, 2, 3], kept)
    assert student.config.intermediate_size == width - len(silent)
    for i, (s_layer, t_layer) in enumerate(
        zip(encoder_layers(student), encoder_layers(teacher), strict=True)
    ):
        s_ffn, t_ffn = ffn(student, s_layer), ffn(teacher, t_layer)
        assert s_ffn.gate is not None and t_ffn.gate is not None
        assert torch.equal(s_ffn.gate.weight, t_ffn.gate.weight[kept[i]])
        assert torch.equal(s_ffn.up.weight, t_ffn.up.weight[kept[i]])
        assert torch.equal(s_ffn.down.weight, t_ffn.down.weight[:, kept[i]])
    for batch in batches:
        assert torch.allclose(logits(student, batch), logits(teacher, batch), atol=1e-6)

    counts = parameter_counts(teacher)
    sizes = sizes_from_model(teacher, counts.non_embedding)
    plan = plan_student(sizes, 0.6, ffn=True)
    assert plan.intermediate_size < width and plan.intermediate_size % 8 == 0
    narrow = build_student(
        teacher,
        plan.layer_map,
        top_neurons([scores[j] for j in plan.layer_map], plan.intermediate_size),
    )
    assert parameter_counts(narrow).non_embedding == plan.non_embedding
    reloaded = reload(narrow, tmp_path)
    assert torch.allclose(logits(reloaded, batches[0]), logits(narrow, batches[0]), atol=1e-4)
