"""``magnitude``: weight norms; needs no data (the fallback).

A neuron's L2 norm; a head's value-rows norm times output-columns norm (its output
scales with both); a channel's norm scale (and shift) summed over the norms. A single
weight's score is |w| (Zhu & Gupta 2017; Han et al. 2015), ranked within its matrix.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel

from workers.engine.criteria.base import CRITERIA, Criterion, Scoring
from workers.engine.criteria.units import (
    Slice,
    StructureScores,
    l2,
    norm_slices,
    result,
)
from workers.engine.layers import attention, encoder_layers, residual_norms


@CRITERIA.register()
class Magnitude(Criterion):
    name = "magnitude"
    needs_data = False

    def score_units(self, scoring: Scoring) -> StructureScores:
        model, groups = scoring.model, scoring.groups
        totals: dict[str, list[torch.Tensor]] = {}
        with torch.no_grad():
            for name in ("neurons", "classifier"):
                if name in groups:
                    totals[name] = [l2(entry) for entry in groups[name]]
            if "heads" in groups:
                totals["heads"] = [_head_magnitude(model, layer) for layer in encoder_layers(model)]
            if "channels" in groups:
                norms = [l2(norm_slices(n)) for n in residual_norms(model)]
                totals["channels"] = [torch.stack(norms).sum(dim=0)]
        return result(totals)

    def weight_scorer(self, linears: Sequence[nn.Linear]) -> MagnitudeWeights:
        return MagnitudeWeights(linears)


def _head_magnitude(model: PreTrainedModel, layer: nn.Module) -> torch.Tensor:
    att = attention(model, layer)
    d = att.head_dim
    value = [Slice(att.value.weight, 0, d)]
    if att.value.bias is not None:
        value.append(Slice(att.value.bias, 0, d))
    per_kv = l2(value)
    return per_kv.repeat_interleave(att.group) * l2([Slice(att.output.weight, 1, d)])


class MagnitudeWeights:
    """|w|, read off the weights when asked."""

    def __init__(self, linears: Sequence[nn.Linear]) -> None:
        self._linears = list(linears)

    def observe(self) -> None:
        return None

    def scores(self) -> list[torch.Tensor]:
        return [linear.weight.detach().abs() for linear in self._linears]

    def close(self) -> None:
        return None

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        return None
