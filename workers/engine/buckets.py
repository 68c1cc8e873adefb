"""Length-bucketed training batches: rows of similar length share a batch, so less of
each batch is padding.

Each epoch draws the same shuffle as plain batches, cuts it into spans of ``span``
batches, sorts each span by length and cuts it into batches, then shuffles the order of
the batches: which rows meet in a batch is still random within a span, every row is
seen once an epoch, and the epoch has as many batches as a plain one (a span holds
whole batches; only the last batch of the last span may be short). Everything is drawn
from the loop's generator, so a resumed run redraws the same batches.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from workers.engine.data import EncodedSplit


def bucketed_batches(
    split: EncodedSplit, batch_size: int, *, generator: torch.Generator, span: int
) -> Iterator[list[int]]:
    rows = split.features["input_ids"]
    order = torch.randperm(len(split), generator=generator).tolist()
    chunk = span * batch_size
    batches: list[list[int]] = []
    for start in range(0, len(order), chunk):
        part = sorted(order[start : start + chunk], key=lambda i: len(rows[i]))
        batches += [part[i : i + batch_size] for i in range(0, len(part), batch_size)]
    for index in torch.randperm(len(batches), generator=generator).tolist():
        yield batches[index]
