"""Structured pruning: keep evenly spaced encoder layers and, in each, the top FFN neurons.

Removing whole layers and whole FFN neurons is what makes a model smaller and faster in
plain PyTorch, and both are described by the config (``num_hidden_layers`` and the one
``intermediate_size`` every layer shares), so the result reloads with the stock
``AutoModelForSequenceClassification``. How many of each is the plan (``plan.py``);
which neurons is the importance score (``importance.py``).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence

import torch
from transformers import AutoModelForSequenceClassification, PreTrainedModel

from workers.engine.layers import count_parameters, encoder_layers, encoder_layers_name, ffn
from workers.engine.plan import TeacherSizes, evenly_spaced_layers, plan_student

__all__ = ["build_student", "choose_layers", "evenly_spaced_layers", "sizes_from_model"]


def sizes_from_model(teacher: PreTrainedModel, non_embedding: int) -> TeacherSizes:
    """The plan's sizes, counted on the model itself rather than derived from its config.

    ``non_embedding`` is the teacher's non-embedding parameter count; the part that is
    not in encoder layers (pooler, classifier) is always kept.
    """
    layers = encoder_layers(teacher)
    per_layer = {count_parameters(layer) for layer in layers}
    if len(per_layer) != 1:
        raise AssertionError(f"encoder layers differ in size: {sorted(per_layer)}")
    layer_size = per_layer.pop()
    first = ffn(layers[0])
    width, hidden = first.up.out_features, first.up.in_features
    per_neuron = 2 * hidden + 1
    if first.up.bias is None or first.down.in_features != width:
        raise AssertionError("FFN without an intermediate bias is not a BERT-family layer")
    return TeacherSizes(
        num_layers=len(layers),
        hidden_size=hidden,
        intermediate_size=width,
        layer_other=layer_size - per_neuron * width,
        fixed=non_embedding - len(layers) * layer_size,
    )


def choose_layers(teacher: PreTrainedModel, params_ratio: float, non_embedding: int) -> list[int]:
    """The fewest evenly spaced layers, at full width, whose non-embedding count reaches
    the target (the layers-only plan)."""
    sizes = sizes_from_model(teacher, non_embedding)
    return list(plan_student(sizes, params_ratio, ffn=False).layer_map)


def build_student(
    teacher: PreTrainedModel,
    keep: Sequence[int],
    neurons: Sequence[torch.Tensor] | None = None,
) -> PreTrainedModel:
    """A fresh model of the teacher's class with ``len(keep)`` layers, weights copied in.

    ``neurons[i]``, when given, holds the indices of teacher layer ``keep[i]``'s FFN
    neurons that student layer i keeps (the same count for every layer, which becomes
    ``intermediate_size``): rows of the intermediate dense weight and bias, columns of
    the output dense weight.

    Built from a config rather than by slicing the teacher's module list, so that
    everything derived from the config (layer indices, caches) is consistent and the
    saved folder describes the model exactly.
    """
    keep = list(keep)
    config = copy.deepcopy(teacher.config)
    config.num_hidden_layers = len(keep)
    template = ffn(encoder_layers(teacher)[0])
    index: list[torch.Tensor] | None = None
    if neurons is not None:
        if len(neurons) != len(keep):
            raise ValueError(f"{len(neurons)} neuron sets for {len(keep)} layers")
        index = [torch.as_tensor(n, dtype=torch.long).cpu() for n in neurons]
        widths = {len(n) for n in index}
        if len(widths) != 1:
            raise ValueError(f"every layer must keep the same FFN width, got {sorted(widths)}")
        width = widths.pop()
        full = template.up.out_features
        valid = all(
            len(torch.unique(n)) == width and int(n.min()) >= 0 and int(n.max()) < full
            for n in index
        )
        if not (1 <= width <= full and valid):
            raise ValueError(f"neuron indices must be {width} distinct values in 0..{full - 1}")
        config.intermediate_size = width
    student = AutoModelForSequenceClassification.from_config(config, dtype=torch.float32)

    prefix = encoder_layers_name(teacher)
    layer_key = re.compile(rf"^{re.escape(prefix)}\.(\d+)\.(.+)$")
    new_index = {teacher_idx: student_idx for student_idx, teacher_idx in enumerate(keep)}
    rows = {f"{template.up_name}.weight", f"{template.up_name}.bias"}
    columns = {f"{template.down_name}.weight"}
    state: dict[str, torch.Tensor] = {}
    for key, value in teacher.state_dict().items():
        match = layer_key.match(key)
        if match is None:
            state[key] = value.detach().clone()
            continue
        teacher_idx, name = int(match.group(1)), match.group(2)
        if teacher_idx not in new_index:
            continue
        student_idx = new_index[teacher_idx]
        tensor = value.detach()
        if index is not None and name in rows:
            tensor = tensor.index_select(0, index[student_idx].to(tensor.device))
        elif index is not None and name in columns:
            tensor = tensor.index_select(1, index[student_idx].to(tensor.device))
        state[f"{prefix}.{student_idx}.{name}"] = tensor.clone().contiguous()
    # strict: a key the student does not expect (or lacks) means the family does not
    # fit the encoder.layer assumption, and silently training from random weights
    # would hide that.
    student.load_state_dict(state, strict=True)
    return student.to(next(teacher.parameters()).device)
