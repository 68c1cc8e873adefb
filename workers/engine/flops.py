"""Forward-pass FLOPs per token of a transformer, from its actual module shapes.

The ratio of teacher to student FLOPs is the speed-up that removing structures can
promise at best; the measured latency is compared against it. Counted (one
multiply-accumulate = 2 FLOPs, as ``torch.utils.flop_counter`` counts):

- every ``nn.Linear``: 2 · in · out per row it is applied to. Inside the layers that is
  every token (query, key, value, output; the FFN's dense pair or Llama's gate, up and
  down), at the shapes the modules really have, so a student with narrower FFNs,
  hidden width, fewer heads or fewer key-value heads is counted as it is.
- attention: scores Q·Kᵀ and the weighted sum of values, 2 · 2 · seq_len · heads ·
  head_dim per token per layer (the query projection's width is heads · head_dim;
  grouped key-value heads do not reduce it). Every query against every key, also for
  a causal model (a kernel that skips the masked half does half of this).
- outside the layers: an ELECTRA embedding projection or a token-level head per token;
  a head that reads one token per sequence (BERT's pooler and classifier, RoBERTa's and
  ELECTRA's ``classifier.dense`` and ``out_proj``) once per sequence, so 1/seq_len of
  its FLOPs per token.

Not counted: embedding lookups, norms, activations, softmax, residual additions and
biases (O(width) per token, against O(width²) for the matmuls: under 1% on BERT-base).
"""

from __future__ import annotations

from torch import nn
from transformers import PreTrainedModel

from workers.engine.layers import attention, classifier_dense, encoder_layers


def linear_flops(module: nn.Linear) -> int:
    """FLOPs of one row through ``module``: a multiply-accumulate per weight."""
    return 2 * module.in_features * module.out_features


def flops_per_token(model: PreTrainedModel, seq_len: int) -> int:
    """Forward-pass FLOPs per token at sequence length ``seq_len`` (module docstring)."""
    if seq_len < 1:
        raise ValueError(f"seq_len must be at least 1, got {seq_len}")
    layers = encoder_layers(model)
    total = 0.0
    for layer in layers:
        total += sum(linear_flops(m) for m in layer.modules() if isinstance(m, nn.Linear))
        total += 2 * 2 * seq_len * attention(model, layer).query_width
    in_layers = {id(m) for m in layers.modules()}
    once_per_sequence = _sequence_head_linears(model)
    for module in model.modules():
        if isinstance(module, nn.Linear) and id(module) not in in_layers:
            flops = linear_flops(module)
            total += flops / seq_len if id(module) in once_per_sequence else flops
    return round(total)


def _sequence_head_linears(model: PreTrainedModel) -> set[int]:
    """The linear modules applied to one token per sequence: the pooler, and a
    classification head that reads the pooled (first) token. A Llama head scores every
    position, so it is not among them."""
    found: set[int] = set()
    pooler = getattr(model.base_model, "pooler", None)
    if isinstance(pooler, nn.Module):
        found |= {id(m) for m in pooler.modules() if isinstance(m, nn.Linear)}
    head = classifier_dense(model)
    if head is not None:
        found |= {id(head.up), id(head.down)}
    return found
