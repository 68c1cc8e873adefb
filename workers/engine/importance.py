"""Importance: which FFN neurons, attention heads, hidden channels and layers a smaller
student keeps.

``get_importance(name)`` returns the criterion ``pruning.importance`` names
(``criteria/``: magnitude, taylor, activation), whose ``structure_scores`` scores the
units of the structures asked for, higher meaning keep (``criteria/units.py`` says what
a unit is); ``top_neurons`` and ``top_units`` keep the highest.

``layer_scores`` ranks whole layers by block importance (Minitron, ShortGPT): one minus
the mean cosine similarity between a layer's input and output hidden states.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from transformers import PreTrainedModel

from workers.engine import criteria
from workers.engine.criteria.units import hooked_passes
from workers.engine.data import Batch
from workers.engine.layers import encoder_layers
from workers.engine.progress import Progress
from workers.engine.runtime import Runtime

get_importance = criteria.get


def top_neurons(scores: Sequence[torch.Tensor], width: int) -> list[torch.Tensor]:
    """Per layer, the indices of the ``width`` highest-scoring units, in ascending
    order (equal scores go to the lower index)."""
    return [top_units(layer_scores, width) for layer_scores in scores]


def top_units(scores: torch.Tensor, count: int) -> torch.Tensor:
    order = torch.argsort(scores, descending=True, stable=True)
    return order[:count].sort().values


def layer_scores(
    model: PreTrainedModel,
    batches: Sequence[Batch],
    *,
    runtime: Runtime,
    progress: Progress | None = None,
) -> torch.Tensor:
    """Block importance per layer: 1 - mean cosine(layer input, layer output) over the
    batches' real tokens. A layer that barely changes its input scores near 0."""
    if not batches:
        raise ValueError("layer importance needs at least one batch")
    layers = encoder_layers(model)
    totals = torch.zeros(len(layers), device=runtime.device)
    mask: list[torch.Tensor] = []

    def hook(index: int):
        def add(_module: nn.Module, args: tuple, kwargs: dict, output: object) -> None:
            before = args[0] if args else kwargs["hidden_states"]
            after = output[0] if isinstance(output, tuple) else output
            assert isinstance(after, torch.Tensor)
            cosine = nn.functional.cosine_similarity(before.float(), after.float(), dim=-1)
            totals[index] += ((1.0 - cosine) * mask[0]).sum()

        return add

    handles = [
        layer.register_forward_hook(hook(i), with_kwargs=True) for i, layer in enumerate(layers)
    ]
    tokens = 0.0
    for batch in hooked_passes(model, batches, runtime=runtime, progress=progress, handles=handles):
        mask[:] = [batch["attention_mask"].float()]
        tokens += float(batch["attention_mask"].sum())
    return (totals / max(tokens, 1.0)).cpu()
