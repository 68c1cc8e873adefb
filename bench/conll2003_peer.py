"""Peer of bench/conll2003.py: a DistilBERT-style token classifier (Sanh et al. 2019).

Every other layer of the fine-tuned teacher (0, 2, 4 of MiniLM's six) initialises a
half-depth student, with the teacher's embeddings and token head; it trains on the same
sentences and budget as the modelpress rows with alpha · CE(tags) + (1 - alpha) · T² ·
KL(teacher/T ‖ student/T) on per-token logits, alpha = 0.5, T = 2 (the engine's defaults,
so that the rows differ in how the student is made, not in the loss weights).

Only the positions that carry a tag (the first piece of each word) enter either term:
later word pieces, special tokens and padding say nothing about an entity. The training
loop is the SST-2 peers' own (bench/peers/train.py: AdamW, linear decay after 10%
warm-up, clipping at 1.0), not the engine's; the sentences are tokenised and aligned by
the engine's ``encode_words``, so every row sees the very same inputs and labels.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from transformers import AutoModelForTokenClassification, PreTrainedModel

from bench.peers.train import Budget, Setup, every_other_layer, save, train
from workers.engine.data import IGNORE_INDEX, encode_words, read_token_jsonl
from workers.engine.runtime import Runtime
from workers.engine.tasks import TOKEN_CLASSIFICATION, get_task
from workers.engine.teacher import load_tokenizer

ALPHA = 0.5
TEMPERATURE = 2.0


def load_setup(
    teacher_dir: Path, train_file: Path, num_labels: int, budget: Budget, runtime: Runtime
) -> Setup:
    tokenizer = load_tokenizer(teacher_dir, get_task(TOKEN_CLASSIFICATION))
    examples = read_token_jsonl(train_file, num_labels=num_labels, split="train")
    encoded = encode_words(tokenizer, examples, max_length=budget.max_seq_length, split="train")
    return Setup(teacher_dir, encoded, int(tokenizer.pad_token_id), budget, runtime)


def load_model(folder: Path) -> PreTrainedModel:
    return AutoModelForTokenClassification.from_pretrained(
        folder, use_safetensors=True, trust_remote_code=False, dtype=torch.float32
    )


def kd_token_loss(batch: dict[str, torch.Tensor], logits: torch.Tensor) -> torch.Tensor:
    """CE + T²·KL over the tagged positions of ``[batch, tokens, tags]`` logits."""
    labels = batch["labels"]
    keep = labels != IGNORE_INDEX
    if not bool(keep.any()):
        return logits.sum() * 0.0
    student = logits[keep]
    teacher = batch["teacher_logits"][keep]
    t = TEMPERATURE
    kl = F.kl_div(
        F.log_softmax(student / t, dim=-1),
        F.softmax(teacher / t, dim=-1),
        reduction="batchmean",  # per tagged word
    )
    return ALPHA * F.cross_entropy(student, labels[keep]) + (1 - ALPHA) * t * t * kl


def run(setup: Setup, out: Path) -> dict[str, Any]:
    start = time.perf_counter()
    teacher = load_model(setup.teacher_dir)
    student, kept = every_other_layer(teacher)
    train_start = time.perf_counter()
    losses = train(student, setup, kd_token_loss, teacher=teacher)
    train_s = time.perf_counter() - train_start
    save(student, setup.teacher_dir, out)
    return {
        "wall_s": round(time.perf_counter() - start, 1),
        "train_s": round(train_s, 1),
        "details": {
            "kept_teacher_layers": kept,
            "alpha": ALPHA,
            "temperature": TEMPERATURE,
            "loss": "CE + T^2 KL on the first piece of each word",
            "epoch_losses": losses,
        },
    }
