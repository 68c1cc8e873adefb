"""Where an encoder keeps its layers and embeddings, and how many parameters each holds.

Every family in ``capabilities.MODEL_TYPES`` keeps its transformer blocks in
``<base>.encoder.layer`` and its embeddings in ``<base>.embeddings``.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn
from transformers import PreTrainedModel

from workers.engine.spec import EngineInputError


@dataclass(frozen=True)
class ParamCounts:
    total: int
    non_embedding: int


def count_parameters(module: nn.Module) -> int:
    # parameters() yields a tied weight once, so shared tensors are not counted twice.
    return sum(p.numel() for p in module.parameters())


def encoder_layers(model: PreTrainedModel) -> nn.ModuleList:
    layers = getattr(getattr(model.base_model, "encoder", None), "layer", None)
    if not isinstance(layers, nn.ModuleList) or len(layers) == 0:
        raise EngineInputError(
            "unsupported_architecture",
            f"{type(model).__name__} has no encoder.layer list that layer pruning can shorten",
        )
    return layers


def encoder_layers_name(model: PreTrainedModel) -> str:
    """The state-dict prefix of the layer list, e.g. ``bert.encoder.layer``."""
    target = encoder_layers(model)
    for name, module in model.named_modules():
        if module is target:
            return name
    raise AssertionError("encoder layer list not found among the model's modules")


def embedding_parameters(model: PreTrainedModel) -> int:
    embeddings = getattr(model.base_model, "embeddings", None)
    if not isinstance(embeddings, nn.Module):
        raise EngineInputError(
            "unsupported_architecture", f"{type(model).__name__} has no embeddings module"
        )
    return count_parameters(embeddings)


def parameter_counts(model: PreTrainedModel) -> ParamCounts:
    """Embeddings scale with the vocabulary, not with depth, so targets are set on the rest
    (encoder, pooler, classifier)."""
    total = count_parameters(model)
    return ParamCounts(total=total, non_embedding=total - embedding_parameters(model))
