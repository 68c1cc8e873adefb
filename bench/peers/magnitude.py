"""Peer: global magnitude pruning with ``torch.nn.utils.prune`` (global L1, unstructured).

What most people try first: rank every encoder Linear weight by |w| across all layers,
zero the smallest fraction, optionally fine-tune one epoch with the masks held (plain
cross-entropy on the labels), then ``prune.remove`` to fold the masks into the weights
before anything is measured. The shapes stay dense, so neither size nor latency moves;
the row says so by measuring them.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch.nn.functional as F
from torch.nn.utils import prune

from bench.peers.train import Setup, encoder_linears, load_model, save, train


def run(setup: Setup, amount: float, finetune_epochs: int, out: Path) -> dict[str, Any]:
    start = time.perf_counter()
    model = load_model(setup.teacher_dir)
    linears = encoder_linears(model)
    prune.global_unstructured(
        [(m, "weight") for m in linears], pruning_method=prune.L1Unstructured, amount=amount
    )
    losses: list[float] = []
    if finetune_epochs:
        # The pruning hooks keep masked weights at zero through every step: gradients
        # reach ``weight_orig`` but the forward pass sees ``weight_orig * mask``.
        losses = train(
            model,
            setup,
            lambda batch, logits: F.cross_entropy(logits, batch["labels"]),
            epochs=finetune_epochs,
        )
    for m in linears:
        prune.remove(m, "weight")
    save(model, setup.teacher_dir, out)
    return {
        "wall_s": round(time.perf_counter() - start, 1),
        "details": {"finetune_epochs": finetune_epochs, "epoch_losses": losses},
    }
