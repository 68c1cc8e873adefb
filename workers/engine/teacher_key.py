"""The key a fine-tuned teacher is kept under: what its weights depend on, hashed.

A teacher without a trained head for the task is fine-tuned before anything else
(``phases/teacher_finetune.py``), and two runs that agree on everything below get the
same weights: the service keeps them (``workers/teacher_cache.py``) and a later run with
the same key skips the fine-tuning. So the key holds exactly what changes those weights,
and nothing that does not (the target, pruning, distillation, the student's epochs and
learning rate, export): a sweep of students over one teacher and dataset shares it.

Pure Python, no torch: the worker derives the key before it runs the engine.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from workers.engine.spec import CompressionSpec

# Raised whenever fine-tuning computes other weights from the same inputs (the training
# loop, the head's initialisation, the encoding of rows, the loss): entries an older
# recipe made then miss instead of handing a run a teacher it would not have made.
TEACHER_RECIPE_VERSION = 1


def teacher_key_parts(
    spec: CompressionSpec, *, teacher_sha256: str, train_sha256: str
) -> dict[str, Any]:
    """What a fine-tuned teacher's weights depend on.

    - ``teacher_sha256``: the uploaded teacher (weights, config and tokenizer).
    - ``train_sha256``: the training split as the engine reads it (its rows, label ids
      and order); the eval split only scores the teacher, which a run does again.
    - the task and the label names in order (the head's size and its ids);
    - ``max_seq_length`` (how rows are cut), and teacher fine-tuning's own settings:
      epochs, learning rate, batch size (the batch of one step, whatever the devices) and
      seed (the head's initialisation, the data order, dropout);
    - the device kind: bf16 autocast on CUDA and fp32 on the CPU train different
      weights, and a cached teacher should be the one a fresh run here would train.

    Left out on purpose: ``devices`` and ``gradient_accumulation_steps`` (the same update
    within float rounding, engine.md "Training on several GPUs"), checkpointing, and
    everything about the student.
    """
    training = spec.training
    return {
        "recipe": TEACHER_RECIPE_VERSION,
        "teacher_sha256": teacher_sha256,
        "train_sha256": train_sha256,
        "task": spec.task,
        "label_names": list(spec.label_names),
        "max_seq_length": training.max_seq_length,
        "teacher_epochs": training.teacher_epochs,
        "teacher_learning_rate": training.teacher_learning_rate,
        "batch_size": training.batch_size,
        "seed": training.seed,
        "device": spec.device,
    }


def teacher_cache_key(spec: CompressionSpec, *, teacher_sha256: str, train_sha256: str) -> str:
    """sha256 (hex) of ``teacher_key_parts``."""
    parts = teacher_key_parts(spec, teacher_sha256=teacher_sha256, train_sha256=train_sha256)
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()
