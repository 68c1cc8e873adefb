"""Length-bucketed batches: each row once an epoch, as many batches as plain ones, less
padding, and the same batches again from the same generator state (a resumed run)."""

from __future__ import annotations

import random

import torch

from workers.engine.buckets import bucketed_batches
from workers.engine.data import EncodedSplit, index_batches


def _split(n: int = 203) -> EncodedSplit:
    rng = random.Random(0)
    rows = [[1] * rng.randint(3, 60) for _ in range(n)]
    return EncodedSplit(name="train", features={"input_ids": rows}, labels=[0] * n, texts=[])


def _padding(split: EncodedSplit, batches: list[list[int]]) -> int:
    lengths = [len(row) for row in split.features["input_ids"]]
    return sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in batches)


def test_bucketed_batches_hold_each_row_once_with_less_padding() -> None:
    split = _split()
    bucketed = list(bucketed_batches(split, 8, generator=torch.Generator().manual_seed(0), span=10))
    plain = list(index_batches(split, 8, generator=torch.Generator().manual_seed(0)))
    assert sorted(i for b in bucketed for i in b) == list(range(len(split)))
    assert len(bucketed) == len(plain) == split.num_batches(8)
    assert _padding(split, bucketed) < _padding(split, plain) / 3


def test_the_same_generator_state_draws_the_same_batches() -> None:
    split, generator = _split(), torch.Generator().manual_seed(3)
    state = generator.get_state()
    first = list(bucketed_batches(split, 8, generator=generator, span=4))
    generator.set_state(state)
    assert list(bucketed_batches(split, 8, generator=generator, span=4)) == first
    assert list(bucketed_batches(split, 8, generator=generator, span=4)) != first
