"""A pass's part of its batch, by what each loss averages over.

A step may take its batch in several passes (gradient accumulation, data-parallel
processes). Each loss is a mean: the cross-entropy and the logit KL over labelled
positions (a sequence task's rows, a token task's labelled word pieces), the
hidden-state and attention losses over real tokens. The mean over a whole batch is the
sum over its passes of each pass's mean times the pass's share of that count, so a step
that weights each term by its pass's ``Share`` computes the whole batch's loss and
gradient, whatever the passes (up to float rounding). One pass of the whole batch has
``WHOLE``, and a step then computes exactly what it computed before passes existed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from workers.engine.data import IGNORE_INDEX, EncodedSplit

# What a loss averages over: labelled positions, or real (unpadded) tokens.
AveragedOver = Literal["labelled", "tokens"]


@dataclass(frozen=True)
class Share:
    labelled: float = 1.0
    tokens: float = 1.0

    def of(self, over: AveragedOver) -> float:
        return self.labelled if over == "labelled" else self.tokens


WHOLE = Share()
NOTHING = Share(0.0, 0.0)


@dataclass(frozen=True)
class Counts:
    """Per example of a split: its labelled positions and its real tokens."""

    labelled: list[int]
    tokens: list[int]

    @classmethod
    def of(cls, split: EncodedSplit) -> Counts:
        tokens = [len(row) for row in split.features["input_ids"]]
        if split.per_token:
            labelled = [sum(1 for tag in row if tag != IGNORE_INDEX) for row in split.labels]
        else:
            labelled = [1] * len(split)
        return cls(labelled=labelled, tokens=tokens)

    def share(self, part: list[int], batch: list[int]) -> Share:
        """``part``'s share of ``batch`` (both lists of example indices). A batch with no
        labelled position at all gives each pass its share of the rows instead: every
        labelled term is then zero anyway."""
        rows = len(part) / len(batch)
        labelled_all = sum(self.labelled[i] for i in batch)
        tokens_all = sum(self.tokens[i] for i in batch)
        labelled = sum(self.labelled[i] for i in part) / labelled_all if labelled_all else rows
        tokens = sum(self.tokens[i] for i in part) / tokens_all if tokens_all else rows
        return Share(labelled=labelled, tokens=tokens)
