"""Importance: which FFN neurons, attention heads, hidden channels and layers a smaller
student keeps.

Strategies are small objects registered by name (like Torch-Pruning's importance
classes); ``get_importance(name)`` returns one. ``structure_scores`` scores the units
of the structures asked for, higher meaning keep:

- ``neurons``: per layer, one score per FFN neuron (row j of the intermediate / up and
  gate weights and their biases, column j of the output / down weight);
- ``heads``: per layer, one score per query head (its rows of the query weight, its
  columns of the attention output weight; with its key and value rows when every KV
  head serves one query head);
- ``channels``: one score per residual-stream channel, summed over every norm whose
  output is that wide (Minitron's "embedding channel" importance);
- ``classifier``: one score per output of the head's hidden dense (BERT's pooler,
  RoBERTa's and ELECTRA's ``classifier.dense``), which follows the hidden width.

The strategies:

- ``taylor`` (the default): first-order Taylor, the sum of |w · ∂L/∂w| over a unit's
  weights, with L the cross-entropy of the fine-tuned teacher on task labels, summed
  over a few batches (absolute values per batch, so batches do not cancel). It
  estimates how much the loss changes when the unit is removed. For channels the
  weights are the norms' scales and shifts: the first-order effect of zeroing the
  channel where every sublayer reads it.
- ``activation``: how much the unit puts out on the batches' real tokens: a neuron's
  mean |activation|; a head's mean L2 norm of its contribution to the attention output
  (its context through its output columns); a channel's mean |norm output|.
- ``magnitude``: weight norms; needs no data (the fallback). A neuron's L2 norm; a
  head's value-rows norm times output-columns norm (its output scales with both); a
  channel's norm scale (and shift) summed over the norms.

``layer_scores`` ranks whole layers by block importance (Minitron, ShortGPT): one minus
the mean cosine similarity between a layer's input and output hidden states.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn
from transformers import PreTrainedModel

from jobspec import vocabulary
from workers.engine.data import Batch, model_inputs, to_device
from workers.engine.layers import (
    FFN,
    Attention,
    attention,
    classifier_dense,
    encoder_layers,
    ffn,
    residual_norms,
)
from workers.engine.losses import LossInputs, get_loss
from workers.engine.progress import Progress
from workers.engine.runtime import Runtime
from workers.engine.spec import EngineInputError

DEFAULT_IMPORTANCE = vocabulary.IMPORTANCE[0]
# What ``structure_scores`` can be asked for.
STRUCTURES = ("neurons", "heads", "channels", "classifier")


@dataclass
class StructureScores:
    """Float32 CPU scores; None for a structure not asked for (or, for ``classifier``,
    a head without a hidden dense)."""

    neurons: list[torch.Tensor] | None = None
    heads: list[torch.Tensor] | None = None
    channels: torch.Tensor | None = None
    classifier: torch.Tensor | None = None


@dataclass(frozen=True)
class _Slice:
    """Part of a unit's weights: ``param`` split along ``dim`` into chunks of ``unit``
    entries, one chunk per unit (``unit`` is the head size for heads, else 1)."""

    param: nn.Parameter
    dim: int
    unit: int = 1
    # Blocks of units stacked along ``dim`` (a fused [input; gate] projection's two
    # halves), summed into one score per unit.
    fold: int = 1

    def per_unit(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum ``tensor`` (shaped like ``param``) over everything but the units."""
        if tensor.ndim == 2:
            tensor = tensor.sum(dim=1 - self.dim)
        if self.fold > 1:
            tensor = tensor.view(self.fold, -1).sum(dim=0)
        return tensor.view(-1, self.unit).sum(dim=1) if self.unit > 1 else tensor


class Importance(ABC):
    name: ClassVar[str]
    # False when scoring never looks at the batches (no data needs preparing).
    needs_data: ClassVar[bool] = True

    @abstractmethod
    def structure_scores(
        self,
        model: PreTrainedModel,
        batches: Sequence[Batch],
        *,
        runtime: Runtime,
        want: Collection[str] = ("neurons",),
        progress: Progress | None = None,
    ) -> StructureScores:
        """Scores of the structures in ``want`` (see ``STRUCTURES``)."""

    def scores(
        self,
        model: PreTrainedModel,
        batches: Sequence[Batch],
        *,
        runtime: Runtime,
        progress: Progress | None = None,
    ) -> list[torch.Tensor]:
        """One float32 CPU tensor of ``intermediate_size`` scores per layer."""
        result = self.structure_scores(
            model, batches, runtime=runtime, want=("neurons",), progress=progress
        )
        assert result.neurons is not None
        return result.neurons


IMPORTANCES: dict[str, type[Importance]] = {}


def register(cls: type[Importance]) -> type[Importance]:
    IMPORTANCES[cls.name] = cls
    return cls


def get_importance(name: str) -> Importance:
    try:
        return IMPORTANCES[name]()
    except KeyError:
        raise EngineInputError(
            "unsupported_importance",
            f"importance {name!r} is not available; available: {sorted(IMPORTANCES)}",
        ) from None


def top_neurons(scores: Sequence[torch.Tensor], width: int) -> list[torch.Tensor]:
    """Per layer, the indices of the ``width`` highest-scoring units, in ascending
    order (equal scores go to the lower index)."""
    return [top_units(layer_scores, width) for layer_scores in scores]


def top_units(scores: torch.Tensor, count: int) -> torch.Tensor:
    order = torch.argsort(scores, descending=True, stable=True)
    return order[:count].sort().values


# -- what each structure is made of ---------------------------------------------------


def _neuron_slices(part: FFN) -> list[_Slice]:
    rows = [_Slice(lin.weight, 0, fold=part.halves) for lin in part.rows]
    biases = [_Slice(lin.bias, 0, fold=part.halves) for lin in part.rows if lin.bias is not None]
    return [*rows, _Slice(part.down.weight, 1), *biases]


def _head_slices(att: Attention) -> list[_Slice]:
    d = att.head_dim
    projections = [att.query]
    if att.num_kv_heads == att.num_heads:
        # One KV head per query head: they go together. Grouped KV heads are shared,
        # so a query head is only its own rows and columns.
        projections += [att.key, att.value]
    slices = [_Slice(p.weight, 0, d) for p in projections] + [_Slice(att.output.weight, 1, d)]
    return slices + [_Slice(p.bias, 0, d) for p in projections if p.bias is not None]


def _norm_slices(norm: nn.Module) -> list[_Slice]:
    params = [getattr(norm, "weight", None), getattr(norm, "bias", None)]
    return [_Slice(p, 0) for p in params if isinstance(p, nn.Parameter)]


def _groups(model: PreTrainedModel, want: Collection[str]) -> dict[str, list[list[_Slice]]]:
    """Per structure, per entry (a layer, or the whole model), the unit slices."""
    unknown = set(want) - set(STRUCTURES)
    if unknown:
        raise ValueError(f"unknown structures {sorted(unknown)}; known: {STRUCTURES}")
    layers = encoder_layers(model)
    groups: dict[str, list[list[_Slice]]] = {}
    if "neurons" in want:
        groups["neurons"] = [_neuron_slices(ffn(model, layer)) for layer in layers]
    if "heads" in want:
        groups["heads"] = [_head_slices(attention(model, layer)) for layer in layers]
    if "channels" in want:
        groups["channels"] = [[s for n in residual_norms(model) for s in _norm_slices(n)]]
    head = classifier_dense(model)
    if "classifier" in want and head is not None:
        groups["classifier"] = [_neuron_slices(head)]
    return groups


def _result(totals: dict[str, list[torch.Tensor]]) -> StructureScores:
    def one(name: str) -> torch.Tensor | None:
        return totals[name][0].cpu() if name in totals else None

    def each(name: str) -> list[torch.Tensor] | None:
        return [t.cpu() for t in totals[name]] if name in totals else None

    return StructureScores(
        neurons=each("neurons"),
        heads=each("heads"),
        channels=one("channels"),
        classifier=one("classifier"),
    )


def _report(progress: Progress | None, done: int, total: int) -> None:
    if progress is not None:
        progress.check_stop()
        # Scoring is most of the pruning phase's work; building the student is the rest.
        progress.within(0.8 * done / max(total, 1))


# -- strategies -----------------------------------------------------------------------


@register
class MagnitudeImportance(Importance):
    name = "magnitude"
    needs_data = False

    def structure_scores(
        self,
        model: PreTrainedModel,
        batches: Sequence[Batch],
        *,
        runtime: Runtime,
        want: Collection[str] = ("neurons",),
        progress: Progress | None = None,
    ) -> StructureScores:
        groups = _groups(model, want)
        totals: dict[str, list[torch.Tensor]] = {}
        with torch.no_grad():
            for name in ("neurons", "classifier"):
                if name in groups:
                    totals[name] = [_l2(entry) for entry in groups[name]]
            if "heads" in groups:
                totals["heads"] = [_head_magnitude(model, layer) for layer in encoder_layers(model)]
            if "channels" in groups:
                norms = [_l2(_norm_slices(n)) for n in residual_norms(model)]
                totals["channels"] = [torch.stack(norms).sum(dim=0)]
        return _result(totals)


def _l2(slices: Sequence[_Slice]) -> torch.Tensor:
    squares = sum(s.per_unit(s.param.detach().float().pow(2)) for s in slices)
    assert isinstance(squares, torch.Tensor)
    return squares.sqrt()


def _head_magnitude(model: PreTrainedModel, layer: nn.Module) -> torch.Tensor:
    att = attention(model, layer)
    d = att.head_dim
    value = [_Slice(att.value.weight, 0, d)]
    if att.value.bias is not None:
        value.append(_Slice(att.value.bias, 0, d))
    per_kv = _l2(value)
    return per_kv.repeat_interleave(att.group) * _l2([_Slice(att.output.weight, 1, d)])


@register
class TaylorImportance(Importance):
    name = "taylor"

    def structure_scores(
        self,
        model: PreTrainedModel,
        batches: Sequence[Batch],
        *,
        runtime: Runtime,
        want: Collection[str] = ("neurons",),
        progress: Progress | None = None,
    ) -> StructureScores:
        if not batches:
            raise ValueError("taylor importance needs at least one batch")
        groups = _groups(model, want)
        if not groups:
            return StructureScores()
        # One gradient per tensor even where structures share it (a query weight is
        # both a head's rows and, later, channel columns).
        flat = list({id(s.param): s.param for g in groups.values() for e in g for s in e}.values())
        index = {id(p): i for i, p in enumerate(flat)}
        totals = {
            name: [torch.zeros(_units(entry), device=runtime.device) for entry in entries]
            for name, entries in groups.items()
        }
        ce = get_loss("ce")
        was_training = model.training
        needed_grad = [p.requires_grad for p in flat]
        model.eval()  # no dropout: the score is of the model as it will be used
        try:
            for p in flat:
                p.requires_grad_(True)
            for done, batch in enumerate(batches, start=1):
                batch = to_device(batch, runtime.device)
                with runtime.autocast():
                    logits = model(**model_inputs(batch)).logits
                loss = ce(LossInputs(logits, batch["labels"], batch["attention_mask"]))
                # Only these weights' gradients: nothing lands in .grad.
                grads = torch.autograd.grad(loss, flat)
                with torch.no_grad():
                    for name, entries in groups.items():
                        for total, entry in zip(totals[name], entries, strict=True):
                            for s in entry:
                                grad = grads[index[id(s.param)]]
                                total += s.per_unit((s.param.detach().float() * grad.float()).abs())
                _report(progress, done, len(batches))
        finally:
            for p, flag in zip(flat, needed_grad, strict=True):
                p.requires_grad_(flag)
            model.train(was_training)
        return _result(totals)


def _units(entry: Sequence[_Slice]) -> int:
    first = entry[0]
    return first.param.shape[first.dim] // first.unit // first.fold


@register
class ActivationImportance(Importance):
    name = "activation"

    def structure_scores(
        self,
        model: PreTrainedModel,
        batches: Sequence[Batch],
        *,
        runtime: Runtime,
        want: Collection[str] = ("neurons",),
        progress: Progress | None = None,
    ) -> StructureScores:
        if not batches:
            raise ValueError("activation importance needs at least one batch")
        groups = _groups(model, want)
        if not groups:
            return StructureScores()
        layers = encoder_layers(model)
        dev = runtime.device
        totals: dict[str, list[torch.Tensor]] = {}
        mask: list[torch.Tensor] = []  # the current batch's [batch, tokens, 1] token mask
        handles = []

        def masked_abs(x: torch.Tensor) -> torch.Tensor:
            x = x.float().abs()
            if x.ndim == 3:  # per token; a head's dense sees one vector per sequence
                x = x * mask[0]
            return x.reshape(-1, x.shape[-1]).sum(dim=0)

        def adder(total: torch.Tensor, measure: Callable[[torch.Tensor], torch.Tensor]):
            def pre_hook(_module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
                total.add_(measure(inputs[0]))

            def hook(_module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
                total.add_(measure(output))

            return pre_hook, hook

        if "neurons" in groups:
            parts = [ffn(model, layer) for layer in layers]
            totals["neurons"] = [torch.zeros(p.down.in_features, device=dev) for p in parts]
            for total, part in zip(totals["neurons"], parts, strict=True):
                handles.append(part.down.register_forward_pre_hook(adder(total, masked_abs)[0]))
        if "classifier" in groups:
            head = classifier_dense(model)
            assert head is not None
            totals["classifier"] = [torch.zeros(head.down.in_features, device=dev)]
            handles.append(
                head.down.register_forward_pre_hook(adder(totals["classifier"][0], masked_abs)[0])
            )
        if "heads" in groups:
            atts = [attention(model, layer) for layer in layers]
            totals["heads"] = [torch.zeros(a.num_heads, device=dev) for a in atts]
            for total, att in zip(totals["heads"], atts, strict=True):
                measure = _head_contribution(att, mask)
                handles.append(att.output.register_forward_pre_hook(adder(total, measure)[0]))
        if "channels" in groups:
            hidden = int(model.config.hidden_size)
            totals["channels"] = [torch.zeros(hidden, device=dev)]
            for norm in residual_norms(model):
                handles.append(
                    norm.register_forward_hook(adder(totals["channels"][0], masked_abs)[1])
                )
        was_training = model.training
        model.eval()
        tokens = sequences = 0.0
        try:
            with torch.inference_mode():
                for done, batch in enumerate(batches, start=1):
                    batch = to_device(batch, dev)
                    mask[:] = [batch["attention_mask"].unsqueeze(-1).float()]
                    tokens += float(batch["attention_mask"].sum())
                    sequences += float(batch["attention_mask"].shape[0])
                    with runtime.autocast():
                        model(**model_inputs(batch))
                    _report(progress, done, len(batches))
        finally:
            for handle in handles:
                handle.remove()
            model.train(was_training)
        scale = {"classifier": max(sequences, 1.0)}
        return _result(
            {
                name: [t / scale.get(name, max(tokens, 1.0)) for t in values]
                for name, values in totals.items()
            }
        )


def _head_contribution(
    att: Attention, mask: list[torch.Tensor]
) -> Callable[[torch.Tensor], torch.Tensor]:
    """Per query head, the summed L2 norm over real tokens of what the head adds to the
    attention output: ||W_o[:, h] · context_h||, from the output projection's input."""
    d, heads = att.head_dim, att.num_heads

    def measure(context: torch.Tensor) -> torch.Tensor:
        weight = att.output.weight.float().view(-1, heads, d)  # [hidden, heads, d]
        # ||W_h x||² = xᵀ (W_hᵀ W_h) x: d x d per head, never [tokens, heads, hidden].
        gram = torch.einsum("ohd,ohe->hde", weight, weight)
        x = context.float().view(*context.shape[:-1], heads, d)
        squared = (torch.einsum("bthd,hde->bthe", x, gram) * x).sum(dim=-1)
        norms = squared.clamp_min(0).sqrt() * mask[0]
        return norms.sum(dim=(0, 1))

    return measure


# -- layers ---------------------------------------------------------------------------


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
    was_training = model.training
    model.eval()
    tokens = 0.0
    try:
        with torch.inference_mode():
            for done, batch in enumerate(batches, start=1):
                batch = to_device(batch, runtime.device)
                mask[:] = [batch["attention_mask"].float()]
                tokens += float(batch["attention_mask"].sum())
                with runtime.autocast():
                    model(**model_inputs(batch))
                _report(progress, done, len(batches))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return (totals / max(tokens, 1.0)).cpu()


assert tuple(sorted(IMPORTANCES)) == tuple(sorted(vocabulary.IMPORTANCE)), (
    "vocabulary.IMPORTANCE must list the registered importance strategies"
)
assert DEFAULT_IMPORTANCE in IMPORTANCES
