"""Peer: the two-step recipe of the original design note.

Step 1: distil the teacher into a smaller student (every other layer, as DistilBERT
initialises it) with MSE between student and teacher logits, on the same rows and
budget. Step 2: zero every encoder Linear weight with |w| < 0.01, with no recovery
training (the recipe has none). What fraction that zeroes depends on the weights; the
row reports it (``encoder_nonzero``) rather than assuming it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from bench.peers.train import Setup, encoder_linears, every_other_layer, load_model, save, train

THRESHOLD = 0.01


def mse_loss(batch: dict[str, torch.Tensor], logits: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(logits, batch["teacher_logits"])


def run(setup: Setup, out: Path) -> dict[str, Any]:
    start = time.perf_counter()
    teacher = load_model(setup.teacher_dir)
    student, kept = every_other_layer(teacher)
    losses = train(student, setup, mse_loss, teacher=teacher)
    zeroed = total = 0
    with torch.no_grad():
        for linear in encoder_linears(student):
            small = linear.weight.abs() < THRESHOLD
            linear.weight[small] = 0.0
            zeroed += int(small.sum())
            total += small.numel()
    save(student, setup.teacher_dir, out)
    return {
        "wall_s": round(time.perf_counter() - start, 1),
        "details": {
            "kept_teacher_layers": kept,
            "threshold": THRESHOLD,
            "encoder_linear_weights_zeroed": zeroed / total,
            "epoch_losses": losses,
        },
    }
