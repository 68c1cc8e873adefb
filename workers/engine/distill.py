"""Distillation of the pruned student from the teacher.

Loss = alpha · CE(labels) + (1 - alpha) · T² · KL(teacher/T ‖ student/T)
       [+ HIDDEN_WEIGHT · MSE(hidden states through the layer map)].

Task-agnostic: for token classification the logits are per token and CE and KL count
only the pieces that carry a label (a word's first piece; ``losses.labelled_rows``),
while the hidden-state MSE covers every real token (the attention mask).
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn
from transformers import PreTrainedModel

from workers.engine.checkpoint import cpu_state
from workers.engine.data import Batch, EncodedSplit, model_inputs
from workers.engine.losses import LossInputs, get_loss
from workers.engine.progress import Progress
from workers.engine.runtime import Runtime
from workers.engine.spec import DistillationSpec, TrainingSpec
from workers.engine.train import LoopHooks, TrainConfig, train_loop

# TinyBERT weights its hidden-state term 1:1 with the prediction terms; with
# LayerNorm-ed states the MSE sits in the same range as the CE/KL terms.
HIDDEN_WEIGHT = 1.0


def hidden_pairs(layer_map: list[int]) -> list[tuple[int, int]]:
    """(student, teacher) indices into ``hidden_states``, whose entry 0 is the embedding
    output and entry i + 1 the output of layer i."""
    return [(0, 0)] + [(s + 1, t + 1) for s, t in enumerate(layer_map)]


def make_projections(
    student: PreTrainedModel, teacher: PreTrainedModel, count: int
) -> nn.ModuleList:
    s_width, t_width = student.config.hidden_size, teacher.config.hidden_size
    if s_width == t_width:
        return nn.ModuleList(nn.Identity() for _ in range(count))
    return nn.ModuleList(nn.Linear(s_width, t_width) for _ in range(count))


def distill(
    student: PreTrainedModel,
    teacher: PreTrainedModel,
    train: EncodedSplit,
    *,
    layer_map: list[int],
    distillation: DistillationSpec,
    training: TrainingSpec,
    pad_token_id: int,
    runtime: Runtime,
    progress: Progress,
    hooks: LoopHooks | None = None,
) -> list[dict[str, float]]:
    terms = [("ce", distillation.alpha), ("kd_kl", 1.0 - distillation.alpha)]
    if distillation.hidden_states:
        terms.append(("hidden_mse", HIDDEN_WEIGHT))
    weighted = [(get_loss(name), weight) for name, weight in terms if weight > 0]
    use_hidden = distillation.hidden_states
    pairs = hidden_pairs(layer_map)
    projections = make_projections(student, teacher, len(pairs)).to(runtime.device)
    hooks = _with_projections(hooks, projections)
    teacher.eval()

    def step_loss(batch: Batch) -> torch.Tensor:
        inputs = model_inputs(batch)
        with torch.inference_mode(), runtime.autocast():
            t_out = teacher(**inputs, output_hidden_states=use_hidden)
        # Inference tensors cannot be saved for backward; a clone made outside
        # inference mode is an ordinary tensor (and only the mapped layers are kept).
        teacher_logits = t_out.logits.clone()
        teacher_hidden = [t_out.hidden_states[t].clone() for _, t in pairs] if use_hidden else None
        with runtime.autocast():
            s_out = student(**inputs, output_hidden_states=use_hidden)
        loss_inputs = LossInputs(
            student_logits=s_out.logits,
            labels=batch["labels"],
            attention_mask=batch["attention_mask"],
            teacher_logits=teacher_logits,
            temperature=distillation.temperature,
            student_hidden=[s_out.hidden_states[s] for s, _ in pairs] if use_hidden else None,
            teacher_hidden=teacher_hidden,
            projections=projections,
        )
        return sum(fn(loss_inputs) * weight for fn, weight in weighted)

    config = TrainConfig(
        name="distilling",
        epochs=training.epochs,
        batch_size=training.batch_size,
        learning_rate=training.learning_rate,
        seed=training.seed,
        pad_token_id=pad_token_id,
    )
    curve = train_loop(
        config=config,
        modules=[student, projections],
        data=train,
        step_loss=step_loss,
        runtime=runtime,
        progress=progress,
        hooks=hooks,
    )
    teacher.eval()
    return curve


def _with_projections(hooks: LoopHooks | None, projections: nn.ModuleList) -> LoopHooks | None:
    """The projections train with the student, so checkpoints carry them too."""
    if hooks is None:
        return None
    if hooks.resume is not None and "projections" in hooks.resume:
        projections.load_state_dict(hooks.resume["projections"])
    save = hooks.save
    if save is None:
        return hooks
    return dataclasses.replace(
        hooks, save=lambda state: save({**state, "projections": cpu_state(projections)})
    )
