"""Hidden-width pruning, and every combination of structures on tiny BERT-family models
and a tiny Llama: shapes and config agree, counts match the plan, students reload."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSequenceClassification, PreTrainedModel

from app.jobspec.plan import WIDTH_MULTIPLE, plan_structured
from tests.engine.conftest import RecordingCallback, make_spec
from tests.engine.tiny_models import logits, random_batches, reload, tiny_encoder, tiny_llama
from workers.engine.compress import compress
from workers.engine.importance import get_importance
from workers.engine.layers import attention, encoder_layers, ffn, parameter_counts
from workers.engine.prune_layers import selection_for, sizes_from_model, structures_to_score
from workers.engine.prune_width import Selection, build_pruned, top_channels
from workers.engine.runtime import Runtime
from workers.engine.spec import EngineInputError, PruningSpec

CPU = Runtime(torch.device("cpu"))
BERT_COMBOS = [
    ("layers",),
    ("layers", "ffn"),
    ("layers", "hidden"),
    ("layers", "ffn", "hidden"),
]
LLAMA_COMBOS = [
    *BERT_COMBOS,
    ("layers", "heads"),
    ("layers", "hidden", "heads"),
    ("layers", "ffn", "hidden", "heads"),
]
FAMILIES = {
    "bert": lambda: tiny_encoder("bert"),
    "roberta": lambda: tiny_encoder("roberta"),
    "electra": lambda: tiny_encoder("electra"),  # embeddings of 16 projected to 32
    "electra-unprojected": lambda: tiny_encoder("electra", embedding_size=32),
    "llama": lambda: tiny_llama(),
}
CASES = [(f, c) for f in FAMILIES for c in (LLAMA_COMBOS if f == "llama" else BERT_COMBOS)]


def _student(
    teacher: PreTrainedModel, structured: tuple[str, ...], ratio: float, importance: str
) -> tuple[PreTrainedModel, object, object]:
    sizes = sizes_from_model(teacher, parameter_counts(teacher).non_embedding)
    plan = plan_structured(sizes, ratio, structured)
    want = structures_to_score(sizes, plan)
    batches = random_batches()
    scores = get_importance(importance).structure_scores(teacher, batches, runtime=CPU, want=want)
    return build_pruned(teacher, selection_for(sizes, plan, scores)), plan, sizes


@pytest.mark.parametrize(
    ("family", "structured"), CASES, ids=[f"{f}-{'+'.join(c)}" for f, c in CASES]
)
def test_every_combination_reloads_and_counts_as_planned(
    family: str, structured: tuple[str, ...], tmp_path: Path
) -> None:
    teacher = FAMILIES[family]()
    student, plan, sizes = _student(teacher, structured, 0.5, "taylor")
    config = student.config

    assert parameter_counts(student).non_embedding == plan.non_embedding
    assert plan.non_embedding >= 0.5 * sizes.teacher_non_embedding
    assert config.num_hidden_layers == plan.num_layers == len(encoder_layers(student))
    assert config.hidden_size == plan.hidden_size
    assert config.intermediate_size == plan.intermediate_size
    assert config.num_attention_heads == plan.num_attention_heads
    layer = encoder_layers(student)[0]
    att = attention(student, layer)
    assert att.query.out_features == plan.num_attention_heads * plan.head_dim
    assert att.key.out_features == plan.num_key_value_heads * plan.head_dim
    assert att.output.out_features == plan.hidden_size
    assert ffn(student, layer).up.out_features == plan.intermediate_size
    assert plan.head_dim == sizes.head_dim  # heads keep their size; only their count changes
    if "hidden" not in structured:
        assert plan.hidden_size == sizes.hidden_size
    elif plan.hidden_size < sizes.hidden_size:
        assert plan.hidden_size % WIDTH_MULTIPLE == 0
    if family.startswith("electra"):
        projected = family == "electra"
        assert config.embedding_size == (16 if projected else config.hidden_size)

    batch = random_batches(1, seed=5)[0]
    reloaded = reload(student, tmp_path)
    assert type(reloaded) is type(teacher)
    assert reloaded.config.hidden_size == plan.hidden_size
    assert (logits(reloaded, batch) - logits(student, batch)).abs().max() <= 1e-4


@pytest.mark.parametrize("family", ["bert", "llama"])
def test_the_tiny_plans_do_narrow_what_they_may(family: str) -> None:
    """The matrix above is not vacuous: at 0.5 each width axis allowed does shrink."""
    teacher = FAMILIES[family]()
    sizes = sizes_from_model(teacher, parameter_counts(teacher).non_embedding)
    # 0.6: where a narrower width lands near the target (at 0.5 the tiny BERT's
    # whole-head grid overshoots, and fewer layers land closer: see the test below).
    hidden = plan_structured(sizes, 0.6, ("layers", "hidden"))
    assert hidden.hidden_size < sizes.hidden_size
    if family == "llama":
        every = plan_structured(sizes, 0.5, ("layers", "ffn", "hidden", "heads"))
        assert every.num_layers == sizes.num_layers
        assert every.hidden_size < sizes.hidden_size
        assert every.intermediate_size < sizes.intermediate_size
        assert every.num_attention_heads < sizes.num_heads
        assert every.num_key_value_heads == sizes.num_kv_heads


@pytest.mark.parametrize("kind", ["bert", "roberta", "electra"])
def test_token_classifiers_prune_too(kind: str, tmp_path: Path) -> None:
    """No pooler: the tagging projection reads the residual stream directly."""
    teacher = tiny_encoder(kind, tokens=True)
    sizes = sizes_from_model(teacher, parameter_counts(teacher).non_embedding)
    assert not sizes.head_dense
    student, plan, _ = _student(teacher, ("layers", "ffn", "hidden"), 0.5, "activation")
    assert plan.hidden_size < 32
    assert type(student) is type(teacher)
    assert student.classifier.in_features == plan.hidden_size
    assert parameter_counts(student).non_embedding == plan.non_embedding
    batch = random_batches(1)[0]
    reloaded = reload(student, tmp_path, tokens=True)
    assert type(reloaded) is type(teacher)
    assert (logits(reloaded, batch) - logits(student, batch)).abs().max() <= 1e-4


def test_bert_hidden_pruning_slices_every_tensor_consistently(tmp_path: Path) -> None:
    teacher = tiny_encoder("bert", seed=4)
    student, plan, sizes = _student(teacher, ("layers", "hidden"), 0.6, "activation")
    assert (plan.num_layers, plan.hidden_size, plan.num_attention_heads) == (4, 24, 3)
    scores = get_importance("activation").structure_scores(
        teacher, random_batches(), runtime=CPU, want=("channels", "heads", "classifier")
    )
    selection = selection_for(sizes, plan, scores)
    assert selection.channels is not None and selection.heads is not None
    assert selection.classifier is not None
    channels, cls = selection.channels, selection.classifier
    assert torch.equal(channels, top_channels(scores.channels, 24))

    s, t = student.bert, teacher.bert
    assert torch.equal(
        s.embeddings.word_embeddings.weight, t.embeddings.word_embeddings.weight[:, channels]
    )
    assert torch.equal(
        s.embeddings.position_embeddings.weight,
        t.embeddings.position_embeddings.weight[:, channels],
    )
    assert torch.equal(s.embeddings.LayerNorm.bias, t.embeddings.LayerNorm.bias[channels])
    for i, (s_layer, t_layer) in enumerate(zip(s.encoder.layer, t.encoder.layer, strict=True)):
        rows = torch.cat([torch.arange(h * 8, h * 8 + 8) for h in selection.heads[i].tolist()])
        s_att, t_att = s_layer.attention, t_layer.attention
        for name in ("query", "key", "value"):
            t_lin, s_lin = getattr(t_att.self, name), getattr(s_att.self, name)
            assert torch.equal(s_lin.weight, t_lin.weight[rows][:, channels])
            assert torch.equal(s_lin.bias, t_lin.bias[rows])
        assert torch.equal(s_att.output.dense.weight, t_att.output.dense.weight[channels][:, rows])
        assert torch.equal(
            s_layer.intermediate.dense.weight, t_layer.intermediate.dense.weight[:, channels]
        )
        assert torch.equal(s_layer.output.dense.weight, t_layer.output.dense.weight[channels])
        assert torch.equal(
            s_layer.output.LayerNorm.weight, t_layer.output.LayerNorm.weight[channels]
        )
    assert torch.equal(s.pooler.dense.weight, t.pooler.dense.weight[cls][:, channels])
    assert torch.equal(student.classifier.weight, teacher.classifier.weight[:, cls])
    assert torch.equal(student.classifier.bias, teacher.classifier.bias)
    assert teacher.config.hidden_size == 32  # the teacher is untouched


def test_llama_without_silent_channels_keeps_its_logits(tmp_path: Path) -> None:
    """Channels that carry nothing in the residual stream go without changing a logit:
    the RMSNorm scales are compensated for the narrower mean square."""
    teacher = tiny_llama(seed=6, rms_norm_eps=1e-12)
    silent = torch.arange(3, 64, 4)  # 16 channels
    with torch.no_grad():
        teacher.model.embed_tokens.weight[:, silent] = 0
        for layer in encoder_layers(teacher):
            attention(teacher, layer).output.weight[silent] = 0
            ffn(teacher, layer).down.weight[silent] = 0
    batches = random_batches()
    scores = get_importance("activation").structure_scores(
        teacher, batches, runtime=CPU, want=("channels",)
    )
    assert scores.channels is not None
    assert scores.channels[silent].abs().max() == 0
    kept = top_channels(scores.channels, 48)
    assert not set(kept.tolist()) & set(silent.tolist())
    student = build_pruned(teacher, Selection(layers=(0, 1, 2, 3), channels=kept))

    assert student.config.hidden_size == 48
    assert student.config.head_dim == 8 and student.config.num_attention_heads == 8
    scale = math.sqrt(64 / 48)
    t_norm, s_norm = (
        teacher.model.layers[1].input_layernorm,
        student.model.layers[1].input_layernorm,
    )
    assert torch.allclose(s_norm.weight, t_norm.weight[kept] * scale)
    assert torch.allclose(student.model.norm.weight, teacher.model.norm.weight[kept] * scale)
    assert torch.equal(student.score.weight, teacher.score.weight[:, kept])
    for batch in batches:
        assert torch.allclose(logits(student, batch), logits(teacher, batch), atol=1e-5)
    reloaded = reload(student, tmp_path)
    assert torch.allclose(logits(reloaded, batches[0]), logits(student, batches[0]), atol=1e-4)


def test_bert_selections_a_config_cannot_describe_are_refused() -> None:
    teacher = tiny_encoder("bert")
    channels = torch.arange(16)
    with pytest.raises(ValueError, match="head size"):  # width without heads to match
        build_pruned(teacher, Selection(layers=(0,), channels=channels))
    two_heads = [torch.tensor([0, 1])]
    with pytest.raises(ValueError, match="hidden dense"):  # pooler left at 32
        build_pruned(teacher, Selection(layers=(0,), channels=channels, heads=two_heads))
    with pytest.raises(ValueError, match="distinct"):
        build_pruned(teacher, Selection(layers=(0,), channels=torch.tensor([0, 0, 1])))
    electra = tiny_encoder("electra")  # embeddings of 16
    with pytest.raises(ValueError, match="embedding size"):
        build_pruned(
            electra,
            Selection(layers=(0,), channels=channels, heads=two_heads, classifier=channels),
        )


def test_a_plan_that_narrows_needs_scores() -> None:
    teacher = tiny_llama()
    sizes = sizes_from_model(teacher, parameter_counts(teacher).non_embedding)
    plan = plan_structured(sizes, 0.5, ("layers", "hidden"))
    with pytest.raises(ValueError, match="importance scores"):
        selection_for(sizes, plan, None)
    layers_only = plan_structured(sizes, 0.5, ("layers",))
    assert selection_for(sizes, layers_only, None) == Selection(layers=layers_only.layer_map)


def test_compress_prunes_hidden_width_end_to_end(
    headed_teacher: Path,
    tiny_splits: tuple[Path, Path],
    tmp_path: Path,
) -> None:
    callback = RecordingCallback()
    spec = make_spec(
        headed_teacher,
        tiny_splits,
        tmp_path,
        training={"teacher_epochs": 0, "epochs": 1},
        pruning=PruningSpec(structured=("layers", "ffn", "hidden")),
    )
    result = compress(spec, callback)
    plan = result.metrics["pruning_plan"]
    assert plan["hidden_size"] < 32 and plan["num_attention_heads"] * 8 == plan["hidden_size"]
    assert plan["importance"] == "taylor"
    logs = [d for _, _, d in callback.logs if d and d.get("stage") == "pruning"]
    assert logs[0]["hidden_size"] == plan["hidden_size"]
    assert (
        result.metrics["student"]["non_embedding_parameters"]
        >= 0.5 * (result.metrics["teacher"]["non_embedding_parameters"])
    )
    paths = {a.name: a.path for a in result.artifacts}
    report = json.loads(paths["report"].read_text())
    assert report["export"]["reload_max_abs_logit_diff"] <= 1e-4
    model = AutoModelForSequenceClassification.from_pretrained(paths["model"], use_safetensors=True)
    assert model.config.hidden_size == plan["hidden_size"]


def test_compress_refuses_bert_heads_with_what_to_use_instead(
    headed_teacher: Path,
    tiny_splits: tuple[Path, Path],
    tmp_path: Path,
) -> None:
    spec = make_spec(
        headed_teacher,
        tiny_splits,
        tmp_path,
        training={"teacher_epochs": 0},
        pruning=PruningSpec(structured=("layers", "heads")),
    )
    with pytest.raises(EngineInputError) as info:
        compress(spec)
    assert info.value.code == "pruning_not_possible"
    assert "'hidden'" in info.value.message


def test_a_coarse_width_grid_gives_way_to_depth_when_that_lands_closer() -> None:
    """Tiny BERT's hidden width moves in whole heads (a quarter of it a step): at 0.5 the
    narrowest 4-layer plan keeps 0.66, 2 full layers keep 0.52; the closer one wins."""
    teacher = tiny_encoder("bert", seed=4)
    sizes = sizes_from_model(teacher, parameter_counts(teacher).non_embedding)
    plan = plan_structured(sizes, 0.5, ("layers", "hidden"))
    assert plan.params_ratio - 0.5 < 0.03
    assert (plan.num_layers, plan.hidden_size) == (2, sizes.hidden_size)
