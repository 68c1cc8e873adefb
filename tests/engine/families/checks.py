"""What every family must do, as functions the per-family test files call on their own
tiny random models: its counts match the built model, pruning gives a student of the
planned size that reloads with the plain Auto class and matches itself after reload,
and neurons that carry nothing go without changing the logits."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch
from transformers import PreTrainedModel

from app.jobspec.plan import PrunePlan, TeacherSizes, layers_for, plan_structured
from tests.engine.tiny_models import logits, random_batches, reload
from workers.engine.importance import get_importance
from workers.engine.layers import encoder_layers, ffn, parameter_counts
from workers.engine.prune_layers import selection_for, sizes_from_model, structures_to_score
from workers.engine.prune_width import Selection, build_pruned
from workers.engine.runtime import Runtime

Build = Callable[..., PreTrainedModel]


def sizes_of(model: PreTrainedModel) -> TeacherSizes:
    """The plan's sizes, checked by ``sizes_from_model`` against every layer's count and
    the non-embedding total of the model itself."""
    return sizes_from_model(model, parameter_counts(model).non_embedding)


def pruned(
    teacher: PreTrainedModel,
    ratio: float,
    structured: tuple[str, ...],
    *,
    rule: str = "top",
    importance: str = "magnitude",
) -> tuple[PreTrainedModel, PrunePlan]:
    """The student of a plan for ``ratio``, its structures ranked by ``importance``."""
    sizes = sizes_of(teacher)
    plan = plan_structured(sizes, ratio, structured)
    plan = replace(plan, layer_map=tuple(layers_for(sizes, rule, plan.num_layers)))
    scores = None
    want = sorted(structures_to_score(sizes, plan))
    if want:
        runtime = Runtime(device=torch.device("cpu"))
        scores = get_importance(importance).structure_scores(
            teacher, random_batches(1), runtime=runtime, want=want
        )
    student = build_pruned(teacher, selection_for(sizes, plan, scores))
    assert parameter_counts(student).non_embedding == plan.non_embedding
    return student, plan


def assert_reloads_and_matches(
    student: PreTrainedModel, folder: Path, *, tokens: bool = False
) -> PreTrainedModel:
    """save_pretrained, then AutoModelFor*.from_pretrained: same class, same logits."""
    batch = random_batches(1, seed=3)[0]
    before = logits(student, batch)
    again = reload(student, folder, tokens=tokens)
    assert type(again) is type(student)
    torch.testing.assert_close(logits(again, batch), before, atol=1e-5, rtol=0)
    return again


def assert_silent_neurons_go_exactly(teacher: PreTrainedModel, silent: list[int]) -> None:
    """Neurons whose down columns are zero carry nothing: a student without them, every
    layer kept, gives the teacher's logits (the slicing of up, its gate and down fit)."""
    with torch.no_grad():
        for layer in encoder_layers(teacher):
            ffn(teacher, layer).down.weight[:, silent] = 0
    width = ffn(teacher, encoder_layers(teacher)[0]).width
    kept = torch.tensor([j for j in range(width) if j not in silent])
    layers = tuple(range(len(encoder_layers(teacher))))
    student = build_pruned(teacher, Selection(layers=layers, neurons=[kept] * len(layers)))
    assert ffn(student, encoder_layers(student)[0]).width == width - len(silent)
    batch = random_batches(1, seed=4)[0]
    torch.testing.assert_close(logits(student, batch), logits(teacher, batch), atol=1e-5, rtol=0)
