"""Building a narrower, shallower student: what it keeps of the teacher (``Selection``)
and the slicing of every tensor that touches a removed structure.

Each parameter's dimensions are tagged with the axis that indexes them ("hidden" for
the residual stream, "ffn" for FFN neurons, "ffn_halves" for a fused [input; gate]
projection's rows, "q" for query-head dimensions, "kv" for key/value-head dimensions,
"cls" for the head's hidden dense), by state-dict name in the family's adapter
(``Family.layer_axes``, ``Family.model_axes``); a tensor matching no rule touches none
and is copied whole. The student is built from an edited config, not by slicing modules in
place, so everything derived from the config is consistent and the saved folder
describes the model exactly; loading is strict, so a tensor the rules missed fails
loudly instead of training from random weights.

Hidden width (``channels``): the same residual channels go from the embeddings, every
norm, every linear map reading or writing the residual stream, and the classifier's
input. Where configs tie the attention width to the hidden width (BERT-like), the kept
heads (whole, at the teacher's head size) must number H' / head_dim, and the pooler
(or classification dense) keeps H' of its outputs (``classifier``). RMSNorms (Llama)
see fewer channels: their scales are multiplied by sqrt(H / H'), which keeps the
normalised scale exactly when the removed channels carry nothing. LayerNorms subtract
a mean as well, so no single factor fixes them; they are left to distillation.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from transformers import PretrainedConfig, PreTrainedModel

from app.jobspec.families import Axes
from workers.engine.layers import (
    attention,
    classifier_dense,
    encoder_layers,
    encoder_layers_name,
    family,
    ffn,
    layout,
)


@dataclass(frozen=True)
class Selection:
    """What a student keeps of the teacher; every index is the teacher's, ascending.

    ``layers[i]`` is the teacher layer student layer i is copied from; the per-layer
    lists below follow the student's layers. ``None`` keeps a structure whole.
    """

    layers: tuple[int, ...]
    neurons: Sequence[torch.Tensor] | None = None
    channels: torch.Tensor | None = None
    # Query heads per layer. Llama-like: as many per kept KV head in every layer.
    heads: Sequence[torch.Tensor] | None = None
    # Llama-like: KV heads per layer (derived from ``heads`` when left out).
    kv_heads: Sequence[torch.Tensor] | None = None
    # Outputs of the head's hidden dense (BERT-like with ``channels``).
    classifier: torch.Tensor | None = None


def resized_config(
    teacher: PreTrainedModel,
    *,
    keep: Sequence[int],
    intermediate_size: int | None = None,
    hidden_size: int | None = None,
    num_heads: int | None = None,
    num_kv_heads: int | None = None,
) -> PretrainedConfig:
    """The teacher's config with the layers in ``keep`` and these sizes (None: the
    teacher's): what a pruned student, or a shape timed for a speed plan, is built from."""
    config = copy.deepcopy(teacher.config)
    keys = family(teacher).keys
    setattr(config, keys.layers, len(keep))
    layer_types = getattr(config, "layer_types", None)
    if isinstance(layer_types, list) and len(layer_types) == len(encoder_layers(teacher)):
        config.layer_types = [layer_types[j] for j in keep]  # global/local attention per layer
    head_dim = attention(teacher, encoder_layers(teacher)[0]).head_dim
    family(teacher).resized(
        config, hidden_size=hidden_size, head_dim=head_dim, num_kv_heads=num_kv_heads
    )
    for key, value in (
        (keys.ffn, intermediate_size),
        (keys.hidden, hidden_size),
        (keys.heads, num_heads),
    ):
        if value is not None:
            setattr(config, key, value)
    return config


def build_pruned(teacher: PreTrainedModel, selection: Selection) -> PreTrainedModel:
    """A fresh model of the teacher's class keeping ``selection``, weights copied in."""
    index = _indices(teacher, selection)
    config = resized_config(
        teacher,
        keep=selection.layers,
        intermediate_size=len(index.neurons[0]) if index.neurons is not None else None,
        hidden_size=len(index.channels) if index.channels is not None else None,
        num_heads=len(index.heads[0]) if index.heads is not None else None,
        num_kv_heads=len(index.kv_heads[0]) if index.kv_heads is not None else None,
    )
    head_dim = attention(teacher, encoder_layers(teacher)[0]).head_dim
    # The teacher's own class: whatever task head it has, the student has too.
    student = type(teacher)._from_config(config, dtype=torch.float32)
    state = _sliced_state(teacher, selection, index, head_dim)
    # strict: a tensor the student does not expect (or lacks) means the rules do not fit
    # this family, and silently training from random weights would hide that.
    student.load_state_dict(state, strict=True)
    return student.to(next(teacher.parameters()).device)


@dataclass(frozen=True)
class _Index:
    neurons: list[torch.Tensor] | None
    channels: torch.Tensor | None
    heads: list[torch.Tensor] | None
    kv_heads: list[torch.Tensor] | None
    classifier: torch.Tensor | None


def _indices(teacher: PreTrainedModel, selection: Selection) -> _Index:
    """The selection as CPU long tensors, checked against what a config can describe."""
    layers = encoder_layers(teacher)
    keep = list(selection.layers)
    if not keep or any(not 0 <= j < len(layers) for j in keep):
        raise ValueError(f"layers must be teacher layers in 0..{len(layers) - 1}, got {keep}")
    att = attention(teacher, layers[0])
    hidden = int(teacher.config.hidden_size)
    neurons = _per_layer("neuron", selection.neurons, keep, ffn(teacher, layers[0]).width)
    if neurons is not None:
        widths = {len(n) for n in neurons}
        if len(widths) != 1:
            raise ValueError(f"every layer must keep the same FFN width, got {sorted(widths)}")
    heads = _per_layer("head", selection.heads, keep, att.num_heads)
    channels = _one("channel", selection.channels, hidden)
    classifier = _one("classifier", selection.classifier, hidden)
    if family(teacher).keeps_first_layer and keep[0] != 0:
        raise ValueError(
            f"a {family(teacher).name} student keeps the teacher's first layer first, "
            f"not layers {keep}"
        )
    kv_heads = None
    if layout(teacher).explicit_heads:
        kv_heads = _kv_heads(att.group, att.num_kv_heads, heads, selection.kv_heads, keep)
    else:
        _check_tied_heads(teacher, att.head_dim, heads, channels, classifier)
    if heads is not None and len({len(h) for h in heads}) != 1:
        raise ValueError("every layer must keep the same number of heads")
    return _Index(neurons, channels, heads, kv_heads, classifier)


def _as_index(name: str, values: torch.Tensor | Sequence[int], full: int) -> torch.Tensor:
    index = torch.as_tensor(values, dtype=torch.long).cpu().flatten()
    count = len(index)
    valid = count >= 1 and len(torch.unique(index)) == count
    if not (valid and int(index.min()) >= 0 and int(index.max()) < full):
        raise ValueError(f"{name} indices must be {count} distinct values in 0..{full - 1}")
    return index.sort().values


def _one(name: str, values: torch.Tensor | None, full: int) -> torch.Tensor | None:
    return None if values is None else _as_index(name, values, full)


def _per_layer(
    name: str, values: Sequence[torch.Tensor] | None, keep: list[int], full: int
) -> list[torch.Tensor] | None:
    if values is None:
        return None
    if len(values) != len(keep):
        raise ValueError(f"{len(values)} {name} sets for {len(keep)} layers")
    return [_as_index(name, v, full) for v in values]


def _kv_heads(
    group: int,
    num_kv: int,
    heads: list[torch.Tensor] | None,
    kv_heads: Sequence[torch.Tensor] | None,
    keep: list[int],
) -> list[torch.Tensor] | None:
    """KV heads per layer, checked so that every kept KV head serves as many kept query
    heads (and only kept KV heads serve them): what ``num_key_value_heads`` describes."""
    if heads is None:
        if kv_heads is not None:
            raise ValueError("KV heads can only be chosen together with their query heads")
        return None
    derived = [torch.unique(h // group) for h in heads]
    given = _per_layer("KV head", kv_heads, keep, num_kv)
    result = given if given is not None else derived
    for layer_heads, owners, kv in zip(heads, derived, result, strict=True):
        per_kv = torch.bincount(layer_heads // group, minlength=num_kv)[kv]
        if not torch.equal(owners, kv) or len(torch.unique(per_kv)) != 1:
            raise ValueError(
                "every kept KV head must keep the same number of its own query heads "
                f"(KV group size {group}); got query heads {layer_heads.tolist()} "
                f"for KV heads {kv.tolist()}"
            )
    if len({len(kv) for kv in result}) != 1:
        raise ValueError("every layer must keep the same number of KV heads")
    return result


def _check_tied_heads(
    teacher: PreTrainedModel,
    head_dim: int,
    heads: list[torch.Tensor] | None,
    channels: torch.Tensor | None,
    classifier: torch.Tensor | None,
) -> None:
    """Where heads follow the hidden width, a config has heads = hidden / head size and
    a head dense as wide as the hidden width; refuse selections it cannot describe."""
    hidden = len(channels) if channels is not None else int(teacher.config.hidden_size)
    count = len(heads[0]) if heads is not None else int(teacher.config.num_attention_heads)
    if count * head_dim != hidden:
        raise ValueError(
            f"a {family(teacher).name} config derives the head size from hidden / heads: "
            f"{count} heads of size {head_dim} need hidden width {count * head_dim}, "
            f"not {hidden}"
        )
    has_dense = classifier_dense(teacher) is not None
    width = len(classifier) if classifier is not None else int(teacher.config.hidden_size)
    if has_dense and width != hidden:
        raise ValueError(
            f"the classifier's hidden dense must keep {hidden} outputs (the hidden width), "
            f"not {width}"
        )
    why = family(teacher).check_hidden(teacher, hidden) if channels is not None else None
    if why is not None:
        raise ValueError(why)


def _sliced_state(
    teacher: PreTrainedModel, selection: Selection, index: _Index, head_dim: int
) -> dict[str, torch.Tensor]:
    names = family(teacher)
    base = re.escape(teacher.base_model_prefix)
    layer_rules = _compile(names.layer_axes, base)
    model_rules = _compile(names.model_axes, base)
    rms = [re.compile(p.replace("{base}", base) + "$") for p in names.rms_norms]
    projected = names.projected_embeddings(teacher)
    width = ffn(teacher, encoder_layers(teacher)[0]).width
    has_dense = classifier_dense(teacher) is not None
    norm_scale = 1.0
    if index.channels is not None:
        norm_scale = math.sqrt(int(teacher.config.hidden_size) / len(index.channels))

    prefix = encoder_layers_name(teacher)
    layer_key = re.compile(rf"^{re.escape(prefix)}\.(\d+)\.(.+)$")
    new_index = {teacher_idx: i for i, teacher_idx in enumerate(selection.layers)}

    def axis_index(axis: str | None, layer: int | None) -> torch.Tensor | None:
        if axis in ("hidden", "emb"):
            return None if axis == "emb" and projected else index.channels
        if axis == "cls":  # a head without a hidden dense reads the residual stream
            return index.classifier if has_dense else index.channels
        if axis is None or layer is None:
            return None
        per_layer = {
            "ffn": index.neurons,
            "ffn_halves": index.neurons,
            "q": index.heads,
            "kv": index.kv_heads,
        }[axis]
        if per_layer is None:
            return None
        kept = per_layer[layer]
        if axis == "ffn_halves":  # rows j and F + j of a fused [input; gate] projection
            return torch.cat([kept, kept + width])
        return kept if axis == "ffn" else _head_dims(kept, head_dim)

    state: dict[str, torch.Tensor] = {}
    for key, value in teacher.state_dict().items():
        match = layer_key.match(key)
        layer: int | None = None
        name, rules = key, model_rules
        if match is not None:
            if int(match.group(1)) not in new_index:
                continue
            layer, name, rules = new_index[int(match.group(1))], match.group(2), layer_rules
            key = f"{prefix}.{layer}.{name}"
        tensor = value.detach()
        axes = next((a for pattern, a in rules if pattern.match(name)), ())
        for dim, axis in enumerate(axes):
            kept = axis_index(axis, layer)
            if kept is not None:
                tensor = tensor.index_select(dim, kept.to(tensor.device))
        if norm_scale != 1.0 and any(p.match(name) for p in rms):
            tensor = tensor * norm_scale
        state[key] = tensor.clone().contiguous()
    return state


def _compile(rules: Mapping[str, Axes], base: str) -> list[tuple[re.Pattern[str], Axes]]:
    return [(re.compile(p.replace("{base}", base) + "$"), a) for p, a in rules.items()]


def _head_dims(heads: torch.Tensor, head_dim: int) -> torch.Tensor:
    """The rows (or columns) of heads ``heads``: h·d ... h·d + d - 1 for each h."""
    return (heads[:, None] * head_dim + torch.arange(head_dim)).flatten()


def top_channels(scores: torch.Tensor, width: int) -> torch.Tensor:
    """The ``width`` highest-scoring residual channels, ascending (ties to the lower)."""
    order = torch.argsort(scores, descending=True, stable=True)
    return order[:width].sort().values
