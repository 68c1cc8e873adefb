"""What an int8 export of a random tiny model must hold.

A random tiny model's logits are often within 1e-4 of each other, closer than int8
rounding moves them (0.01 logits, rows 0.0002 apart, seen for ELECTRA; a ModernBERT token
student agreed on 88% of its positions on one CPU and more on another): its argmax
agreement measures ties and the CPU's int8 kernels, not the export. What must hold: int8
moves the logits little against their size, and keeps the argmax of every row (or real
token) whose lead is larger than what int8 moves."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from transformers import PreTrainedModel

from workers.engine import onnx_export
from workers.engine.data import Batch

# int8 may move a logit by up to this share of the largest logit's size.
MAX_SHARE_MOVED = 0.25


def _compared(model: PreTrainedModel, session: Any, batch: Batch) -> tuple[torch.Tensor, ...]:
    with torch.inference_mode():
        expected = model(**onnx_export.model_inputs(batch)).logits.float()
    actual = onnx_export.ort_logits(session, batch).float()
    if expected.dim() == 3:  # tokens: the positions that are not padding
        keep = batch["attention_mask"].bool()
        expected, actual = expected[keep], actual[keep]
    return expected, actual


def assert_int8_close(model: PreTrainedModel, session: Any, batches: Sequence[Batch]) -> None:
    model.eval()
    pairs = [_compared(model, session, batch) for batch in batches]
    scale = max(float(expected.abs().max()) for expected, _ in pairs)
    moved = max(float((expected - actual).abs().max()) for expected, actual in pairs)
    assert moved <= MAX_SHARE_MOVED * scale, (moved, scale)
    decided = 0
    for expected, actual in pairs:
        top2 = expected.topk(2, dim=-1).values
        clear = (top2[..., 0] - top2[..., 1]) > 2 * moved
        kept = (expected.argmax(-1) == actual.argmax(-1))[clear]
        assert kept.all(), f"{int((~kept).sum())} clearly decided rows changed class"
        decided += int(clear.sum())
    assert decided >= 3, "too few clearly decided rows to check"
