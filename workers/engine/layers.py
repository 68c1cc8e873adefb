"""Where an encoder keeps its layers and embeddings, and how many parameters each holds.

Every family in ``capabilities.MODEL_TYPES`` keeps its transformer blocks in
``<base>.encoder.layer`` and its embeddings in ``<base>.embeddings``, and each block's
feed-forward network in ``intermediate`` (``dense`` then the activation) and
``output.dense``.
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


@dataclass(frozen=True)
class FFN:
    """One layer's feed-forward network: neuron j is row j of ``up`` (and its bias), the
    activation's output j, and column j of ``down``."""

    up: nn.Linear
    down: nn.Linear
    # Its output is the activated intermediate tensor, [batch, tokens, neurons].
    activation_output: nn.Module
    # State-dict names of the two weights relative to the layer, e.g. "intermediate.dense".
    up_name: str
    down_name: str


def ffn(layer: nn.Module) -> FFN:
    intermediate = getattr(layer, "intermediate", None)
    up = getattr(intermediate, "dense", None)
    down = getattr(getattr(layer, "output", None), "dense", None)
    if not (isinstance(up, nn.Linear) and isinstance(down, nn.Linear)) or (
        up.out_features != down.in_features
    ):
        raise EngineInputError(
            "unsupported_architecture",
            f"{type(layer).__name__} has no intermediate.dense / output.dense pair that FFN "
            "pruning can narrow",
        )
    assert intermediate is not None
    return FFN(
        up=up,
        down=down,
        activation_output=intermediate,
        up_name="intermediate.dense",
        down_name="output.dense",
    )


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
