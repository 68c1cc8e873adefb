"""One round of a strategy (strategies.py): prune the current model to the round's
share of the teacher, or take the student a checkpoint carries."""

from __future__ import annotations

import copy
import dataclasses
import itertools
from typing import Any

import torch
from transformers import PreTrainedModel

from app.jobspec import vocabulary
from app.jobspec.plan import layers_for, plan_for_shape, plan_structured, with_ffn_width
from workers.engine.criteria.units import StructureScores
from workers.engine.data import EncodedSplit, iter_batches
from workers.engine.importance import get_importance
from workers.engine.layers import parameter_counts
from workers.engine.progress import Progress
from workers.engine.prune_layers import selection_for, sizes_from_model, structures_to_score
from workers.engine.prune_width import build_pruned
from workers.engine.run_state import DistillingState
from workers.engine.runtime import Runtime
from workers.engine.spec import CompressionSpec
from workers.engine.strategies import Round
from workers.engine.tasks import get_task


def prune_round(
    model: PreTrainedModel,
    current: Round,
    *,
    teacher: PreTrainedModel,
    teacher_non_embedding: int,
    layer_map: list[int],
    train: EncodedSplit,
    spec: CompressionSpec,
    pad_id: int,
    runtime: Runtime,
    progress: Progress,
) -> tuple[PreTrainedModel, list[int], float, dict[str, Any] | None]:
    """Prune ``model`` (the teacher, or the student of the round before) to
    ``current.ratio`` of the teacher's non-embedding parameters, ranked by importance
    measured through ``model``. Returns the student, its map to teacher layers, the
    ratio reached and the plan's report (None when nothing was removed)."""
    counts = parameter_counts(model)
    relative = current.ratio * teacher_non_embedding / counts.non_embedding
    if relative >= 1.0 - 1e-9:
        # Nothing to remove this round: a sparsity target, or the first round of a
        # distill_then_prune with a target that whole layers already met.
        # A full-size student is the teacher's shape and weights, trained separately.
        student = copy.deepcopy(model) if model is teacher else model
        progress.log(
            "pruning: nothing removed in this round (the student keeps the shape it has)",
            data={"stage": "pruning", "params_ratio": counts.non_embedding / teacher_non_embedding},
        )
        return student, layer_map, counts.non_embedding / teacher_non_embedding, None
    sizes = sizes_from_model(model, counts.non_embedding)
    if model is not teacher:
        original = sizes_from_model(teacher, teacher_non_embedding)
        sizes = dataclasses.replace(sizes, floors_of=original.teacher_shape)
    if current.shape is not None:
        plan = plan_for_shape(sizes, current.shape, relative)
    else:
        plan = plan_structured(sizes, relative, current.structured)
    kept = layers_for(sizes, get_task(spec.task).layer_rule, plan.num_layers)
    plan = dataclasses.replace(plan, layer_map=tuple(kept))
    gradual_to: int | None = None
    if current.gradual_ffn and plan.intermediate_size < sizes.intermediate_size:
        # The FFN keeps its width now and loses it while the student distils.
        gradual_to = plan.intermediate_size
        plan = with_ffn_width(sizes, plan, sizes.intermediate_size)
    ranked_structures = sorted(structures_to_score(sizes, plan))
    scores = None
    importance_name: str | None = None
    if ranked_structures:
        importance_name = spec.pruning.importance
        scores = score_structures(model, train, ranked_structures, spec, pad_id, runtime, progress)
    student = build_pruned(model, selection_for(sizes, plan, scores))
    student_non_embedding = parameter_counts(student).non_embedding
    if student_non_embedding != plan.non_embedding:
        raise AssertionError(
            f"the student has {student_non_embedding} non-embedding parameters, "
            f"the plan said {plan.non_embedding}"
        )
    achieved = student_non_embedding / teacher_non_embedding
    new_map = [layer_map[i] for i in plan.layer_map]
    pruning_plan: dict[str, Any] = {
        "num_layers": plan.num_layers,
        "intermediate_size": plan.intermediate_size if gradual_to is None else gradual_to,
        "importance": importance_name,
    }
    if gradual_to is not None:
        pruning_plan["gradual_ffn"] = {
            "from": sizes.intermediate_size,
            "to": gradual_to,
            "importance": "taylor (accumulated while distilling)",
        }
    if set(vocabulary.HEAD_WIDTHS) & set(current.structured):
        # The widths only where they could change, so layers/FFN reports stay as they were.
        pruning_plan |= {
            "hidden_size": plan.hidden_size,
            "num_attention_heads": plan.num_attention_heads,
            "num_key_value_heads": plan.num_key_value_heads,
        }
    ranked = (
        f" ({', '.join(ranked_structures)} ranked by {importance_name} importance)"
        if importance_name
        else ""
    )
    if gradual_to is not None:
        ranked += f"; the FFN narrows to {gradual_to} while it distils"
    progress.log(
        f"pruning plan: kept teacher layers {new_map} ({plan.num_layers} of "
        f"{sizes.num_layers}) with FFN width {plan.intermediate_size} of "
        f"{sizes.intermediate_size}, hidden width {plan.hidden_size} of "
        f"{sizes.hidden_size}, {plan.num_attention_heads} of {sizes.num_heads} heads"
        f"{ranked}: {achieved:.3f} of the teacher's non-embedding parameters "
        f"(target {current.ratio:.3f})",
        data={
            "stage": "pruning",
            "layer_map": new_map,
            "params_ratio": achieved,
            **plan.as_dict(),
            **pruning_plan,
        },
    )
    return student, new_map, achieved, pruning_plan


def student_from_checkpoint(
    teacher: PreTrainedModel, saved: DistillingState, runtime: Runtime
) -> PreTrainedModel:
    """The student a checkpoint was made from: its config and weights, no pruning redone
    (a later round's pruning depended on the distillation before it)."""
    config = type(teacher.config).from_dict(saved.student_config)
    student = type(teacher)._from_config(config, dtype=torch.float32)
    student.load_state_dict(saved.student)
    return student.to(runtime.device)


def score_structures(
    teacher: PreTrainedModel,
    train: EncodedSplit,
    structures: list[str],
    spec: CompressionSpec,
    pad_id: int,
    runtime: Runtime,
    progress: Progress,
) -> StructureScores:
    """Importance of the ``structures`` a plan narrows (importance.STRUCTURES), scored
    through the teacher on a seeded sample of training batches."""
    importance = get_importance(spec.pruning.importance)
    batches = []
    if importance.needs_data:
        generator = torch.Generator().manual_seed(spec.training.student_seed_value)
        stream = iter_batches(
            train, spec.training.batch_size, pad_token_id=pad_id, generator=generator
        )
        batches = list(itertools.islice(stream, spec.pruning.importance_batches))
    return importance.structure_scores(
        teacher, batches, runtime=runtime, want=structures, progress=progress
    )
