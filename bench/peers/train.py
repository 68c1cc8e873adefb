"""What the in-process peers share: the data as the engine tokenises it, a plain
training loop with BERT's recipe, the encoder's Linear layers, and saving.

The loop is the peers' own (not the engine's), so that a change in the engine cannot
move a peer's numbers; its recipe is the usual one for BERT fine-tuning and the one the
engine uses too (AdamW, weight decay 0.01 on matrices, linear decay after 10% warm-up,
gradient clipping at 1.0), so that the methods differ in what they do, not in the
optimiser.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from transformers import AutoModelForSequenceClassification, PreTrainedModel

from workers.engine.data import Batch, EncodedSplit, encode, iter_batches, model_inputs, read_jsonl
from workers.engine.runtime import Runtime
from workers.engine.teacher import load_tokenizer

WARMUP_FRACTION = 0.1
WEIGHT_DECAY = 0.01
MAX_GRAD_NORM = 1.0


@dataclass(frozen=True)
class Budget:
    """The same for every method that trains: epochs over the same rows, same batch and
    learning rate, same seed."""

    epochs: int
    batch_size: int
    learning_rate: float
    seed: int
    max_seq_length: int


@dataclass(frozen=True)
class Setup:
    teacher_dir: Path
    train: EncodedSplit
    pad_token_id: int
    budget: Budget
    runtime: Runtime


def load_setup(teacher_dir: Path, train_file: Path, budget: Budget, runtime: Runtime) -> Setup:
    tokenizer = load_tokenizer(teacher_dir)
    examples = read_jsonl(train_file, num_labels=2, split="train")
    train = encode(tokenizer, examples, max_length=budget.max_seq_length, split="train")
    return Setup(teacher_dir, train, int(tokenizer.pad_token_id), budget, runtime)


def load_model(folder: Path) -> PreTrainedModel:
    return AutoModelForSequenceClassification.from_pretrained(
        folder, use_safetensors=True, trust_remote_code=False, dtype=torch.float32
    )


def encoder_linears(model: PreTrainedModel) -> list[nn.Linear]:
    """The Linear layers of the transformer blocks: attention and FFN, not the
    embeddings, pooler or classifier (what "prune the encoder" means in every row)."""
    return [m for m in model.base_model.encoder.modules() if isinstance(m, nn.Linear)]


def every_other_layer(teacher: PreTrainedModel) -> tuple[PreTrainedModel, list[int]]:
    """DistilBERT's initialisation: a copy of the teacher keeping layers 0, 2, 4, ..."""
    student = copy.deepcopy(teacher)
    layers = student.base_model.encoder.layer
    keep = list(range(0, len(layers), 2))
    student.base_model.encoder.layer = nn.ModuleList(layers[i] for i in keep)
    student.config.num_hidden_layers = len(keep)
    return student, keep


def save(model: PreTrainedModel, teacher_dir: Path, out: Path) -> Path:
    model.to("cpu").save_pretrained(out)
    load_tokenizer(teacher_dir).save_pretrained(out)
    return out


def _schedule(total: int, warmup: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))

    return factor


def train(
    model: PreTrainedModel,
    setup: Setup,
    step_loss: Callable[[Batch, torch.Tensor], torch.Tensor],
    *,
    teacher: PreTrainedModel | None = None,
    epochs: int | None = None,
) -> list[float]:
    """Train ``model``; ``step_loss(batch, student_logits)`` gives the loss. When a
    ``teacher`` is given, ``batch["teacher_logits"]`` holds its logits (no gradient).
    Returns the mean loss of each epoch."""
    budget = setup.budget
    epochs = budget.epochs if epochs is None else epochs
    device = setup.runtime.device
    model.to(device).train()
    if teacher is not None:
        teacher.to(device).eval()
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": WEIGHT_DECAY},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=budget.learning_rate)
    total = setup.train.num_batches(budget.batch_size) * epochs
    warmup = max(1, math.ceil(WARMUP_FRACTION * total))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(total, warmup))
    generator = torch.Generator().manual_seed(budget.seed)
    losses = []
    for _ in range(epochs):
        running, steps = 0.0, 0
        for batch in iter_batches(
            setup.train, budget.batch_size, pad_token_id=setup.pad_token_id, generator=generator
        ):
            batch = {k: v.to(device) for k, v in batch.items()}
            inputs = model_inputs(batch)
            if teacher is not None:
                with torch.no_grad(), setup.runtime.autocast():
                    batch["teacher_logits"] = teacher(**inputs).logits.float()
            with setup.runtime.autocast():
                logits = model(**inputs).logits.float()
            loss = step_loss(batch, logits)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, MAX_GRAD_NORM)
            optimizer.step()
            scheduler.step()
            running += float(loss.detach())
            steps += 1
        losses.append(running / max(steps, 1))
    model.eval()
    return losses
