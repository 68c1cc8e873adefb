"""FLOPs per token: a hand count on a tiny BERT, and torch's own FLOP counter on every
family and on pruned students."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode
from transformers import PreTrainedModel

from app.jobspec.plan import plan_structured
from tests.engine.tiny_models import VOCAB, random_batches, tiny_encoder, tiny_llama
from workers.engine.evaluate import flops_ratio, model_metrics
from workers.engine.flops import flops_per_token
from workers.engine.importance import get_importance
from workers.engine.layers import parameter_counts
from workers.engine.metrics import ClassificationScores
from workers.engine.prune_layers import selection_for, sizes_from_model, structures_to_score
from workers.engine.prune_width import build_pruned
from workers.engine.runtime import Runtime

CPU = Runtime(torch.device("cpu"))
# The two counts agree exactly on these models (same rule: 2 per multiply-accumulate,
# matmuls only); the margin is for an op a later torch or transformers adds.
TOLERANCE = 0.01


def counted_per_token(model: PreTrainedModel, seq_len: int, batch: int = 2) -> float:
    """torch.utils.flop_counter's total for one forward pass, per token.

    Eager attention: the counter has no formula for the CPU SDPA kernel, so with SDPA it
    would miss the attention matmuls (12% of this tiny BERT at length 16)."""
    model.set_attn_implementation("eager")
    ids = torch.randint(5, VOCAB, (batch, seq_len), generator=torch.Generator().manual_seed(0))
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        model(input_ids=ids, attention_mask=torch.ones_like(ids))
    return counter.get_total_flops() / (batch * seq_len)


def test_hand_count_of_a_tiny_bert() -> None:
    # Hidden 32, FFN 64, 4 heads of 8, 4 layers, a 2-label sequence head.
    model = tiny_encoder("bert")
    seq_len = 16
    linears = 2 * (4 * 32 * 32 + 2 * 32 * 64)  # Q, K, V, O and the FFN pair
    attention = 2 * 2 * seq_len * 32  # scores and weighted sum over 4 heads of 8
    head = (2 * 32 * 32 + 2 * 32 * 2) / seq_len  # pooler and classifier, once a sequence
    assert flops_per_token(model, seq_len) == round(4 * (linears + attention) + head)
    # Only the attention (and the per-sequence head's share) depends on the length.
    longer = flops_per_token(model, 2 * seq_len)
    assert longer - flops_per_token(model, seq_len) == round(4 * attention - head / 2)


FAMILIES: dict[str, Callable[[], PreTrainedModel]] = {
    "bert": lambda: tiny_encoder("bert"),
    "bert-tokens": lambda: tiny_encoder("bert", tokens=True),
    "roberta": lambda: tiny_encoder("roberta"),
    "electra": lambda: tiny_encoder("electra"),  # embeddings of 16 projected to 32
    "llama": lambda: tiny_llama(),  # 8 query heads over 2 key-value heads, gated FFN
}


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("seq_len", [8, 24])
def test_matches_torch_flop_counter(family: str, seq_len: int) -> None:
    model = FAMILIES[family]()
    expected = counted_per_token(model, seq_len)
    assert flops_per_token(model, seq_len) == pytest.approx(expected, rel=TOLERANCE)


@pytest.mark.parametrize(
    ("family", "structured"),
    [
        ("bert", ("layers", "ffn", "hidden")),
        ("llama", ("layers", "ffn", "hidden", "heads")),
    ],
)
def test_pruned_students_are_counted_at_their_real_shapes(
    family: str, structured: tuple[str, ...]
) -> None:
    teacher = FAMILIES[family]()
    sizes = sizes_from_model(teacher, parameter_counts(teacher).non_embedding)
    plan = plan_structured(sizes, 0.5, structured)
    scores = get_importance("magnitude").structure_scores(
        teacher, random_batches(), runtime=CPU, want=structures_to_score(sizes, plan)
    )
    student = build_pruned(teacher, selection_for(sizes, plan, scores))
    seq_len = 16
    ours = flops_per_token(student, seq_len)
    assert ours == pytest.approx(counted_per_token(student, seq_len), rel=TOLERANCE)
    # Half the non-embedding parameters: about half the matmul work.
    ratio = flops_per_token(teacher, seq_len) / ours
    assert 1.5 < ratio < 3.0


def test_seq_len_must_be_positive() -> None:
    with pytest.raises(ValueError, match="seq_len"):
        flops_per_token(tiny_encoder("bert"), 0)


def test_model_metrics_report_flops_at_the_latency_length() -> None:
    teacher, student = tiny_encoder("bert"), tiny_encoder("bert", num_hidden_layers=2)
    scores = ClassificationScores(accuracy=1.0, macro_f1=1.0)
    latency = {1: 1.0, 32: 2.0}
    parts = [
        model_metrics(m, scores, size_bytes=1, latency=latency, seq_len=16)
        for m in (teacher, student)
    ]
    assert parts[0]["flops_per_token"] == flops_per_token(teacher, 16)
    # Two of four identical layers: half the layers' work, the same head.
    assert flops_ratio(*parts) == pytest.approx(2.0, rel=0.01)
    assert "flops_per_token" not in model_metrics(teacher, scores, size_bytes=1, latency=latency)
