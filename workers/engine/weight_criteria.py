"""How much each single weight matters, for pruning weights one at a time (sparsity.py).

A criterion holds the ``nn.Linear`` layers whose weights may be zeroed and gives one
score tensor per weight, shaped like it and never negative; ``masks.py`` zeroes the
lowest. ``observe()`` runs after every optimizer step until the masks freeze (that
step's gradients are still on the weights); ``close()`` stops whatever the criterion
does during forward passes. Named by ``pruning.importance``:

- ``magnitude``: |w|. Needs no data (Zhu & Gupta 2017; Han et al. 2015).
- ``taylor``: |w · dL/dw| of the distillation loss, with momentum: the first-order
  estimate of the loss a weight costs (SNIP; INC's ``snip_momentum``; close to
  movement pruning, Sanh et al. 2020, which fine-tuning favours over magnitude because
  the weights that matter for the new task are not the largest ones).
- ``activation``: |w_ij| · ||x_j||, the weight times the size of the input it
  multiplies (Wanda, Sun et al. 2023): a large weight on a feature that is almost
  always near zero contributes little.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import torch
from torch import nn

# Scores follow recent steps: one batch is noisy, and the model moves while it distils.
# INC's snip_momentum uses the same 0.9 (its alpha) with beta 1.
MOMENTUM = 0.9


class Criterion(Protocol):
    def observe(self) -> None: ...

    def scores(self) -> list[torch.Tensor]: ...

    def close(self) -> None: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class MagnitudeCriterion:
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


class _Accumulated:
    """Score tensors kept across steps, checkpointed with the run."""

    def __init__(self, linears: Sequence[nn.Linear], shape: Callable[[nn.Linear], torch.Size]):
        self._linears = list(linears)
        self._acc = [
            torch.zeros(shape(lin), device=lin.weight.device, dtype=torch.float32)
            for lin in self._linears
        ]

    def _on_devices(self) -> list[torch.Tensor]:
        # The model may have moved to another device since the scores were made.
        self._acc = [
            a.to(lin.weight.device) for a, lin in zip(self._acc, self._linears, strict=True)
        ]
        return self._acc

    def state_dict(self) -> dict[str, Any]:
        return {"scores": [a.detach().cpu().clone() for a in self._acc]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved = list(state["scores"])
        if [s.shape for s in saved] != [a.shape for a in self._acc]:
            raise ValueError(
                f"checkpoint {type(self).__name__} scores do not fit this model's weights"
            )
        self._acc = [
            s.to(device=a.device, dtype=torch.float32)
            for s, a in zip(saved, self._acc, strict=True)
        ]


class TaylorMomentumCriterion(_Accumulated):
    """s <- 0.9 s + |w · g| after every optimizer step; a weight the step did not reach
    (no gradient) only decays."""

    def __init__(self, linears: Sequence[nn.Linear]) -> None:
        super().__init__(linears, lambda lin: lin.weight.shape)

    @torch.no_grad()
    def observe(self) -> None:
        for linear, score in zip(self._linears, self._on_devices(), strict=True):
            score.mul_(MOMENTUM)
            weight = linear.weight
            if weight.grad is not None:
                score.add_((weight.detach() * weight.grad).abs().float())

    def scores(self) -> list[torch.Tensor]:
        return self._on_devices()

    def close(self) -> None:
        return None


class ActivationCriterion(_Accumulated):
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


CRITERIA: dict[str, Callable[[Sequence[nn.Linear]], Criterion]] = {
    "magnitude": MagnitudeCriterion,
    "taylor": TaylorMomentumCriterion,
    "activation": ActivationCriterion,
}
