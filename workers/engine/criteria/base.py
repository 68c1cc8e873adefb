"""A criterion: how much each unit of a structure (importance, to choose what a smaller
student keeps) and each single weight (to choose what a sparse student zeroes) matters,
named by ``pruning.importance``.

A criterion is one class in one file of this package (``criteria/__init__.py`` imports
them all): its ``name`` (one of ``vocabulary.IMPORTANCE``), whether it reads data, the
``scope`` its weight scores compare over, its ``structure_scores`` and its
``weight_scorer``. Nothing outside the class branches on its name.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import torch
from torch import nn
from transformers import PreTrainedModel

from app.jobspec.registry import Registry
from workers.engine.criteria.units import Slice, StructureScores, groups_of
from workers.engine.data import Batch
from workers.engine.progress import Progress
from workers.engine.runtime import Runtime

# Weight scores follow recent steps: one batch is noisy, and the model moves while it
# distils. INC's snip_momentum uses the same 0.9 (its alpha) with beta 1.
MOMENTUM = 0.9
# How single weights are ranked against each other: across every matrix at once
# ("global": the scores estimate the same thing, the loss a weight costs, whatever the
# matrix) or within each matrix ("per_matrix": scales differ from one matrix to the
# next, and one global threshold could empty a small-scale matrix).
SCOPES = ("per_matrix", "global")


@dataclass(frozen=True)
class Scoring:
    """What a criterion scores: the model, the batches, the units of the structures
    asked for (``units.groups_of``: per structure, per layer, the weight slices), where
    it runs and whom to tell how far it got."""

    model: PreTrainedModel
    batches: Sequence[Batch]
    groups: dict[str, list[list[Slice]]]
    runtime: Runtime
    progress: Progress | None


class WeightScorer(Protocol):
    """Scores of single weights, one tensor per ``nn.Linear`` shaped like its weight and
    never negative; ``observe()`` runs after every optimizer step until the masks
    freeze, ``close()`` stops whatever it does during forward passes."""

    def observe(self) -> None: ...

    def scores(self) -> list[torch.Tensor]: ...

    def close(self) -> None: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class Criterion(ABC):
    name: ClassVar[str]
    # False when scoring never looks at the batches (no data needs preparing).
    needs_data: ClassVar[bool] = True
    # Where its weight scores are ranked (SCOPES).
    scope: ClassVar[str] = "per_matrix"

    @abstractmethod
    def weight_scorer(self, linears: Sequence[nn.Linear]) -> WeightScorer:
        """Scores for the single weights of ``linears``, kept while the student distils
        (sparsity.py zeroes the lowest)."""

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
        groups = groups_of(model, want)
        if not groups:
            return StructureScores()
        if self.needs_data and not batches:
            raise ValueError(f"{self.name} importance needs at least one batch")
        return self.score_units(Scoring(model, batches, groups, runtime, progress))

    @abstractmethod
    def score_units(self, scoring: Scoring) -> StructureScores:
        """Scores of the units in ``scoring.groups`` (at least one structure)."""

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


class Accumulated:
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


# vocabulary.IMPORTANCE names them (tests/engine/test_registries.py checks the two agree).
CRITERIA: Registry[type[Criterion]] = Registry("importance", param="pruning.importance")
