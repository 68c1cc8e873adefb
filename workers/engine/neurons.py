"""Gradual FFN-neuron pruning: neurons masked a few at a time while the student distils,
then removed for real.

Cutting half of an FFN at once costs accuracy that a short distillation does not win
back (ENGINE.md: one-shot pruning past 30-50% collapses; Intel Neural Compressor's
``auto_slim`` gets its FFN widths gradually). Here a student starts at its full FFN
width and loses neurons on the cubic schedule of ``sparsity_schedule`` (after the
warm-up, done at 2/3 of the steps, then fixed), every layer down to the same width (a
config holds one ``intermediate_size``).

Which neurons go: first-order Taylor scores |w · dL/dw| summed over a neuron's row of
``up`` (and ``gate``), its bias and its column of ``down``, accumulated over the steps
since the last mask update (the gradient of the distillation loss itself, as INC's
``snip_momentum`` does). A masked neuron stays masked: its row (both, in a fused
[input; gate] projection), bias and column are set to zero after every optimizer
step, so it outputs nothing (GELU(0) = 0, SiLU(0)·u = 0) and the student with the
neuron cut away computes the same function. ``kept()`` then
gives the indices ``prune_width.build_pruned`` slices with.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from workers.engine.layers import FFN, encoder_layers, ffn
from workers.engine.sparsity_schedule import cubic_sparsity, default_schedule, is_update_step


@dataclass(frozen=True, kw_only=True)
class NeuronSchedule:
    """``final_width`` neurons per layer from ``end_step`` on; masks change on
    ``begin_step``, every ``update_every`` steps after it, and at ``end_step``."""

    final_width: int
    begin_step: int
    end_step: int
    update_every: int = 1

    def __post_init__(self) -> None:
        if self.final_width < 1:
            raise ValueError(f"final_width must be at least 1, got {self.final_width}")
        if not 0 <= self.begin_step <= self.end_step:
            raise ValueError(f"need 0 <= begin_step <= end_step, got {self}")
        if self.update_every < 1:
            raise ValueError(f"update_every must be at least 1, got {self.update_every}")


def neuron_schedule(final_width: int, total_steps: int) -> NeuronSchedule:
    """The default placement (the sparsity schedule's) for a run of ``total_steps``."""
    steps = default_schedule(total_steps)
    return NeuronSchedule(
        final_width=final_width,
        begin_step=steps.begin_step,
        end_step=steps.end_step,
        update_every=steps.update_every,
    )


class NeuronPruner:
    """Call ``on_step(step)`` right after every ``optimizer.step()`` (the gradients of
    that step are still there: the loop zeroes them before the next backward)."""

    def __init__(self, model: nn.Module, schedule: NeuronSchedule) -> None:
        self.schedule = schedule
        self._ffns: list[FFN] = [ffn(model, layer) for layer in encoder_layers(model)]  # type: ignore[arg-type]
        self.full_width = self._ffns[0].width
        if schedule.final_width > self.full_width:
            raise ValueError(
                f"cannot narrow {self.full_width} FFN neurons to {schedule.final_width}"
            )
        device = self._ffns[0].up.weight.device
        self._masks = [
            torch.ones(self.full_width, dtype=torch.bool, device=device) for _ in self._ffns
        ]
        self._scores = [torch.zeros(self.full_width, device=device) for _ in self._ffns]
        self._step = 0
        self._frozen = schedule.final_width == self.full_width

    @property
    def frozen(self) -> bool:
        return self._frozen

    def width_at(self, step: int) -> int:
        """Neurons per layer the masks keep after the update at ``step``."""
        s = self.schedule
        removed = cubic_sparsity(
            step,
            final=1.0 - s.final_width / self.full_width,
            begin_step=s.begin_step,
            end_step=s.end_step,
        )
        # Rounded so that the final update lands on final_width exactly.
        return max(s.final_width, self.full_width - math.floor(removed * self.full_width + 1e-9))

    def _updates_at(self, step: int) -> bool:
        s = self.schedule
        return not self._frozen and is_update_step(
            step, begin_step=s.begin_step, end_step=s.end_step, update_every=s.update_every
        )

    @torch.no_grad()
    def on_step(self, step: int) -> None:
        if not self._frozen:
            self._accumulate()
        if self._updates_at(step):
            width = self.width_at(step)
            if width < self.current_width():
                # Scores count from the last removal: recent gradients, the current model.
                for index, (mask, scores) in enumerate(zip(self._masks, self._scores, strict=True)):
                    self._masks[index] = _narrowed(mask, scores, width)
                    scores.zero_()
            self._frozen = step >= self.schedule.end_step
        self._apply()
        self._step = step

    def _accumulate(self) -> None:
        for part, scores in zip(self._ffns, self._scores, strict=True):
            scores += _taylor(part).to(scores.device)

    @torch.no_grad()
    def _apply(self) -> None:
        for part, mask in zip(self._ffns, self._masks, strict=True):
            if bool(mask.all()):
                continue
            gone = ~mask.to(part.up.weight.device)
            rows = part.unfold(gone)
            for linear in (part.up, part.gate):
                if linear is None:
                    continue
                linear.weight[rows] = 0.0
                if linear.bias is not None:
                    linear.bias[rows] = 0.0
            part.down.weight[:, gone] = 0.0

    def current_width(self) -> int:
        return int(self._masks[0].sum())

    def kept(self) -> list[torch.Tensor]:
        """Per layer, the ascending indices of the neurons the masks keep."""
        return [torch.nonzero(m.cpu()).flatten() for m in self._masks]

    def state_dict(self) -> dict[str, Any]:
        """Plain values and tensors only, so ``torch.load(weights_only=True)`` reads it."""
        return {
            "step": self._step,
            "frozen": self._frozen,
            "final_width": self.schedule.final_width,
            "masks": [m.detach().cpu().clone() for m in self._masks],
            "scores": [s.detach().cpu().clone() for s in self._scores],
        }

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, Any]) -> None:
        if int(state["final_width"]) != self.schedule.final_width:
            raise ValueError(
                f"checkpoint narrows the FFN to {state['final_width']}, this run to "
                f"{self.schedule.final_width}"
            )
        masks, scores = list(state["masks"]), list(state["scores"])
        if len(masks) != len(self._ffns) or any(m.shape != (self.full_width,) for m in masks):
            raise ValueError("checkpoint neuron masks do not fit this model's FFN layers")
        device = self._ffns[0].up.weight.device
        self._masks = [m.to(device=device, dtype=torch.bool) for m in masks]
        self._scores = [s.to(device=device, dtype=torch.float32) for s in scores]
        self._step = int(state["step"])
        self._frozen = bool(state["frozen"])
        self._apply()


def _taylor(part: FFN) -> torch.Tensor:
    """|w · dL/dw| per neuron over its up (and gate) row, bias and down column; zeros
    where a weight has no gradient (a step that did not reach it)."""
    total = torch.zeros(part.width, device=part.up.weight.device)
    for linear in (part.up, part.gate):
        if linear is None:
            continue
        if linear.weight.grad is not None:
            total += part.fold((linear.weight * linear.weight.grad).abs().sum(dim=1))
        if linear.bias is not None and linear.bias.grad is not None:
            total += part.fold((linear.bias * linear.bias.grad).abs())
    if part.down.weight.grad is not None:
        total += (part.down.weight * part.down.weight.grad).abs().sum(dim=0)
    return total.float()


def _narrowed(mask: torch.Tensor, scores: torch.Tensor, width: int) -> torch.Tensor:
    """``mask`` with its lowest-scoring kept neurons dropped until ``width`` remain;
    ties go to the lower index staying (a stable order)."""
    kept = int(mask.sum())
    if kept <= width:
        return mask
    # Masked neurons rank below every kept one, so they are never brought back.
    ranked = torch.where(mask, scores.to(mask.device), torch.full_like(scores, -math.inf))
    order = torch.sort(ranked, descending=True, stable=True).indices
    narrowed = torch.zeros_like(mask)
    narrowed[order[:width]] = True
    return narrowed
