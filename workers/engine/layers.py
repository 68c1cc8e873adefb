"""Where a model keeps its layers, embeddings, FFNs, attention and norms, and how many
parameters each holds: the names its family's adapter gives (``families/``), resolved
on the loaded model. Nothing here tests a model type.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedModel

from app.jobspec import families
from app.jobspec.families import Family, Layout
from workers.engine.spec import EngineInputError


@dataclass(frozen=True)
class ParamCounts:
    total: int
    non_embedding: int


def count_parameters(module: nn.Module) -> int:
    # parameters() yields a tied weight once, so shared tensors are not counted twice.
    return sum(p.numel() for p in module.parameters())


def family(model: PreTrainedModel) -> Family:
    return families.for_config(model.config)


def layout(model: PreTrainedModel) -> Layout:
    """The parameter layout of this model, its task head included."""
    config = model.config.to_dict()
    return family(model).layout(config, head_dense=classifier_dense(model) is not None)


def find(root: nn.Module, path: str) -> object:
    """The module at a dotted attribute path (None where any part is missing)."""
    found: object = root
    for part in path.split("."):
        found = getattr(found, part, None)
    return found


def _layer_list(model: PreTrainedModel) -> object:
    return find(model.base_model, family(model).layers)


def encoder_layers(model: PreTrainedModel) -> nn.ModuleList:
    """The transformer blocks, in order (an encoder's or a decoder's)."""
    layers = _layer_list(model)
    if not isinstance(layers, nn.ModuleList) or len(layers) == 0:
        raise EngineInputError(
            "unsupported_architecture",
            f"{type(model).__name__} has no layer list ({family(model).layers}) that "
            "layer pruning can shorten",
        )
    return layers


@dataclass(frozen=True)
class FFN:
    """One layer's feed-forward network: neuron j is row j of ``up`` (and of ``gate``,
    when gated), their biases, and column j of ``down``. The input of ``down`` is the
    activated intermediate tensor, [batch, tokens, neurons]."""

    up: nn.Linear
    down: nn.Linear
    # State-dict names of the weights relative to the layer, e.g. "intermediate.dense".
    up_name: str
    down_name: str
    gate: nn.Linear | None = None
    gate_name: str | None = None
    # Blocks of neuron rows stacked in ``up``: 2 when it holds [input; gate] (neuron j
    # is rows j and F + j), else 1.
    halves: int = 1

    @property
    def rows(self) -> list[nn.Linear]:
        """The projections whose output rows are neurons."""
        return [self.up] if self.gate is None else [self.gate, self.up]

    @property
    def width(self) -> int:
        """Neurons: the inputs of ``down``."""
        return self.down.in_features

    def fold(self, per_row: torch.Tensor) -> torch.Tensor:
        """A per-row quantity of ``up`` (or ``gate``), summed per neuron."""
        return per_row.view(self.halves, -1).sum(dim=0) if self.halves > 1 else per_row

    def unfold(self, neurons: torch.Tensor) -> torch.Tensor:
        """A per-neuron mask or index as rows of ``up``."""
        if self.halves == 1:
            return neurons
        if neurons.dtype == torch.bool:
            return neurons.repeat(self.halves)
        return torch.cat([neurons + i * self.width for i in range(self.halves)])


def ffn(model: PreTrainedModel, layer: nn.Module) -> FFN:
    names = family(model)
    halves = 2 if names.ffn_fused_gate else 1
    up, down = find(layer, names.ffn_up), find(layer, names.ffn_down)
    gate = find(layer, names.ffn_gate) if names.ffn_gate else None
    fits = isinstance(up, nn.Linear) and isinstance(down, nn.Linear)
    if fits and names.ffn_gate is not None:
        fits = isinstance(gate, nn.Linear) and gate.out_features == up.out_features
    if not fits or up.out_features != halves * down.in_features:
        raise EngineInputError(
            "unsupported_architecture",
            f"{type(layer).__name__} has no {names.ffn_up} / {names.ffn_down} that FFN "
            "pruning can narrow",
        )
    return FFN(up, down, names.ffn_up, names.ffn_down, gate, names.ffn_gate, halves)


@dataclass(frozen=True)
class Attention:
    """One layer's attention projections. Query head h is rows h·d ... (h+1)·d - 1 of
    ``query`` and the same columns of ``output``; KV head j (rows of ``key`` and
    ``value``) serves query heads j·g ... (j+1)·g - 1, g = heads / kv_heads."""

    query: nn.Linear
    key: nn.Linear
    value: nn.Linear
    output: nn.Linear
    num_heads: int
    num_kv_heads: int
    head_dim: int

    @property
    def group(self) -> int:
        return self.num_heads // self.num_kv_heads

    @property
    def query_width(self) -> int:
        return self.num_heads * self.head_dim


def attention(model: PreTrainedModel, layer: nn.Module) -> Attention:
    """One layer's attention. A fused projection (ModernBERT's Wqkv) is ``query``,
    ``key`` and ``value`` at once; families with one declare heads and hidden
    unsupported, so only its widths are read."""
    names = family(model)
    config = model.config.to_dict()
    heads = int(config[names.keys.heads])
    kv = heads
    if names.layout(config, head_dense=True).explicit_heads:
        kv = int(config.get("num_key_value_heads") or heads)
    projections = [find(layer, n) for n in (names.query, names.key, names.value, names.output)]
    if not all(isinstance(p, nn.Linear) for p in projections):
        raise EngineInputError(
            "unsupported_architecture",
            f"{type(layer).__name__} has no attention projections {names.query}, "
            f"{names.key}, {names.value}, {names.output}",
        )
    query, key, value, output = projections
    assert isinstance(query, nn.Linear) and isinstance(key, nn.Linear)
    assert isinstance(value, nn.Linear) and isinstance(output, nn.Linear)
    return Attention(query, key, value, output, heads, kv, names.head_dim(config))


def residual_norms(model: PreTrainedModel) -> list[nn.Module]:
    """Every norm whose output is the width of the residual stream, outside the layers
    (the embeddings' LayerNorm, a final norm) and in each. Their ``weight`` (and
    ``bias``) are per channel."""
    names = family(model)
    model_norms = () if names.projected_embeddings(model) else names.model_norms
    found = [find(model.base_model, n) for n in model_norms]
    for layer in encoder_layers(model):
        found += [find(layer, n) for n in names.layer_norms]
    # An Identity (ModernBERT's first attention norm) or an absent norm has no channels.
    return [n for n in found if isinstance(getattr(n, "weight", None), nn.Parameter)]


def classifier_dense(model: PreTrainedModel) -> FFN | None:
    """The head's hidden dense and the projection reading it (BERT's pooler and
    classifier; RoBERTa's and ELECTRA's ``classifier.dense`` and ``out_proj``), as an
    FFN whose neurons are that dense's outputs; None for a head without one (Llama)."""
    base = model.base_model_prefix
    for head in family(model).heads:
        dense_name, out_name = (n.replace("{base}", base) for n in (head.dense, head.out))
        dense, out = find(model, dense_name), find(model, out_name)
        if isinstance(dense, nn.Linear) and isinstance(out, nn.Linear):
            return FFN(dense, out, dense_name, out_name)
    return None


def encoder_layers_name(model: PreTrainedModel) -> str:
    """The state-dict prefix of the layer list, e.g. ``bert.encoder.layer``."""
    target = encoder_layers(model)
    for name, module in model.named_modules():
        if module is target:
            return name
    raise AssertionError("encoder layer list not found among the model's modules")


def embeddings_module(model: PreTrainedModel) -> nn.Module:
    embeddings = find(model.base_model, family(model).embeddings)
    if not isinstance(embeddings, nn.Module):
        raise EngineInputError(
            "unsupported_architecture", f"{type(model).__name__} has no embeddings module"
        )
    return embeddings


def embedding_parameters(model: PreTrainedModel) -> int:
    return count_parameters(embeddings_module(model))


def parameter_counts(model: PreTrainedModel) -> ParamCounts:
    """Embeddings scale with the vocabulary, not with depth, so targets are set on the rest
    (encoder, pooler, classifier)."""
    total = count_parameters(model)
    return ParamCounts(total=total, non_embedding=total - embedding_parameters(model))
