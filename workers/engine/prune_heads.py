"""Which attention heads a student keeps, from per-head importance scores.

Llama-like models (explicit ``head_dim``, ``num_key_value_heads``): key/value head j
serves query heads j·g ... j·g + g - 1 (``repeat_kv``), so a student describable by
``num_attention_heads`` / ``num_key_value_heads`` keeps the same number of query heads
under every kept KV head. ``grouped_heads`` first keeps the KV groups whose query heads
score highest in total (all of them unless the plan drops groups), then the best query
heads inside each kept group.

BERT-like models tie the attention width to the hidden width; their heads go only with
hidden width (``prune_width``), ``heads = hidden / head_dim``, best-scoring first.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from workers.engine.importance import top_units


def grouped_heads(
    scores: torch.Tensor, *, group: int, num_heads: int, num_kv_heads: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(query heads, KV heads) kept in one layer, both ascending.

    ``scores`` has one entry per teacher query head, ``group`` query heads per KV head;
    the student has ``num_heads`` query heads over ``num_kv_heads`` KV heads.
    """
    teacher_kv = len(scores) // group
    if num_kv_heads < 1 or num_kv_heads > teacher_kv or num_heads % num_kv_heads:
        raise ValueError(
            f"{num_heads} query heads over {num_kv_heads} KV heads do not fit a teacher "
            f"with {teacher_kv} KV heads of {group} query heads each"
        )
    per_group = num_heads // num_kv_heads
    if per_group > group:
        raise ValueError(f"{per_group} query heads per KV head, the teacher has {group}")
    by_group = scores.view(teacher_kv, group)
    kv = top_units(by_group.sum(dim=1), num_kv_heads)
    heads = [j * group + top_units(by_group[j], per_group) for j in kv.tolist()]
    return torch.cat(heads), kv


def select_heads(
    scores: Sequence[torch.Tensor], *, group: int, num_heads: int, num_kv_heads: int
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """``grouped_heads`` for each layer's scores."""
    chosen = [
        grouped_heads(s, group=group, num_heads=num_heads, num_kv_heads=num_kv_heads)
        for s in scores
    ]
    return [h for h, _ in chosen], [kv for _, kv in chosen]
