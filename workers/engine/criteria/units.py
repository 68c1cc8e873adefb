"""What a criterion scores: the units of each structure (an FFN neuron, an attention
head, a residual channel, an output of the head's dense) as slices of the weights, and
the scores it gives back.

- ``neurons``: per layer, one score per FFN neuron (row j of the intermediate / up and
  gate weights and their biases, column j of the output / down weight);
- ``heads``: per layer, one score per query head (its rows of the query weight, its
  columns of the attention output weight; with its key and value rows when every KV
  head serves one query head);
- ``channels``: one score per residual-stream channel, summed over every norm whose
  output is that wide (Minitron's "embedding channel" importance);
- ``classifier``: one score per output of the head's hidden dense (BERT's pooler,
  RoBERTa's and ELECTRA's ``classifier.dense``), which follows the hidden width.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedModel

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
from workers.engine.progress import Progress
from workers.engine.runtime import Runtime

# What ``Criterion.structure_scores`` can be asked for.
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
class Slice:
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


def neuron_slices(part: FFN) -> list[Slice]:
    rows = [Slice(lin.weight, 0, fold=part.halves) for lin in part.rows]
    biases = [Slice(lin.bias, 0, fold=part.halves) for lin in part.rows if lin.bias is not None]
    return [*rows, Slice(part.down.weight, 1), *biases]


def head_slices(att: Attention) -> list[Slice]:
    d = att.head_dim
    projections = [att.query]
    if att.num_kv_heads == att.num_heads:
        # One KV head per query head: they go together. Grouped KV heads are shared,
        # so a query head is only its own rows and columns.
        projections += [att.key, att.value]
    slices = [Slice(p.weight, 0, d) for p in projections] + [Slice(att.output.weight, 1, d)]
    return slices + [Slice(p.bias, 0, d) for p in projections if p.bias is not None]


def norm_slices(norm: nn.Module) -> list[Slice]:
    params = [getattr(norm, "weight", None), getattr(norm, "bias", None)]
    return [Slice(p, 0) for p in params if isinstance(p, nn.Parameter)]


def groups_of(model: PreTrainedModel, want: Collection[str]) -> dict[str, list[list[Slice]]]:
    """Per structure, per entry (a layer, or the whole model), the unit slices."""
    unknown = set(want) - set(STRUCTURES)
    if unknown:
        raise ValueError(f"unknown structures {sorted(unknown)}; known: {STRUCTURES}")
    layers = encoder_layers(model)
    groups: dict[str, list[list[Slice]]] = {}
    if "neurons" in want:
        groups["neurons"] = [neuron_slices(ffn(model, layer)) for layer in layers]
    if "heads" in want:
        groups["heads"] = [head_slices(attention(model, layer)) for layer in layers]
    if "channels" in want:
        groups["channels"] = [[s for n in residual_norms(model) for s in norm_slices(n)]]
    head = classifier_dense(model)
    if "classifier" in want and head is not None:
        groups["classifier"] = [neuron_slices(head)]
    return groups


def result(totals: dict[str, list[torch.Tensor]]) -> StructureScores:
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


def report(progress: Progress | None, done: int, total: int) -> None:
    if progress is not None:
        progress.check_stop()
        # Scoring is most of the pruning phase's work; building the student is the rest.
        progress.within(0.8 * done / max(total, 1))


def l2(slices: Sequence[Slice]) -> torch.Tensor:
    squares = sum(s.per_unit(s.param.detach().float().pow(2)) for s in slices)
    assert isinstance(squares, torch.Tensor)
    return squares.sqrt()


def unit_count(entry: Sequence[Slice]) -> int:
    first = entry[0]
    return first.param.shape[first.dim] // first.unit // first.fold


def hooked_passes(
    model: PreTrainedModel,
    batches: Sequence[Batch],
    *,
    runtime: Runtime,
    progress: Progress | None,
    handles: Sequence[torch.utils.hooks.RemovableHandle],
) -> Iterator[Batch]:
    """Run each batch through ``model`` in eval mode without gradients, for the forward
    hooks behind ``handles`` to measure it: each batch is yielded (on the device) just
    before its pass, so the caller can set what the hooks read. Afterwards the hooks
    are removed and the model's training mode is restored, whatever happened."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for done, batch in enumerate(batches, start=1):
                batch = to_device(batch, runtime.device)
                yield batch
                with runtime.autocast():
                    model(**model_inputs(batch))
                report(progress, done, len(batches))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
