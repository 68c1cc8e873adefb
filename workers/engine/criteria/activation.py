"""``activation``: how much a unit puts out, or a weight carries, on real data.

For structures, on the batches' real tokens: a neuron's mean |activation|; a head's
mean L2 norm of its contribution to the attention output (its context through its
output columns); a channel's mean |norm output|.

For single weights: |w_ij| · ||x_j||, the weight times the size of the input it
multiplies (Wanda, Sun et al. 2023): a large weight on a feature that is almost always
near zero contributes little. Ranked within each matrix, as magnitude is.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from workers.engine.criteria.base import CRITERIA, MOMENTUM, Accumulated, Criterion, Scoring
from workers.engine.criteria.units import StructureScores, hooked_passes, result
from workers.engine.layers import (
    Attention,
    attention,
    classifier_dense,
    encoder_layers,
    ffn,
    residual_norms,
)


@CRITERIA.register()
class Activation(Criterion):
    name = "activation"

    def score_units(self, scoring: Scoring) -> StructureScores:
        model, groups, dev = scoring.model, scoring.groups, scoring.runtime.device
        layers = encoder_layers(model)
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
        tokens = sequences = 0.0
        for batch in hooked_passes(
            model,
            scoring.batches,
            runtime=scoring.runtime,
            progress=scoring.progress,
            handles=handles,
        ):
            mask[:] = [batch["attention_mask"].unsqueeze(-1).float()]
            tokens += float(batch["attention_mask"].sum())
            sequences += float(batch["attention_mask"].shape[0])
        scale = {"classifier": max(sequences, 1.0)}
        return result(
            {
                name: [t / scale.get(name, max(tokens, 1.0)) for t in values]
                for name, values in totals.items()
            }
        )

    def weight_scorer(self, linears: Sequence[nn.Linear]) -> ActivationWeights:
        return ActivationWeights(linears)


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


class ActivationWeights(Accumulated):
    """|w_ij| · sqrt(m_j), m_j the mean square of input feature j over the tokens of
    recent training batches (0.9 momentum per optimizer step), gathered by a forward
    pre-hook on each layer while it is in training mode. Padding tokens count too: they
    flow through the layers like the rest."""

    def __init__(self, linears: Sequence[nn.Linear]) -> None:
        super().__init__(linears, lambda lin: torch.Size([lin.in_features]))
        self._batch: list[torch.Tensor | None] = [None] * len(self._linears)
        self._tokens = [0] * len(self._linears)
        self._hooks = [
            linear.register_forward_pre_hook(self._hook(index))
            for index, linear in enumerate(self._linears)
        ]

    def _hook(self, index: int) -> Callable[[nn.Module, tuple[Any, ...]], None]:
        def hook(module: nn.Module, args: tuple[Any, ...]) -> None:
            if not module.training:  # evaluation passes are not what the student learns
                return
            with torch.no_grad():
                x = args[0].detach()
                flat = x.reshape(-1, x.shape[-1]).float()
                squares = flat.pow(2).sum(dim=0)
                seen = self._batch[index]
                self._batch[index] = squares if seen is None else seen + squares
                self._tokens[index] += flat.shape[0]

        return hook

    @torch.no_grad()
    def observe(self) -> None:
        for index, mean_square in enumerate(self._on_devices()):
            seen, tokens = self._batch[index], self._tokens[index]
            mean_square.mul_(MOMENTUM)
            if seen is not None and tokens:
                mean_square.add_(seen.to(mean_square.device) / tokens)
            self._batch[index], self._tokens[index] = None, 0

    def scores(self) -> list[torch.Tensor]:
        return [
            linear.weight.detach().abs().float() * norms.sqrt().unsqueeze(0)
            for linear, norms in zip(self._linears, self._on_devices(), strict=True)
        ]

    def close(self) -> None:
        for handle in self._hooks:
            handle.remove()
        self._hooks = []
