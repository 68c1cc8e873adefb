"""Structured depth pruning: keep evenly spaced encoder layers, drop the rest.

Removing whole layers is what makes a model smaller and faster in plain PyTorch, and a
shallower copy is fully described by ``num_hidden_layers``, so the result reloads with
the stock ``AutoModelForSequenceClassification``.
"""

from __future__ import annotations

import copy
import re

import torch
from transformers import AutoModelForSequenceClassification, PreTrainedModel

from workers.engine.layers import count_parameters, encoder_layers, encoder_layers_name


def evenly_spaced_layers(num_layers: int, keep: int) -> list[int]:
    """Teacher layer kept for each student layer: ``(i + 1) * L // k - 1``.

    This is TinyBERT's uniform map (student layer i learns from teacher layer
    (i+1)·L/k). It always keeps the last layer, whose output the classifier head was
    trained on; 3 of 6 gives [1, 3, 5], 2 of 6 gives [2, 5], 1 gives [L - 1].
    """
    if not 1 <= keep <= num_layers:
        raise ValueError(f"cannot keep {keep} of {num_layers} layers")
    return [(i + 1) * num_layers // keep - 1 for i in range(keep)]


def choose_layers(teacher: PreTrainedModel, params_ratio: float, non_embedding: int) -> list[int]:
    """The fewest evenly spaced layers whose non-embedding count reaches the target.

    ``non_embedding`` is the teacher's non-embedding parameter count; the part that is
    not in encoder layers (pooler, classifier) is always kept.
    """
    layers = encoder_layers(teacher)
    per_layer = [count_parameters(layer) for layer in layers]
    fixed = non_embedding - sum(per_layer)
    needed = params_ratio * non_embedding
    for keep in range(1, len(layers) + 1):
        chosen = evenly_spaced_layers(len(layers), keep)
        if fixed + sum(per_layer[j] for j in chosen) >= needed:
            return chosen
    return list(range(len(layers)))


def build_student(teacher: PreTrainedModel, keep: list[int]) -> PreTrainedModel:
    """A fresh model of the teacher's class with ``len(keep)`` layers, weights copied in.

    Built from a config rather than by slicing the teacher's module list, so that
    everything derived from the config (layer indices, caches) is consistent and the
    saved folder describes the model exactly.
    """
    config = copy.deepcopy(teacher.config)
    config.num_hidden_layers = len(keep)
    student = AutoModelForSequenceClassification.from_config(config, dtype=torch.float32)

    prefix = encoder_layers_name(teacher)
    layer_key = re.compile(rf"^{re.escape(prefix)}\.(\d+)\.(.+)$")
    new_index = {teacher_idx: student_idx for student_idx, teacher_idx in enumerate(keep)}
    state: dict[str, torch.Tensor] = {}
    for key, value in teacher.state_dict().items():
        match = layer_key.match(key)
        if match is None:
            state[key] = value.detach().clone()
            continue
        teacher_idx = int(match.group(1))
        if teacher_idx in new_index:
            state[f"{prefix}.{new_index[teacher_idx]}.{match.group(2)}"] = value.detach().clone()
    # strict: a key the student does not expect (or lacks) means the family does not
    # fit the encoder.layer assumption, and silently training from random weights
    # would hide that.
    student.load_state_dict(state, strict=True)
    return student.to(next(teacher.parameters()).device)
