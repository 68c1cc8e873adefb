"""The teacher's logits on the training split, computed once and reused every epoch.

Distillation otherwise runs the teacher forward at every step, in every epoch, on the
same examples: with the teacher in eval mode (no dropout) those logits never change, so
one pass is enough. Each example's logits are kept on the CPU in float32, unpadded:
one row of ``classes`` per sequence, or one row per token (the example's own length)
for token tasks. float32 because it holds a bf16 or fp32 teacher's logits without
rounding (a cached value differs from a recomputed one only by the float noise of
different padding), and because classifier logits are small: SST-2's 67k sentences x 2
classes take 0.5 MB, CoNLL-2003's ~250k word pieces x 9 tags about 10 MB. (A language
model's vocabulary-wide logits would not fit this way: they would need top-k storage.)

Batches find their rows by the ``index`` entry ``data.collate`` puts in each batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import PreTrainedModel

from workers.engine.data import EncodedSplit, iter_indexed_batches, model_inputs, to_device
from workers.engine.progress import Progress
from workers.engine.runtime import Runtime

CACHE_DTYPE = torch.float32


@dataclass(frozen=True)
class TeacherLogitsCache:
    """Example i's logits are ``values[offsets[i]:offsets[i + 1]]``: a single row for a
    sequence task, one row per token for a token task."""

    values: torch.Tensor  # [rows, classes], CPU, CACHE_DTYPE
    offsets: torch.Tensor  # [examples + 1], int64
    per_token: bool

    def __len__(self) -> int:
        return int(self.offsets.numel()) - 1

    @property
    def nbytes(self) -> int:
        return self.values.numel() * self.values.element_size()

    def lookup(self, index: torch.Tensor, length: int | None = None) -> torch.Tensor:
        """The cached logits of the examples ``index``, batched as the model would give
        them: ``[batch, classes]``, or ``[batch, length, classes]`` for token tasks, the
        positions past each example's end (padding) filled with zeros (their labels are
        ``IGNORE_INDEX``, so no loss reads them).

        On a GPU, reading a device ``index`` waits for the queued work (one sync per
        step); small next to the teacher forward pass it replaces.
        """
        rows = index.detach().to("cpu", torch.long)
        if not self.per_token:
            return self.values[rows]
        starts, ends = self.offsets[rows], self.offsets[rows + 1]
        longest = int((ends - starts).max()) if rows.numel() else 0
        width = longest if length is None else length
        if width < longest:
            raise ValueError(f"a batch of length {width} cannot hold an example of {longest}")
        out = self.values.new_zeros((rows.numel(), width, self.values.shape[-1]))
        for i, (start, end) in enumerate(zip(starts.tolist(), ends.tolist(), strict=True)):
            out[i, : end - start] = self.values[start:end]
        return out


def cache_teacher_logits(
    teacher: PreTrainedModel,
    split: EncodedSplit,
    *,
    batch_size: int,
    pad_token_id: int,
    runtime: Runtime,
    progress: Progress,
) -> TeacherLogitsCache:
    """One inference pass of the teacher over ``split`` on the run's device, under the
    run's autocast (what a per-step teacher forward would compute), batched by length so
    little of it is padding. Build it once per run: the teacher does not change between
    distillation rounds."""
    teacher.eval()
    lengths = [len(row) for row in split.features["input_ids"]]
    per_token = split.per_token
    offsets = torch.zeros(len(split) + 1, dtype=torch.long)
    offsets[1:] = torch.tensor(lengths if per_token else [1] * len(split)).cumsum(0)
    values: torch.Tensor | None = None
    batches = iter_indexed_batches(split, batch_size, pad_token_id=pad_token_id, by_length=True)
    for indices, batch in batches:
        progress.check_stop()
        with torch.inference_mode(), runtime.autocast():
            logits = teacher(**model_inputs(to_device(batch, runtime.device))).logits
        logits = logits.to("cpu", CACHE_DTYPE)
        if values is None:
            values = torch.empty((int(offsets[-1]), logits.shape[-1]), dtype=CACHE_DTYPE)
        for row, i in enumerate(indices):
            start, end = int(offsets[i]), int(offsets[i + 1])
            values[start:end] = logits[row, : lengths[i]] if per_token else logits[row]
    if values is None:
        raise ValueError("cannot cache teacher logits of an empty split")
    cache = TeacherLogitsCache(values=values, offsets=offsets, per_token=per_token)
    progress.log(
        f"cached the teacher's logits for {len(cache)} training examples "
        f"({cache.nbytes / 1e6:.1f} MB, {str(CACHE_DTYPE).removeprefix('torch.')})",
        data={"stage": "distilling", "cached_examples": len(cache), "bytes": cache.nbytes},
    )
    return cache
