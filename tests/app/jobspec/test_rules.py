"""What the release does and what a family allows (app/jobspec/rules.py): each rule's code
and the request field it names, which the API answers with as they are."""

from __future__ import annotations

import pytest

from app.jobspec import families, rules, vocabulary
from app.jobspec.errors import EngineInputError


def _refusal(call) -> tuple[str, str | None]:
    with pytest.raises(EngineInputError) as info:
        call()
    return info.value.code, info.value.param


def test_strategy_and_its_epochs():
    rules.check_strategy("joint", epochs=1)
    assert _refusal(lambda: rules.check_strategy("greedy", epochs=3)) == (
        "not_supported_yet",
        "strategy",
    )
    assert _refusal(lambda: rules.check_strategy("distill_then_prune", epochs=1)) == (
        "too_few_epochs",
        "training.epochs",
    )


def test_cached_logits_leave_no_loss_without_its_teacher_pass():
    rules.check_distillation(hidden_states=False, attention=False, cache_teacher_logits=True)
    refused = _refusal(
        lambda: rules.check_distillation(
            hidden_states=True, attention=False, cache_teacher_logits=True
        )
    )
    assert refused == ("cache_needs_logits_only", "training.cache_teacher_logits")


def test_target_support_and_the_runtime_format():
    support = rules.check_target_support
    support(
        "speedup",
        pattern=None,
        runtime="onnxruntime",
        strategy="prune_then_distill",
        formats=("onnx",),
    )
    assert _refusal(
        lambda: support("speedup", pattern=None, runtime=None, strategy="joint", formats=())
    ) == ("not_supported_yet", "strategy")
    assert _refusal(
        lambda: support(
            "speedup",
            pattern=None,
            runtime="onnxruntime-int8",
            strategy="prune_then_distill",
            formats=("safetensors",),
        )
    ) == ("speedup_runtime_not_exported", "target.runtime")
    assert _refusal(
        lambda: support("sparsity", pattern="4:8", runtime=None, strategy="joint", formats=())
    ) == ("not_supported_yet", "target.pattern")


@pytest.mark.parametrize("kind", ["min_retention", "max_latency_ms"])
def test_a_sweep_is_checked_as_its_speedup_candidates_are(kind):
    support = rules.check_target_support
    # Refused for what its candidates (speedup targets) could not do.
    assert _refusal(
        lambda: support(kind, pattern=None, runtime=None, strategy="joint", formats=())
    ) == ("not_supported_yet", "strategy")
    assert _refusal(
        lambda: support(
            kind,
            pattern=None,
            runtime="onnxruntime",
            strategy="prune_then_distill",
            formats=("safetensors",),
        )
    ) == ("speedup_runtime_not_exported", "target.runtime")
    support(
        kind,
        pattern=None,
        runtime="onnxruntime-int8",
        strategy="prune_then_distill",
        formats=("safetensors", "onnx-int8"),
    )


def test_a_sweep_kind_is_held_back_in_the_vocabulary_alone(monkeypatch):
    monkeypatch.setattr(vocabulary, "TARGETS", vocabulary.SINGLE_TARGET_KINDS)
    assert _refusal(
        lambda: rules.check_target_support(
            "min_retention", pattern=None, runtime=None, strategy="prune_then_distill", formats=()
        )
    ) == ("not_supported_yet", "target.min_retention")


def test_a_feature_held_back_in_the_vocabulary_is_refused_at_once(monkeypatch):
    # Read when the rule runs, not when it was imported.
    monkeypatch.setattr(vocabulary, "TARGETS", ("params_ratio",))
    assert _refusal(
        lambda: rules.check_target_support(
            "sparsity", pattern="unstructured", runtime=None, strategy="joint", formats=()
        )
    ) == ("not_supported_yet", "target.sparsity")
    monkeypatch.setattr(vocabulary, "IMPORTANCE", ("magnitude",))
    assert _refusal(
        lambda: rules.check_pruning(("layers",), importance="taylor", unstructured_sparsity=0)
    ) == ("not_supported_yet", "pruning.importance")


@pytest.mark.parametrize("structured", [("ffn",), ("layers", "rows")])
def test_pruning_includes_layers_and_only_what_the_release_removes(structured):
    assert _refusal(
        lambda: rules.check_pruning(structured, importance="taylor", unstructured_sparsity=0)
    ) == ("not_supported_yet", "pruning.structured")


def test_a_family_refuses_what_it_cannot_lose_and_what_its_config_cannot_describe():
    bert, deberta = families.get("bert"), families.get("deberta-v2")
    rules.check_family(bert, ("layers", "ffn", "hidden"))
    # BERT's config derives the head size from the hidden width: never heads alone.
    assert _refusal(lambda: rules.check_family(bert, ("layers", "heads"))) == (
        "pruning_not_possible",
        "pruning.structured",
    )
    # DeBERTa's adapter does not slice the hidden width yet.
    assert _refusal(lambda: rules.check_family(deberta, ("layers", "hidden"))) == (
        "not_supported_yet",
        "pruning.structured",
    )


def test_the_teacher_and_its_onnx_export():
    assert rules.check_teacher("roberta").name == "roberta"
    assert _refusal(lambda: rules.check_teacher("gpt2")) == (
        "model_unsupported",
        "teacher.model_id",
    )
    rules.check_onnx("bert", ("safetensors", "onnx"))
    rules.check_onnx("gpt2", ("safetensors",))  # no ONNX asked
