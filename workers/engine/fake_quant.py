"""Quantization-aware distillation: the student trains, for the last part of its last
round, through the same int8 rounding ONNX Runtime will apply to it (issue #20).

What ``onnx_export.quantize_int8`` (7-bit weights, its default) makes of a model (read from its
graph, onnxruntime 1.32, ``quantize_dynamic`` with QInt8 weights per channel):

- every ``nn.Linear`` (a MatMul or Gemm with its weight as an initializer) becomes a
  MatMulInteger: its weight int8, symmetric, one scale per output channel
  (``max |w| / 64``, range -64..64: the 7-bit weights every int8 student is exported
  with, ``WEIGHT_QMAX``); its input quantized on the fly per tensor by
  DynamicQuantizeLinear (uint8, asymmetric, the range stretched to include 0);
- every embedding table (Gather) is stored uint8, asymmetric, one scale for the whole
  table, and dequantized when read;
- the attention products (no weight) stay fp32.

``simulate`` mirrors exactly that in PyTorch: each op's forward sees the rounded values,
its backward passes gradients straight through to the fp32 weights (the
straight-through estimator of Bengio et al. 2013, as in Jacob et al. 2018 and
PyTorch's own fake-quant). The weights stay fp32 and keep their names, so checkpoints,
the state dict and the export are unchanged; the exported int8 model is then the
network the student was trained as. Why simulate the runtime's own scheme rather than
PyTorch's quantization flow: the student ships through ONNX Runtime's quantizer, so the
rounding it learns to absorb must be that one, and ``torch.ao`` quantization-aware
training would insert observers and convert to PyTorch's own int8 modules instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

UINT8_MAX = 255.0
# The weights' range in every int8 export: 7 bits (``quantize_int8``'s
# ``reduce_range``), the one int8 arithmetic every x86 CPU computes
# exactly. With 8-bit weights a CPU without VNNI saturates int16 sums of uint8 x int8
# pairs, which no simulation of the quantized model reproduces.
WEIGHT_QMAX = 64.0


def _straight_through(x: torch.Tensor, rounded: torch.Tensor) -> torch.Tensor:
    """``rounded`` forward, the identity backward."""
    return x + (rounded - x).detach()


def per_channel_int8(weight: torch.Tensor, qmax: float = WEIGHT_QMAX) -> torch.Tensor:
    """A Linear weight (out, in) rounded as ORT stores it: symmetric int8 per output row,
    ``-qmax..qmax`` (64 with reduce_range, else 127)."""
    scale = weight.detach().abs().amax(dim=1, keepdim=True) / qmax
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    rounded = torch.clamp(torch.round(weight / scale), -qmax, qmax) * scale
    return _straight_through(weight, rounded)


def per_tensor_uint8(x: torch.Tensor) -> torch.Tensor:
    """A tensor rounded as DynamicQuantizeLinear (and an embedding table as ORT's Gather
    quantization) does: uint8 over [min(x, 0), max(x, 0)], one scale and zero point."""
    low = torch.clamp(x.detach().min(), max=0.0)
    high = torch.clamp(x.detach().max(), min=0.0)
    scale = (high - low) / UINT8_MAX
    # An all-zero tensor: any scale gives zeros (and no division by zero).
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    zero = torch.clamp(torch.round(-low / scale), 0.0, UINT8_MAX)
    rounded = (torch.clamp(torch.round(x / scale) + zero, 0.0, UINT8_MAX) - zero) * scale
    return _straight_through(x, rounded)


class Int8Linear(nn.Linear):
    """An ``nn.Linear`` whose forward sees int8 weights and uint8 inputs (``simulate``
    swaps a module's class to this one and back: same parameters, same names)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(per_tensor_uint8(x), per_channel_int8(self.weight), self.bias)


class Uint8Embedding(nn.Embedding):
    """An ``nn.Embedding`` whose table is read as ORT's quantized Gather reads it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.embedding(
            x,
            per_tensor_uint8(self.weight),
            self.padding_idx,
            self.max_norm,
            self.norm_type,
            self.scale_grad_by_freq,
            self.sparse,
        )


# Plain class -> its simulating subclass. Exact types only: a subclass of nn.Linear of
# some other library has its own forward, which a swap would lose.
SIMULATED: dict[type[nn.Module], type[nn.Module]] = {
    nn.Linear: Int8Linear,
    nn.Embedding: Uint8Embedding,
}
PLAIN = {simulated: plain for plain, simulated in SIMULATED.items()}


def _modules(
    model: nn.Module, kinds: dict[type[nn.Module], type[nn.Module]]
) -> Iterator[nn.Module]:
    for module in model.modules():
        if type(module) in kinds:
            yield module


def _swap(model: nn.Module, kinds: dict[type[nn.Module], type[nn.Module]]) -> int:
    found = list(_modules(model, kinds))
    for module in found:
        module.__class__ = kinds[type(module)]
    return len(found)


def simulate(model: nn.Module) -> int:
    """Run ``model``'s Linear and Embedding modules through int8 from now on; returns
    how many. Parameters, buffers and names are untouched."""
    return _swap(model, SIMULATED)


def restore(model: nn.Module) -> int:
    """Undo ``simulate``: plain fp32 modules again (what evaluation and export see)."""
    return _swap(model, PLAIN)


def simulated(model: nn.Module) -> bool:
    return any(True for _ in _modules(model, PLAIN))


@dataclass
class QuantAware:
    """The training loop's step hook that switches the int8 simulation on at
    ``begin_step`` (an object, not a closure, for data-parallel loops: each process
    switches its own copy of the model). A loop resumed past ``begin_step`` calls
    ``catch_up`` before its first step."""

    model: nn.Module
    begin_step: int

    def on_step(self, step: int) -> None:
        # After optimizer step ``step``: the next forward is step + 1's.
        if step + 1 >= self.begin_step and not simulated(self.model):
            simulate(self.model)

    def catch_up(self, step: int) -> None:
        self.on_step(step)


def begin_step(total_steps: int, fraction: float) -> int:
    """The first step (1-based, as the loop counts) of the last ``fraction`` of
    ``total_steps``; at least the last step."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    return max(1, min(total_steps, total_steps - round(fraction * total_steps) + 1))
