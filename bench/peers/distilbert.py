"""Peer: a DistilBERT-style student (Sanh et al. 2019).

Every other layer of the teacher (0, 2, 4 of MiniLM's six) initialises a half-depth
student, trained on the same rows and budget with alpha · CE(labels) + (1 - alpha) ·
T² · KL(teacher/T ‖ student/T), alpha = 0.5, T = 2 (the engine's defaults too, so that the
difference from the modelpress rows is in how the student is made, not in the loss
weights). DistilBERT's pre-training also used a cosine loss on hidden states; the
task-distillation recipe people copy from it is the logit one, which is what runs here.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from bench.peers.train import Setup, every_other_layer, load_model, save, train

ALPHA = 0.5
TEMPERATURE = 2.0


def kd_loss(batch: dict[str, torch.Tensor], logits: torch.Tensor) -> torch.Tensor:
    t = TEMPERATURE
    kl = F.kl_div(
        F.log_softmax(logits / t, dim=-1),
        F.softmax(batch["teacher_logits"] / t, dim=-1),
        reduction="batchmean",
    )
    return ALPHA * F.cross_entropy(logits, batch["labels"]) + (1 - ALPHA) * t * t * kl


def run(setup: Setup, out: Path) -> dict[str, Any]:
    start = time.perf_counter()
    teacher = load_model(setup.teacher_dir)
    student, kept = every_other_layer(teacher)
    losses = train(student, setup, kd_loss, teacher=teacher)
    save(student, setup.teacher_dir, out)
    return {
        "wall_s": round(time.perf_counter() - start, 1),
        "details": {
            "kept_teacher_layers": kept,
            "alpha": ALPHA,
            "temperature": TEMPERATURE,
            "epoch_losses": losses,
        },
    }
