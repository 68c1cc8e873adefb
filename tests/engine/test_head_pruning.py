"""Attention-head pruning: Llama query heads under KV groups; BERT refuses it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSequenceClassification, BertTokenizer, PreTrainedModel

from app.jobspec.plan import plan_structured
from tests.engine.conftest import make_spec
from tests.engine.tiny_models import logits, random_batches, reload, tiny_encoder, tiny_llama
from tests.tiny import VOCAB
from workers.engine.compress import compress
from workers.engine.importance import get_importance
from workers.engine.layers import attention, encoder_layers, parameter_counts
from workers.engine.prune_heads import grouped_heads
from workers.engine.prune_layers import selection_for, sizes_from_model, structures_to_score
from workers.engine.prune_width import Selection, build_pruned
from workers.engine.runtime import Runtime
from workers.engine.spec import EngineInputError, PruningSpec

CPU = Runtime(torch.device("cpu"))
GROUP = 4  # the tiny Llama: 8 query heads over 2 KV heads


def _silence_heads(model: PreTrainedModel, heads: list[int]) -> None:
    """Zero the output columns of these query heads in every layer: they add nothing."""
    with torch.no_grad():
        for layer in encoder_layers(model):
            att = attention(model, layer)
            for h in heads:
                att.output.weight[:, h * att.head_dim : (h + 1) * att.head_dim] = 0


def test_grouped_heads_keep_the_best_heads_in_every_kept_group() -> None:
    scores = torch.tensor([0.1, 0.9, 0.5, 0.2, 0.8, 0.0, 0.7, 0.3])
    heads, kv = grouped_heads(scores, group=4, num_heads=4, num_kv_heads=2)
    assert kv.tolist() == [0, 1]
    assert heads.tolist() == [1, 2, 4, 6]  # two per group, the group's best two
    # One group goes: the one whose heads score less in total (1.7 vs 1.8).
    heads, kv = grouped_heads(scores, group=4, num_heads=2, num_kv_heads=1)
    assert kv.tolist() == [1]
    assert heads.tolist() == [4, 6]
    # Ungrouped (BERT-like, or Llama without GQA): heads and KV heads are the same.
    heads, kv = grouped_heads(scores, group=1, num_heads=3, num_kv_heads=3)
    assert heads.tolist() == kv.tolist() == [1, 4, 6]


@pytest.mark.parametrize(("heads", "kv"), [(3, 2), (4, 3), (10, 2), (2, 0)])
def test_grouped_heads_refuse_shapes_a_config_cannot_describe(heads: int, kv: int) -> None:
    with pytest.raises(ValueError):
        grouped_heads(torch.rand(8), group=4, num_heads=heads, num_kv_heads=kv)


def test_removing_silent_query_heads_keeps_the_logits_and_the_kv_groups(tmp_path: Path) -> None:
    teacher = tiny_llama()
    silent = [0, 3, 5, 6]  # two in each KV group
    _silence_heads(teacher, silent)
    batches = random_batches()
    scores = get_importance("activation").structure_scores(
        teacher, batches, runtime=CPU, want=("heads",)
    )
    assert scores.heads is not None
    for layer_scores in scores.heads:
        assert layer_scores[silent].abs().max() == 0
    sizes = sizes_from_model(teacher, parameter_counts(teacher).non_embedding)
    plan = plan_structured(sizes, 0.85, ("layers", "heads"))
    assert (plan.num_layers, plan.num_attention_heads, plan.num_key_value_heads) == (4, 4, 2)
    assert structures_to_score(sizes, plan) == {"heads"}
    selection = selection_for(sizes, plan, scores)
    assert selection.heads is not None and selection.kv_heads is not None
    for kept, kv in zip(selection.heads, selection.kv_heads, strict=True):
        assert kept.tolist() == [1, 2, 4, 7]
        assert kv.tolist() == [0, 1]
    student = build_pruned(teacher, selection)

    config = student.config
    assert (config.num_attention_heads, config.num_key_value_heads, config.head_dim) == (4, 2, 8)
    assert config.hidden_size == 64
    assert parameter_counts(student).non_embedding == plan.non_embedding
    for s_layer, t_layer in zip(encoder_layers(student), encoder_layers(teacher), strict=True):
        s_att, t_att = attention(student, s_layer), attention(teacher, t_layer)
        rows = torch.cat([torch.arange(h * 8, h * 8 + 8) for h in (1, 2, 4, 7)])
        assert torch.equal(s_att.query.weight, t_att.query.weight[rows])
        assert torch.equal(s_att.output.weight, t_att.output.weight[:, rows])
        assert torch.equal(s_att.key.weight, t_att.key.weight)  # both KV heads stay
        assert torch.equal(s_att.value.weight, t_att.value.weight)
    for batch in batches:
        assert torch.allclose(logits(student, batch), logits(teacher, batch), atol=1e-5)
    reloaded = reload(student, tmp_path)
    assert reloaded.config.num_key_value_heads == 2
    assert torch.allclose(logits(reloaded, batches[0]), logits(student, batches[0]), atol=1e-4)


def test_a_silent_kv_group_goes_whole() -> None:
    teacher = tiny_llama(seed=1)
    _silence_heads(teacher, [4, 5, 6, 7])  # every query head of KV head 1
    batches = random_batches()
    scores = get_importance("taylor").structure_scores(
        teacher, batches, runtime=CPU, want=("heads",)
    )
    assert scores.heads is not None
    heads, kv = zip(
        *(grouped_heads(s, group=GROUP, num_heads=4, num_kv_heads=1) for s in scores.heads),
        strict=True,
    )
    assert all(
        h.tolist() == [0, 1, 2, 3] and k.tolist() == [0] for h, k in zip(heads, kv, strict=True)
    )
    student = build_pruned(teacher, Selection(layers=(0, 1, 2, 3), heads=heads, kv_heads=kv))
    assert (student.config.num_attention_heads, student.config.num_key_value_heads) == (4, 1)
    t_att = attention(teacher, encoder_layers(teacher)[0])
    s_att = attention(student, encoder_layers(student)[0])
    assert torch.equal(s_att.key.weight, t_att.key.weight[:8])
    assert torch.equal(s_att.value.weight, t_att.value.weight[:8])
    for batch in batches:
        assert torch.allclose(logits(student, batch), logits(teacher, batch), atol=1e-5)


@pytest.mark.parametrize(
    ("heads", "kv", "message"),
    [
        ([[0, 1, 4]], None, "same number"),  # two from group 0, one from group 1
        ([[0, 1]], [[0, 1]], "same number"),  # KV head 1 kept without its query heads
        ([[0, 1, 4, 5]], [[0]], "same number"),  # query heads of a dropped KV head
        ([[0, 1, 1, 2]], None, "distinct"),
        ([[0, 8]], None, "distinct"),
    ],
)
def test_selections_that_break_kv_groups_are_refused(
    heads: list[list[int]], kv: list[list[int]] | None, message: str
) -> None:
    teacher = tiny_llama()
    selection = Selection(
        layers=(3,),
        heads=[torch.tensor(h) for h in heads],
        kv_heads=None if kv is None else [torch.tensor(k) for k in kv],
    )
    with pytest.raises(ValueError, match=message):
        build_pruned(teacher, selection)


def test_every_layer_keeps_the_same_head_counts() -> None:
    teacher = tiny_llama()
    uneven = [torch.tensor([0, 4]), torch.tensor([0, 1, 4, 5])]
    with pytest.raises(ValueError, match="same number"):
        build_pruned(teacher, Selection(layers=(1, 3), heads=uneven))


def test_bert_heads_at_a_fixed_width_are_an_input_error() -> None:
    teacher = tiny_encoder("bert")
    sizes = sizes_from_model(teacher, parameter_counts(teacher).non_embedding)
    with pytest.raises(EngineInputError) as info:
        plan_structured(sizes, 0.5, ("layers", "heads"))
    assert info.value.code == "pruning_not_possible"
    assert "'hidden'" in info.value.message and "'ffn'" in info.value.message
    # The builder refuses it too: 3 heads of 8 cannot fill a hidden width of 32.
    with pytest.raises(ValueError, match="head size"):
        build_pruned(teacher, Selection(layers=(0,), heads=[torch.tensor([0, 1, 2])]))


@pytest.mark.parametrize(
    ("kv_heads", "ratio", "expected"),
    [(2, 0.8, (4, 4, 2)), (2, 0.6, (3, 4, 2)), (8, 0.75, (4, 4, 4)), (8, 0.55, (3, 4, 4))],
)
def test_head_plans_reload_and_count_as_planned(
    kv_heads: int, ratio: float, expected: tuple[int, int, int], tmp_path: Path
) -> None:
    """Grouped KV heads keep their count and lose query heads; without grouping
    (8 KV heads for 8 query heads) heads go with their KV heads."""
    teacher = tiny_llama(seed=2, num_key_value_heads=kv_heads)
    sizes = sizes_from_model(teacher, parameter_counts(teacher).non_embedding)
    plan = plan_structured(sizes, ratio, ("layers", "heads"))
    assert (plan.num_layers, plan.num_attention_heads, plan.num_key_value_heads) == expected
    scores = get_importance("magnitude").structure_scores(teacher, [], runtime=CPU, want=("heads",))
    student = build_pruned(teacher, selection_for(sizes, plan, scores))
    assert student.config.num_attention_heads == plan.num_attention_heads
    assert student.config.num_key_value_heads == plan.num_key_value_heads
    assert parameter_counts(student).non_embedding == plan.non_embedding
    assert plan.non_embedding >= ratio * sizes.teacher_non_embedding
    batch = random_batches(1)[0]
    reloaded = reload(student, tmp_path)
    assert torch.allclose(logits(reloaded, batch), logits(student, batch), atol=1e-4)


@pytest.fixture(scope="module")
def llama_teacher_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama classifier saved with a WordPiece tokenizer over the tiny vocabulary."""
    folder = tmp_path_factory.mktemp("llama-teacher")
    (folder / "vocab.txt").write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    BertTokenizer.from_pretrained(folder).save_pretrained(folder)
    tiny_llama(seed=7, vocab_size=len(VOCAB), pad_token_id=VOCAB.index("[PAD]")).save_pretrained(
        folder
    )
    return folder


def test_compress_prunes_llama_heads_end_to_end(
    llama_teacher_dir: Path,
    tiny_splits: tuple[Path, Path],
    tmp_path: Path,
) -> None:
    spec = make_spec(
        llama_teacher_dir,
        tiny_splits,
        tmp_path,
        params_ratio=0.5,
        training={"teacher_epochs": 0, "epochs": 1},
        pruning=PruningSpec(structured=("layers", "ffn", "hidden", "heads")),
    )
    result = compress(spec)
    plan = result.metrics["pruning_plan"]
    assert plan["num_attention_heads"] < 8 and plan["num_key_value_heads"] == 2
    assert plan["hidden_size"] % plan["num_attention_heads"] == 0
    paths = {a.name: a.path for a in result.artifacts}
    report = json.loads(paths["report"].read_text())
    assert report["export"]["reload_max_abs_logit_diff"] <= 1e-4
    model = AutoModelForSequenceClassification.from_pretrained(paths["model"], use_safetensors=True)
    assert model.config.num_attention_heads == plan["num_attention_heads"]
    assert model.config.head_dim == 8
    assert result.metrics["params_ratio_non_embedding"] >= 0.5
