"""Unstructured and 2:4 pruning during training, and how to report it honestly.

What is pruned: the weight matrices of the ``nn.Linear`` layers inside the transformer
blocks (attention projections and FFN), never embeddings, norms, biases, the pooler or
the task head. Masks are applied in place (no ``torch.nn.utils.prune`` hooks or extra
parameters), so the model stays a plain transformers model that saves and reloads as is.

Zeros keep dense shapes: the model gets neither smaller in memory nor faster in plain
PyTorch. What it gains is a smaller compressed artifact (``compressed_size_bytes``) and,
for 2:4, a pattern that sparse kernels can use, which must be measured, not promised.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from app.jobspec import families, vocabulary
from app.jobspec.values import TWO_FOUR, TWO_FOUR_SPARSITY
from workers.engine import criteria
from workers.engine.criteria.base import SCOPES, WeightScorer
from workers.engine.criteria.magnitude import MagnitudeWeights
from workers.engine.layers import find
from workers.engine.masks import (
    check_two_four_shape,
    two_four_groups,
    two_four_masks,
    unstructured_masks,
)
from workers.engine.sparsity_schedule import cubic_sparsity, default_schedule, is_update_step
from workers.engine.spec import EngineInputError

PATTERNS = vocabulary.SPARSITY_PATTERNS

# gzip (deflate, level 6) everywhere rather than zstd where installed: a reported size
# must not depend on which optional package a machine happens to have.
COMPRESSION = "gzip"
_GZIP_LEVEL = 6
_CHUNK = 16 * 1024 * 1024


def transformer_blocks(model: nn.Module) -> nn.ModuleList:
    """The list of transformer blocks where the model's family keeps it."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    blocks = None
    if model_type in families.model_types():
        path = families.family_of(model_type).layers
        blocks = find(getattr(model, "base_model", model), path)
    if isinstance(blocks, nn.ModuleList) and len(blocks) > 0:
        return blocks
    raise EngineInputError(
        "unsupported_architecture",
        f"{type(model).__name__} is not of a supported family with a list of transformer "
        f"blocks (model_type {model_type!r}); sparsity cannot find the weights to prune",
    )


def prunable_linears(model: nn.Module) -> list[tuple[str, nn.Linear]]:
    """(module name, layer) of every ``nn.Linear`` inside the transformer blocks."""
    blocks = transformer_blocks(model)
    block_modules = {id(m) for m in blocks.modules()}
    found: list[tuple[str, nn.Linear]] = []
    seen: set[int] = set()
    for name, module in model.named_modules():
        linear = id(module) in block_modules and isinstance(module, nn.Linear)
        if linear and id(module.weight) not in seen:  # a tied weight is pruned once
            seen.add(id(module.weight))
            found.append((name, module))
    if not found:
        raise EngineInputError(
            "unsupported_architecture",
            f"{type(model).__name__} has no nn.Linear layers in its transformer blocks",
        )
    return found


def prunable_weights(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """(state-dict name, weight) of every ``nn.Linear`` inside the transformer blocks."""
    return [(f"{name}.weight", linear.weight) for name, linear in prunable_linears(model)]


@dataclass(frozen=True, kw_only=True)
class SparsityConfig:
    """``target``: fraction of prunable weights zeroed at ``end_step`` (0.5 for "2:4").
    Steps count optimizer steps taken; masks change only on ``begin_step``,
    every ``update_every`` steps after it, and at ``end_step``; then they are frozen.
    ``criterion`` names how weights are scored (``criteria/``); ``scope`` whether an
    unstructured target is met in every matrix ("per_matrix") or over all of them
    ("global"); 2:4 is always per group of four."""

    target: float
    pattern: str = "unstructured"
    begin_step: int
    end_step: int
    update_every: int = 1
    criterion: str = "magnitude"
    scope: str = "per_matrix"

    def __post_init__(self) -> None:
        if self.pattern not in PATTERNS:
            raise ValueError(f"pattern must be one of {PATTERNS}, got {self.pattern!r}")
        if self.criterion not in criteria.CRITERIA:
            known = criteria.CRITERIA.names()
            raise ValueError(f"criterion must be one of {known}, got {self.criterion!r}")
        if self.scope not in SCOPES:
            raise ValueError(f"scope must be one of {SCOPES}, got {self.scope!r}")
        if not 0.0 < self.target < 1.0:
            raise ValueError(f"target sparsity must be in (0, 1), got {self.target}")
        if self.pattern == TWO_FOUR and self.target != TWO_FOUR_SPARSITY:
            raise ValueError(f"a 2:4 pattern is always 0.5 sparsity, got {self.target}")
        if not 0 <= self.begin_step <= self.end_step:
            raise ValueError(f"need 0 <= begin_step <= end_step, got {self}")
        if self.update_every < 1:
            raise ValueError(f"update_every must be at least 1, got {self.update_every}")


def sparsity_config(target: float, pattern: str, total_steps: int) -> SparsityConfig:
    """The default placement (``sparsity_schedule.default_schedule``) for a run of
    ``total_steps`` optimizer steps."""
    steps = default_schedule(total_steps)
    return SparsityConfig(
        target=target,
        pattern=pattern,
        begin_step=steps.begin_step,
        end_step=steps.end_step,
        update_every=steps.update_every,
    )


class SparsityPruner:
    """Gradual pruning of single weights driven by the training loop's step counter.

    Call ``on_step(step)`` right after every ``optimizer.step()``: the optimizer moves
    pruned weights (AdamW's momentum and gradients reach them), and re-applying the masks
    puts them back to zero before the next forward pass.
    """

    def __init__(self, model: nn.Module, config: SparsityConfig) -> None:
        self.config = config
        linears = prunable_linears(model)
        self._named = [(f"{name}.weight", linear.weight) for name, linear in linears]
        criterion = criteria.get(config.criterion)
        self._criterion: WeightScorer = criterion.weight_scorer([lin for _, lin in linears])
        if config.pattern == TWO_FOUR:
            for name, weight in self._named:
                try:
                    check_two_four_shape(weight)
                except ValueError as error:
                    raise EngineInputError("unsupported_architecture", f"{name}: {error}") from None
        self._masks = [torch.ones_like(w, dtype=torch.bool) for _, w in self._named]
        self._step = 0
        self._frozen = False
        self._folded = False
        # Nothing to re-apply until the first mask with a zero (steps before begin_step).
        self._has_zeros = False

    @property
    def frozen(self) -> bool:
        return self._frozen

    def target_at(self, step: int) -> float:
        c = self.config
        return cubic_sparsity(step, final=c.target, begin_step=c.begin_step, end_step=c.end_step)

    def masks(self) -> dict[str, torch.Tensor]:
        return {name: mask for (name, _), mask in zip(self._named, self._masks, strict=True)}

    def _updates_at(self, step: int) -> bool:
        c = self.config
        return not self._frozen and is_update_step(
            step, begin_step=c.begin_step, end_step=c.end_step, update_every=c.update_every
        )

    @torch.no_grad()
    def on_step(self, step: int) -> None:
        if self._folded:
            raise RuntimeError("the pruner was folded; it no longer prunes")
        # The model may have moved to another device since the masks were made.
        self._masks = [m.to(w.device) for (_, w), m in zip(self._named, self._masks, strict=True)]
        if not self._frozen:
            self._criterion.observe()
        if self._updates_at(step):
            scores = self._criterion.scores()
            if self.config.pattern == "2:4":
                self._masks = two_four_masks(scores, self._masks, self.target_at(step))
            else:
                self._masks = unstructured_masks(
                    scores, self._masks, self.target_at(step), scope=self.config.scope
                )
            self._frozen = step >= self.config.end_step
            if self._frozen:
                self._criterion.close()  # no more observations to pay for
            self._has_zeros = not all(bool(m.all()) for m in self._masks)
        self._apply()
        self._step = step

    @torch.no_grad()
    def _apply(self) -> None:
        if not self._has_zeros:
            return
        for (_, weight), mask in zip(self._named, self._masks, strict=True):
            # masked_fill, not mul: 0 * negative is -0.0, which compresses worse.
            weight.masked_fill_(~mask, 0.0)

    def current_sparsity(self) -> float:
        """Fraction of prunable weights the masks zero."""
        if self._folded:
            raise RuntimeError("the pruner was folded; use sparsity_report(model)")
        kept = sum(int(m.sum()) for m in self._masks)
        total = sum(m.numel() for m in self._masks)
        return 1.0 - kept / total

    def state_dict(self) -> dict[str, Any]:
        """Plain values and tensors only, so ``torch.load(weights_only=True)`` reads it."""
        return {
            "step": self._step,
            "frozen": self._frozen,
            "pattern": self.config.pattern,
            "target": self.config.target,
            "criterion": self.config.criterion,
            "masks": {name: mask.detach().cpu().clone() for name, mask in self.masks().items()},
            "scores": self._criterion.state_dict(),
        }

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, Any]) -> None:
        if (state["pattern"], state["target"]) != (self.config.pattern, self.config.target):
            raise ValueError(
                f"checkpoint masks are {state['pattern']} at {state['target']}, this run "
                f"asks for {self.config.pattern} at {self.config.target}"
            )
        criterion = state.get("criterion", "magnitude")
        if criterion != self.config.criterion:
            raise ValueError(
                f"checkpoint scores weights by {criterion}, this run by {self.config.criterion}"
            )
        saved = state["masks"]
        names = [name for name, _ in self._named]
        if sorted(saved) != sorted(names):
            raise ValueError("checkpoint masks do not name this model's prunable weights")
        masks = []
        for name, weight in self._named:
            mask = saved[name]
            if mask.shape != weight.shape or mask.dtype != torch.bool:
                raise ValueError(f"checkpoint mask for {name} is {mask.dtype} {mask.shape}")
            masks.append(mask.to(weight.device))
        self._masks = masks
        self._criterion.load_state_dict(state.get("scores", {}))
        self._has_zeros = not all(bool(m.all()) for m in masks)
        self._step = int(state["step"])
        self._frozen = bool(state["frozen"])
        if self._frozen:
            self._criterion.close()
        self._apply()

    @torch.no_grad()
    def fold(self) -> None:
        """Leave the zeros in the weights and let go of the masks: the model is a plain
        transformers model from here on (no hooks were ever installed)."""
        self._masks = [m.to(w.device) for (_, w), m in zip(self._named, self._masks, strict=True)]
        self._apply()
        self._masks = []
        self._named = []
        self._criterion.close()
        self._criterion = MagnitudeWeights([])  # lets go of the scores too
        self._folded = True


def sparsity_report(model: nn.Module) -> dict[str, Any]:
    """Zeros among the prunable weights, measured on the weights themselves.

    ``groups_2_4`` is the fraction of groups of four (along the input dimension) holding
    at least two zeros, over matrices whose input width is a multiple of four (None if
    none is).
    """
    total = nonzero = groups_ok = groups = 0
    for _, weight in prunable_weights(model):
        total += weight.numel()
        nonzero += int(torch.count_nonzero(weight.detach()))
        if weight.ndim == 2 and weight.shape[1] % 4 == 0:
            ok, n = two_four_groups(weight)
            groups_ok, groups = groups_ok + ok, groups + n
    return {
        "encoder_parameters": total,
        "encoder_nonzero": nonzero,
        "sparsity": 1.0 - nonzero / total,
        "groups_2_4": groups_ok / groups if groups else None,
    }


def _chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            yield chunk


def compressed_size_bytes(path: Path) -> int:
    """Bytes of the safetensors weights after gzip at level 6 (what ``gzip -6`` writes).
    ``path`` is a ``.safetensors`` file or a folder (its shards summed). Zeros compress:
    this is the honest size benefit of unstructured sparsity."""
    path = Path(path)
    files = sorted(path.glob("*.safetensors")) if path.is_dir() else [path]
    if not files:
        raise FileNotFoundError(f"no safetensors weights in {path}")
    size = 0
    for file in files:
        # wbits 31: a gzip container (header and trailer included).
        compressor = zlib.compressobj(_GZIP_LEVEL, zlib.DEFLATED, 31)
        for chunk in _chunks(file):
            size += len(compressor.compress(chunk))
        size += len(compressor.flush())
    return size
