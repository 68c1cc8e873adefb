"""DistilBERT, DeBERTa-v2/v3 and ModernBERT export to ONNX, fp32 and int8, through the
engine's exporter (torch.onnx dynamo): one file per model, right at batch sizes and
lengths other than the example's. Each family is exported as a teacher with a sequence
head and as a pruned student (fewer layers, narrower FFN) with a token head; the
exporter's code path does not depend on which role a model plays, so the two cases
cover both roles and both tasks for every family.

The models are built with weights 5x the default initialisation (``initializer_range``
0.1): at the default 0.02, DistilBERT's and DeBERTa's sequence logits are about 0.01
wide, where a logit difference of 1e-4 and an argmax would say little. At 0.1 they are
0.3 to 3 wide, so a wrong graph (a relative position frozen at the example's length, a
window misplaced) shows as a difference a hundred times the bound."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from transformers import PretrainedConfig, PreTrainedModel

from app.jobspec import vocabulary
from tests.engine.families.checks import pruned
from tests.engine.families.tiny_families import (
    deberta_v3_config,
    distilbert_config,
    modernbert_config,
    tiny,
)
from tests.engine.int8_parity import assert_int8_close
from tests.engine.tiny_models import random_batches
from workers.engine import onnx_export
from workers.engine.data import Batch, model_inputs

WIDE = {"initializer_range": 0.1}
# DeBERTa-v2's own settings (tests/engine/families/test_deberta_v2.py): unshared
# position projections per layer, plain relative distances clipped at 16 instead of
# log buckets, a convolution beside layer 0. The v3 settings are the teacher's.
DEBERTA_V2 = {
    "share_att_key": False,
    "position_buckets": -1,
    "max_relative_positions": 16,
    "norm_rel_ebd": "none",
    "conv_kernel_size": 3,
}


def _teacher(config: Callable[..., PretrainedConfig], **settings: object) -> PreTrainedModel:
    return tiny(config(**WIDE, **settings))


def _student(
    config: Callable[..., PretrainedConfig], ratio: float, **settings: object
) -> PreTrainedModel:
    """A token classifier pruned to 3 of 4 layers and narrower FFNs (the ratio that
    plans that shape differs by family): a ModernBERT one keeps layers 0, 1 and 3, a
    local-attention layer among them."""
    teacher = tiny(config(**WIDE, **settings), tokens=True, num_labels=5)
    student, plan = pruned(teacher, ratio, ("layers", "ffn"))
    assert plan.num_layers < 4 and plan.intermediate_size < 64, plan
    return student.eval()


CASES: dict[str, Callable[[], PreTrainedModel]] = {
    "distilbert-teacher-sequence": lambda: _teacher(distilbert_config),
    "distilbert-student-tokens": lambda: _student(distilbert_config, 0.55),
    "deberta-v3-teacher-sequence": lambda: _teacher(deberta_v3_config),
    "deberta-v2-student-tokens": lambda: _student(deberta_v3_config, 0.55, **DEBERTA_V2),
    # ModernBERT checkpoints pool by the mean (ModernBERT-base's config); the default
    # "cls" pooling is what the end-to-end job exports (tests/e2e/test_families_e2e.py).
    "modernbert-teacher-sequence": lambda: _teacher(modernbert_config, classifier_pooling="mean"),
    "modernbert-student-tokens": lambda: _student(modernbert_config, 0.4),
}
# DeBERTa-v3's tokenizer gives token type ids, which its model (type_vocab_size 0) never
# reads: the graph must take them all the same, or the tokenizer's output cannot be fed
# to the session as it is.
TOKEN_TYPES = ("deberta-v3-teacher-sequence",)


def _batches(case: str, *, seed: int, batch: int, length: int) -> list[Batch]:
    batches = random_batches(1, seed=seed, batch=batch, length=length)
    if case in TOKEN_TYPES:
        batches = [{**b, "token_type_ids": b["input_ids"] * 0} for b in batches]
    return batches


@pytest.mark.parametrize("case", list(CASES))
def test_the_family_exports_with_dynamic_axes(case: str, tmp_path: Path) -> None:
    model = CASES[case]()
    assert model.config.model_type in vocabulary.ONNX_MODEL_TYPES
    if case.startswith("modernbert-student"):
        assert "sliding_attention" in model.config.layer_types
    fp32, int8 = tmp_path / "model.onnx", tmp_path / "int8.onnx"
    onnx_export.export_onnx(model, _batches(case, seed=0, batch=4, length=10)[0], fp32)
    onnx_export.quantize_int8(fp32, int8)
    # Neither the example's shape: one row of 5 tokens or fewer, and 7 padded rows of up
    # to 23 (past DeBERTa-v2's 16 relative distances, v3's 4 exact buckets, ModernBERT's
    # 8-token window).
    others = [
        *_batches(case, seed=1, batch=1, length=5),
        *_batches(case, seed=0, batch=7, length=23),
    ]
    inputs = [(name, ["batch", "seq"]) for name in model_inputs(others[0])]
    sessions = [onnx_export.session(path, threads=1) for path in (fp32, int8)]
    for session in sessions:
        assert [(i.name, i.shape) for i in session.get_inputs()] == inputs
    found = onnx_export.parity(model, sessions[0], others)
    assert found.max_abs_logit_diff < 1e-4 and found.argmax_agreement == 1.0, found
    # Random logits tie closer than int8 rounding moves them: tests/engine/int8_parity.py.
    assert_int8_close(model, sessions[1], others)
