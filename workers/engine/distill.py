"""Distillation of the pruned student from the teacher.

Loss = alpha · CE(labels) + (1 - alpha) · T² · KL(teacher/T ‖ student/T)
       [+ HIDDEN_WEIGHT · MSE(hidden states through the layer map)]
       [+ ATTENTION_WEIGHT · KL(teacher ‖ student attention maps through the layer map)].

Task-agnostic: for token classification the logits are per token and CE and KL count
only the pieces that carry a label (a word's first piece; ``losses.labelled_rows``),
while the hidden-state and attention losses cover every real token (the attention mask).

With ``training.cache_teacher_logits`` the teacher runs once over the training split
(``logits_cache``) instead of at every step; the representation losses need its
forward pass at every step, so they cannot be combined with the cache.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedModel

from app.jobspec import rules
from workers.engine.checkpoint import cpu_state
from workers.engine.data import Batch, EncodedSplit, model_inputs
from workers.engine.layers import parameter_counts
from workers.engine.logits_cache import TeacherLogitsCache, cache_teacher_logits
from workers.engine.losses import LossInputs, get_loss
from workers.engine.progress import Progress
from workers.engine.runtime import Runtime
from workers.engine.shares import WHOLE, AveragedOver, Share
from workers.engine.spec import (
    DistillationSpec,
    TrainingSpec,
    student_learning_rate,
)
from workers.engine.train import LoopHooks, TrainConfig, train_loop

# TinyBERT weights its hidden-state term 1:1 with the prediction terms; with
# LayerNorm-ed states the MSE sits in the same range as the CE/KL terms.
HIDDEN_WEIGHT = 1.0
# TinyBERT weights its attention term 1:1 too; a KL per query row over heads and layers
# is of the order of the logit KL (0.1-1 early in training).
ATTENTION_WEIGHT = 1.0


def hidden_pairs(layer_map: list[int]) -> list[tuple[int, int]]:
    """(student, teacher) indices into ``hidden_states``, whose entry 0 is the embedding
    output and entry i + 1 the output of layer i."""
    return [(0, 0)] + [(s + 1, t + 1) for s, t in enumerate(layer_map)]


def attention_pairs(layer_map: list[int]) -> list[tuple[int, int]]:
    """(student, teacher) indices into ``attentions``, whose entry i is layer i's map."""
    return list(enumerate(layer_map))


def check_cache_compatible(distillation: DistillationSpec, training: TrainingSpec) -> None:
    """Cached logits replace the teacher's forward pass, which the hidden-state and
    attention losses still need at every step (caching their inputs instead would take
    layers x tokens x width per example: gigabytes on SST-2)."""
    rules.check_distillation(
        hidden_states=distillation.hidden_states,
        attention=distillation.attention,
        cache_teacher_logits=training.cache_teacher_logits,
    )


@contextlib.contextmanager
def eager_attention(models: list[PreTrainedModel]) -> Iterator[None]:
    """Eager attention while the block runs, the models' own implementation after.

    SDPA and flash kernels never materialise the attention probabilities, so they
    cannot return them (transformers 5 returns no maps with ``output_attentions``).
    Eager attention writes [batch, heads, length, length] scores and probabilities per
    layer and keeps them for backward: more memory and slower attention than the fused
    kernels on a GPU. Restored afterwards, so evaluation and latency run as loaded.
    """
    previous = [m.config._attn_implementation for m in models]
    try:
        for model in models:
            model.set_attn_implementation("eager")
        yield
    finally:
        for model, implementation in zip(models, previous, strict=True):
            if implementation is not None:
                model.set_attn_implementation(implementation)


@dataclass
class DistillStep:
    """The loss of one distillation step (a pass over ``share`` of its batch). An object,
    not a closure: a data-parallel loop hands it, with the modules it refers to, to its
    other processes (train.py)."""

    student: PreTrainedModel
    teacher: PreTrainedModel
    projections: nn.ModuleList
    # Each loss with its weight and what it averages over.
    weighted: list[tuple[Callable[[LossInputs], torch.Tensor], float, AveragedOver]]
    temperature: float
    # (student, teacher) layers the representation losses compare; None: not used.
    hidden_pairs: list[tuple[int, int]] | None
    attention_pairs: list[tuple[int, int]] | None
    cache: TeacherLogitsCache | None
    runtime: Runtime

    def __call__(self, batch: Batch, share: Share = WHOLE) -> torch.Tensor:
        inputs = model_inputs(batch)
        use_hidden, use_attention = self.hidden_pairs is not None, self.attention_pairs is not None
        pairs, attn_pairs = self.hidden_pairs or [], self.attention_pairs or []
        teacher_hidden = teacher_attentions = None
        if self.cache is not None:
            teacher_out = self.cache.lookup(batch["index"], batch["input_ids"].shape[1])
            teacher_logits = teacher_out.to(self.runtime.device, non_blocking=True)
        else:
            with torch.inference_mode(), self.runtime.autocast():
                t_out = self.teacher(
                    **inputs, output_hidden_states=use_hidden, output_attentions=use_attention
                )
            # Inference tensors cannot be saved for backward; a clone made outside
            # inference mode is an ordinary tensor (and only the mapped layers are kept).
            teacher_logits = t_out.logits.clone()
            if use_hidden:
                teacher_hidden = [t_out.hidden_states[t].clone() for _, t in pairs]
            if use_attention:
                teacher_attentions = [t_out.attentions[t].clone() for _, t in attn_pairs]
        with self.runtime.autocast():
            s_out = self.student(
                **inputs, output_hidden_states=use_hidden, output_attentions=use_attention
            )
        loss_inputs = LossInputs(
            student_logits=s_out.logits,
            labels=batch["labels"],
            attention_mask=batch["attention_mask"],
            teacher_logits=teacher_logits,
            temperature=self.temperature,
            student_hidden=[s_out.hidden_states[s] for s, _ in pairs] if use_hidden else None,
            teacher_hidden=teacher_hidden,
            projections=self.projections,
            student_attentions=(
                [s_out.attentions[s] for s, _ in attn_pairs] if use_attention else None
            ),
            teacher_attentions=teacher_attentions,
        )
        if share == WHOLE:
            return sum(fn(loss_inputs) * weight for fn, weight, _ in self.weighted)
        return sum(
            fn(loss_inputs) * (weight * share.of(over)) for fn, weight, over in self.weighted
        )


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
    teacher_logits: TeacherLogitsCache | None = None,
    length_buckets: int = 0,
) -> list[dict[str, float]]:
    """Train ``student`` against ``teacher`` on ``train`` and return the loss curve.

    With ``training.cache_teacher_logits`` the teacher's logits come from
    ``teacher_logits`` (computed here, once, when not given: a caller running several
    rounds against the same teacher passes one cache to all of them).
    ``length_buckets``: TrainConfig's (jobs do not bucket; bench/gpu_throughput.py does).
    """
    check_cache_compatible(distillation, training)
    # Each term with what it averages over (shares.py).
    terms: list[tuple[str, float, AveragedOver]] = [
        ("ce", distillation.alpha, "labelled"),
        ("kd_kl", 1.0 - distillation.alpha, "labelled"),
    ]
    if distillation.hidden_states:
        terms.append(("hidden_mse", HIDDEN_WEIGHT, "tokens"))
    if distillation.attention:
        terms.append(("attention_kl", ATTENTION_WEIGHT, "tokens"))
    terms = [term for term in terms if term[1] > 0]
    weighted = [(get_loss(name), weight, over) for name, weight, over in terms]
    # Unless the job set it, the rate follows how much of the teacher this student keeps.
    kept = parameter_counts(student).non_embedding / parameter_counts(teacher).non_embedding
    learning_rate = student_learning_rate(training, kept)
    progress.log(
        "distillation loss: "
        + " + ".join(f"{weight:g} * {name}" for name, weight, _ in terms)
        + f"; learning rate {learning_rate:g}",
        data={
            "stage": "distilling",
            "losses": {name: weight for name, weight, _ in terms},
            "learning_rate": learning_rate,
        },
    )
    use_hidden, use_attention = distillation.hidden_states, distillation.attention
    pairs = hidden_pairs(layer_map)
    attn_pairs = attention_pairs(layer_map)
    projections = make_projections(student, teacher, len(pairs)).to(runtime.device)
    hooks = _with_projections(hooks, projections)
    teacher.eval()
    cache = teacher_logits if training.cache_teacher_logits else None
    if training.cache_teacher_logits and cache is None:
        cache = cache_teacher_logits(
            teacher,
            train,
            batch_size=training.batch_size,
            pad_token_id=pad_token_id,
            runtime=runtime,
            progress=progress,
        )
    if cache is not None and len(cache) != len(train):
        raise ValueError(f"the cache holds {len(cache)} examples, the split {len(train)}")

    step_loss = DistillStep(
        student=student,
        teacher=teacher,
        projections=projections,
        weighted=weighted,
        temperature=distillation.temperature,
        hidden_pairs=pairs if use_hidden else None,
        attention_pairs=attn_pairs if use_attention else None,
        cache=cache,
        runtime=runtime,
    )

    config = TrainConfig(
        name="distilling",
        epochs=training.epochs,
        batch_size=training.batch_size,
        learning_rate=learning_rate,
        seed=training.student_seed_value,
        pad_token_id=pad_token_id,
        length_buckets=length_buckets,
    )
    attention = eager_attention([student, teacher]) if use_attention else contextlib.nullcontext()
    with attention:
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
