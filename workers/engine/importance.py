"""FFN-neuron importance: which neurons of each layer a narrower FFN keeps.

Strategies are small objects registered by name (like Torch-Pruning's importance
classes); ``get_importance(name)`` returns one, and its ``scores`` give one tensor per
encoder layer with a score per FFN neuron, higher meaning keep. Neuron j of a layer is
row j of the intermediate dense weight (and its bias) and column j of the output dense
weight.

- ``taylor`` (the default): first-order Taylor, the sum of |w · ∂L/∂w| over the
  neuron's weights, with L the cross-entropy of the fine-tuned teacher on task labels,
  summed over a few batches (absolute values per batch, so batches do not cancel).
  It estimates how much the loss changes when the neuron is removed.
- ``activation``: the mean |activation| of the neuron over the batches' real tokens.
- ``magnitude``: the L2 norm of the neuron's weights; needs no data (the fallback).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import nn
from transformers import PreTrainedModel

from workers.engine import capabilities
from workers.engine.data import Batch, model_inputs, to_device
from workers.engine.layers import FFN, encoder_layers, ffn
from workers.engine.losses import LossInputs, get_loss
from workers.engine.progress import Progress
from workers.engine.runtime import Runtime
from workers.engine.spec import EngineInputError

DEFAULT_IMPORTANCE = capabilities.IMPORTANCE[0]


class Importance(ABC):
    name: ClassVar[str]
    # False when ``scores`` never looks at the batches (no data needs preparing).
    needs_data: ClassVar[bool] = True

    @abstractmethod
    def scores(
        self,
        model: PreTrainedModel,
        batches: Sequence[Batch],
        *,
        runtime: Runtime,
        progress: Progress | None = None,
    ) -> list[torch.Tensor]:
        """One float32 CPU tensor of ``intermediate_size`` scores per encoder layer."""


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
    """Per layer, the indices of the ``width`` highest-scoring neurons, in ascending
    order (equal scores go to the lower index)."""
    kept = []
    for layer_scores in scores:
        order = torch.argsort(layer_scores, descending=True, stable=True)
        kept.append(order[:width].sort().values)
    return kept


def _ffns(model: PreTrainedModel) -> list[FFN]:
    return [ffn(layer) for layer in encoder_layers(model)]


def _neuron_params(part: FFN) -> list[tuple[nn.Parameter, int]]:
    """The neuron's tensors and the dimension that indexes neurons in each."""
    params = [(part.up.weight, 0), (part.down.weight, 1)]
    if part.up.bias is not None:
        params.append((part.up.bias, 0))
    return params


def _per_neuron(tensor: torch.Tensor, neuron_dim: int) -> torch.Tensor:
    """Sum over everything but the neuron dimension."""
    if tensor.ndim == 1:
        return tensor
    return tensor.sum(dim=1 - neuron_dim)


def _report(progress: Progress | None, done: int, total: int) -> None:
    if progress is not None:
        progress.check_stop()
        # Scoring is most of the pruning phase's work; building the student is the rest.
        progress.within(0.8 * done / max(total, 1))


@register
class MagnitudeImportance(Importance):
    name = "magnitude"
    needs_data = False

    def scores(
        self,
        model: PreTrainedModel,
        batches: Sequence[Batch],
        *,
        runtime: Runtime,
        progress: Progress | None = None,
    ) -> list[torch.Tensor]:
        result = []
        with torch.no_grad():
            for part in _ffns(model):
                squares = sum(
                    _per_neuron(p.detach().float().pow(2), dim) for p, dim in _neuron_params(part)
                )
                assert isinstance(squares, torch.Tensor)
                result.append(squares.sqrt().cpu())
        return result


@register
class TaylorImportance(Importance):
    name = "taylor"

    def scores(
        self,
        model: PreTrainedModel,
        batches: Sequence[Batch],
        *,
        runtime: Runtime,
        progress: Progress | None = None,
    ) -> list[torch.Tensor]:
        if not batches:
            raise ValueError("taylor importance needs at least one batch")
        parts = _ffns(model)
        tensors = [_neuron_params(part) for part in parts]
        flat = [p for layer in tensors for p, _ in layer]
        totals = [torch.zeros(p.up.out_features, device=runtime.device) for p in parts]
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
                # Only the FFN weights' gradients: nothing lands in .grad.
                grads = iter(torch.autograd.grad(loss, flat))
                with torch.no_grad():
                    for total, layer in zip(totals, tensors, strict=True):
                        for param, dim in layer:
                            product = (param.detach().float() * next(grads).float()).abs()
                            total += _per_neuron(product, dim)
                _report(progress, done, len(batches))
        finally:
            for p, flag in zip(flat, needed_grad, strict=True):
                p.requires_grad_(flag)
            model.train(was_training)
        return [t.cpu() for t in totals]


@register
class ActivationImportance(Importance):
    name = "activation"

    def scores(
        self,
        model: PreTrainedModel,
        batches: Sequence[Batch],
        *,
        runtime: Runtime,
        progress: Progress | None = None,
    ) -> list[torch.Tensor]:
        if not batches:
            raise ValueError("activation importance needs at least one batch")
        parts = _ffns(model)
        totals = [torch.zeros(p.up.out_features, device=runtime.device) for p in parts]
        mask: list[torch.Tensor] = []  # the current batch's [batch, tokens, 1] token mask

        def hook(index: int):  # a forward hook adding layer ``index``'s activations
            def add(_module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
                totals[index] += (output.float().abs() * mask[0]).sum(dim=(0, 1))

            return add

        handles = [
            part.activation_output.register_forward_hook(hook(i)) for i, part in enumerate(parts)
        ]
        was_training = model.training
        model.eval()
        tokens = 0.0
        try:
            with torch.inference_mode():
                for done, batch in enumerate(batches, start=1):
                    batch = to_device(batch, runtime.device)
                    mask[:] = [batch["attention_mask"].unsqueeze(-1).float()]
                    tokens += float(batch["attention_mask"].sum())
                    with runtime.autocast():
                        model(**model_inputs(batch))
                    _report(progress, done, len(batches))
        finally:
            for handle in handles:
                handle.remove()
            model.train(was_training)
        return [(t / max(tokens, 1.0)).cpu() for t in totals]


assert tuple(sorted(IMPORTANCES)) == tuple(sorted(capabilities.IMPORTANCE)), (
    "capabilities.IMPORTANCE must list the registered importance strategies"
)
assert DEFAULT_IMPORTANCE in IMPORTANCES
