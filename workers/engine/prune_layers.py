"""Structured pruning to a plan: evenly spaced layers and, in each, the top FFN neurons,
heads and (model-wide) hidden channels by importance.

Removing whole structures is what makes a model smaller and faster in plain PyTorch,
and each is described by the config (``num_hidden_layers``, one ``intermediate_size``,
``hidden_size``, ``num_attention_heads``, ``num_key_value_heads``), so the result
reloads with the stock ``AutoModelForSequenceClassification``. How many of each is the
plan (``plan.py``); which ones is the importance score (``importance.py``); the slicing
is ``prune_width.py``; the choice of heads under KV groups is ``prune_heads.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import torch
from transformers import PreTrainedModel

from app.jobspec.plan import (
    PrunePlan,
    TeacherSizes,
    evenly_spaced_layers,
    plan_student,
    sizes_from_config,
)
from workers.engine.criteria.units import StructureScores
from workers.engine.importance import top_neurons, top_units
from workers.engine.layers import classifier_dense, count_parameters, encoder_layers
from workers.engine.prune_heads import select_heads
from workers.engine.prune_width import Selection, build_pruned, top_channels
from workers.engine.spec import EngineInputError

__all__ = [
    "build_student",
    "choose_layers",
    "evenly_spaced_layers",
    "selection_for",
    "sizes_from_model",
    "structures_to_score",
]


def sizes_from_model(teacher: PreTrainedModel, non_embedding: int) -> TeacherSizes:
    """The plan's sizes from the teacher's config, checked against the model itself:
    every layer and the non-embedding total (``non_embedding``) must hold what the
    sizes say, or a student's count would not be the plan's."""
    sizes = sizes_from_config(
        teacher.config,
        num_labels=int(teacher.config.num_labels),
        head_dense=classifier_dense(teacher) is not None,
    )
    expected = sizes.layer_params(sizes.teacher_shape)
    per_layer = [count_parameters(layer) for layer in encoder_layers(teacher)]
    if per_layer != expected or sizes.teacher_non_embedding != non_embedding:
        raise EngineInputError(
            "unsupported_architecture",
            f"{type(teacher).__name__} does not have the parameters its config describes "
            f"(layers {sorted(set(per_layer))} vs {sorted(set(expected))}, non-embedding "
            f"{non_embedding} vs "
            f"{sizes.teacher_non_embedding}), so a pruning plan could not be trusted",
        )
    return sizes


def choose_layers(teacher: PreTrainedModel, params_ratio: float, non_embedding: int) -> list[int]:
    """The fewest evenly spaced layers, at full width, whose non-embedding count reaches
    the target (the layers-only plan)."""
    sizes = sizes_from_model(teacher, non_embedding)
    return list(plan_student(sizes, params_ratio).layer_map)


def structures_to_score(sizes: TeacherSizes, plan: PrunePlan) -> set[str]:
    """What ``importance.structure_scores`` must rank for ``plan`` (empty: nothing
    narrower than the teacher, layers only)."""
    want: set[str] = set()
    if plan.intermediate_size < sizes.intermediate_size:
        want.add("neurons")
    if plan.hidden_size < sizes.hidden_size:
        want.add("channels")
        if not sizes.explicit_heads:  # heads and the head's dense follow the hidden width
            want |= {"heads", "classifier"} if sizes.head_dense else {"heads"}
    if plan.num_attention_heads < sizes.num_heads or plan.num_key_value_heads < sizes.num_kv_heads:
        want.add("heads")
    return want


def selection_for(
    sizes: TeacherSizes, plan: PrunePlan, scores: StructureScores | None
) -> Selection:
    """The top-scoring structures in the plan's sizes (``scores`` may be None only when
    ``structures_to_score`` is empty)."""
    layer_map = list(plan.layer_map)
    want = structures_to_score(sizes, plan)
    if want and scores is None:
        raise ValueError(f"the plan narrows {sorted(want)}, which needs importance scores")
    selection = Selection(layers=tuple(layer_map))
    if not want:
        return selection
    assert scores is not None

    def kept(name: str, values: list[torch.Tensor] | None) -> list[torch.Tensor]:
        if values is None:
            raise ValueError(f"no {name} scores for a plan that narrows them")
        return [values[j] for j in layer_map]

    if "neurons" in want:
        neurons = top_neurons(kept("neuron", scores.neurons), plan.intermediate_size)
        selection = replace(selection, neurons=neurons)
    if "channels" in want:
        if scores.channels is None:
            raise ValueError("no channel scores for a plan that narrows the hidden width")
        selection = replace(selection, channels=top_channels(scores.channels, plan.hidden_size))
        if scores.classifier is not None and not sizes.explicit_heads:
            classifier = top_units(scores.classifier, plan.hidden_size)
            selection = replace(selection, classifier=classifier)
    if "heads" in want:
        group = sizes.kv_group if sizes.explicit_heads else 1
        heads, kv_heads = select_heads(
            kept("head", scores.heads),
            group=group,
            num_heads=plan.num_attention_heads,
            num_kv_heads=plan.num_key_value_heads,
        )
        kv_heads = kv_heads if sizes.explicit_heads else None
        selection = replace(selection, heads=heads, kv_heads=kv_heads)
    return selection


def build_student(
    teacher: PreTrainedModel,
    keep: Sequence[int],
    neurons: Sequence[torch.Tensor] | None = None,
) -> PreTrainedModel:
    """A fresh model of the teacher's class with ``len(keep)`` layers, weights copied in.

    ``neurons[i]``, when given, holds the indices of teacher layer ``keep[i]``'s FFN
    neurons that student layer i keeps (the same count for every layer, which becomes
    ``intermediate_size``). Narrower hidden widths and fewer heads: ``build_pruned``.
    """
    return build_pruned(teacher, Selection(layers=tuple(keep), neurons=neurons))
