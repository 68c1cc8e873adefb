"""Where a model keeps its layers, embeddings, FFNs, attention and norms, and how many
parameters each holds.

Two layouts (``plan.py`` names the families):

- BERT-like encoders keep their blocks in ``<base>.encoder.layer`` and their
  embeddings in ``<base>.embeddings``; each block's FFN is ``intermediate.dense`` (then
  the activation) and ``output.dense``, its attention ``attention.self.{query,key,
  value}`` and ``attention.output.dense``.
- Llama-like decoders keep their blocks in ``<base>.layers`` and their embeddings in
  ``<base>.embed_tokens``; each block's FFN is ``mlp.{gate,up,down}_proj`` and its
  attention ``self_attn.{q,k,v,o}_proj``.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn
from transformers import PreTrainedModel

from workers.engine.plan import LLAMA_TYPES
from workers.engine.spec import EngineInputError


@dataclass(frozen=True)
class ParamCounts:
    total: int
    non_embedding: int


def count_parameters(module: nn.Module) -> int:
    # parameters() yields a tied weight once, so shared tensors are not counted twice.
    return sum(p.numel() for p in module.parameters())


def is_llama(model: PreTrainedModel) -> bool:
    return getattr(model.config, "model_type", None) in LLAMA_TYPES


def _layer_list(model: PreTrainedModel) -> object:
    base = model.base_model
    if is_llama(model):
        return getattr(base, "layers", None)
    return getattr(getattr(base, "encoder", None), "layer", None)


def encoder_layers(model: PreTrainedModel) -> nn.ModuleList:
    """The transformer blocks, in order (an encoder's or a decoder's)."""
    layers = _layer_list(model)
    if not isinstance(layers, nn.ModuleList) or len(layers) == 0:
        raise EngineInputError(
            "unsupported_architecture",
            f"{type(model).__name__} has no layer list (encoder.layer or layers) that "
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

    @property
    def rows(self) -> list[nn.Linear]:
        """The projections whose output rows are neurons."""
        return [self.up] if self.gate is None else [self.gate, self.up]


def ffn(layer: nn.Module) -> FFN:
    mlp = getattr(layer, "mlp", None)
    if mlp is not None:
        gate, up, down = (getattr(mlp, n, None) for n in ("gate_proj", "up_proj", "down_proj"))
        if all(isinstance(m, nn.Linear) for m in (gate, up, down)):
            assert isinstance(gate, nn.Linear) and isinstance(up, nn.Linear)
            assert isinstance(down, nn.Linear)
            if gate.out_features == up.out_features == down.in_features:
                return FFN(up, down, "mlp.up_proj", "mlp.down_proj", gate, "mlp.gate_proj")
    up = getattr(getattr(layer, "intermediate", None), "dense", None)
    down = getattr(getattr(layer, "output", None), "dense", None)
    if not (isinstance(up, nn.Linear) and isinstance(down, nn.Linear)) or (
        up.out_features != down.in_features
    ):
        raise EngineInputError(
            "unsupported_architecture",
            f"{type(layer).__name__} has no intermediate.dense / output.dense (or "
            "mlp.gate_proj / up_proj / down_proj) that FFN pruning can narrow",
        )
    return FFN(up=up, down=down, up_name="intermediate.dense", down_name="output.dense")


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


def attention(model: PreTrainedModel, layer: nn.Module) -> Attention:
    config = model.config
    if is_llama(model):
        block = layer.self_attn
        heads = int(config.num_attention_heads)
        kv = int(getattr(config, "num_key_value_heads", None) or heads)
        head_dim = int(getattr(config, "head_dim", None) or config.hidden_size // heads)
        return Attention(
            block.q_proj, block.k_proj, block.v_proj, block.o_proj, heads, kv, head_dim
        )
    self_attn, out = layer.attention.self, layer.attention.output
    heads = int(config.num_attention_heads)
    head_dim = int(config.hidden_size) // heads
    return Attention(
        self_attn.query, self_attn.key, self_attn.value, out.dense, heads, heads, head_dim
    )


def residual_norms(model: PreTrainedModel) -> list[nn.Module]:
    """Every norm whose output is the width of the residual stream: the embeddings'
    LayerNorm and both per-layer LayerNorms (BERT-like), or both per-layer RMSNorms and
    the final norm (Llama-like). Their ``weight`` (and ``bias``) are per channel."""
    if is_llama(model):
        norms = [n for layer in encoder_layers(model) for n in _llama_norms(layer)]
        return [*norms, model.base_model.norm]
    norms = []
    embeddings = model.base_model.embeddings
    if getattr(model.base_model, "embeddings_project", None) is None:
        norms.append(embeddings.LayerNorm)  # at the hidden width only without a projection
    for layer in encoder_layers(model):
        norms += [layer.attention.output.LayerNorm, layer.output.LayerNorm]
    return norms


def _llama_norms(layer: nn.Module) -> list[nn.Module]:
    return [layer.input_layernorm, layer.post_attention_layernorm]


def classifier_dense(model: PreTrainedModel) -> FFN | None:
    """The head's hidden dense and the projection reading it (BERT's pooler and
    classifier; RoBERTa's and ELECTRA's ``classifier.dense`` and ``out_proj``), as an
    FFN whose neurons are that dense's outputs; None for a head without one (Llama)."""
    pooler = getattr(model.base_model, "pooler", None)
    classifier = getattr(model, "classifier", None)
    if isinstance(pooler, nn.Module) and isinstance(classifier, nn.Linear):
        base = model.base_model_prefix
        return FFN(pooler.dense, classifier, f"{base}.pooler.dense", "classifier")
    dense = getattr(classifier, "dense", None)
    out_proj = getattr(classifier, "out_proj", None)
    if isinstance(dense, nn.Linear) and isinstance(out_proj, nn.Linear):
        return FFN(dense, out_proj, "classifier.dense", "classifier.out_proj")
    return None


def encoder_layers_name(model: PreTrainedModel) -> str:
    """The state-dict prefix of the layer list, e.g. ``bert.encoder.layer``."""
    target = encoder_layers(model)
    for name, module in model.named_modules():
        if module is target:
            return name
    raise AssertionError("encoder layer list not found among the model's modules")


def embeddings_module(model: PreTrainedModel) -> nn.Module:
    base = model.base_model
    embeddings = getattr(base, "embed_tokens" if is_llama(model) else "embeddings", None)
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
