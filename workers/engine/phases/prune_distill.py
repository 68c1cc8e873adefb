"""The ``pruning`` and ``distilling`` phases, in the strategy's rounds (strategies.py):
each round prunes the current model to its share of the teacher, then distils it."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from transformers import PreTrainedModel

from app.jobspec.speed_plan import SpeedPlan
from workers.engine.checkpoint import cpu_state
from workers.engine.distill import distill
from workers.engine.fake_quant import QuantAware, begin_step, restore
from workers.engine.layers import parameter_counts
from workers.engine.logits_cache import TeacherLogitsCache, cache_teacher_logits
from workers.engine.neurons import NeuronPruner, neuron_schedule
from workers.engine.phases.run import Run
from workers.engine.phases.teacher_finetune import FinetunedTeacher
from workers.engine.prune_width import Selection, build_pruned
from workers.engine.rounds import prune_round, student_from_checkpoint
from workers.engine.run_state import Curve, DistillingState, LoopState, RunState
from workers.engine.runtime import seed_everything
from workers.engine.sparsity import SparsityPruner, sparsity_report
from workers.engine.speed_target import speed_target
from workers.engine.strategies import FixedShape, Round, plan_rounds


@dataclass
class Student:
    """The student as the rounds leave it, and how it came to be."""

    model: PreTrainedModel
    layer_map: list[int]  # the teacher layer each student layer came from
    achieved: float  # its share of the teacher's non-embedding parameters
    pruning_plan: dict[str, Any]
    rounds: list[dict[str, Any]]  # a report per round
    curve: Curve  # distillation loss, the rounds one after the other
    speed: SpeedPlan | None = None
    # The last round's, when it zeroed single weights (the report's sparsity).
    pruner: SparsityPruner | None = None

    @classmethod
    def from_teacher(cls, teacher: PreTrainedModel, speed: SpeedPlan | None) -> Student:
        layers = list(range(teacher.config.num_hidden_layers))
        return cls(teacher, layers, 1.0, {}, [], [], speed)

    @classmethod
    def from_checkpoint(cls, run: Run, saved: DistillingState, speed: SpeedPlan | None) -> Student:
        return cls(
            model=student_from_checkpoint(run.teacher, saved, run.runtime),
            layer_map=list(saved.layer_map),
            achieved=saved.achieved,
            pruning_plan=dict(saved.pruning_plan),
            rounds=[dict(r) for r in saved.rounds],
            curve=[dict(point) for point in saved.curve_before],
            speed=speed,
        )


def prune_and_distill(run: Run, teacher: FinetunedTeacher, resumed: RunState | None) -> Student:
    """Run the strategy's rounds from the first, or from the one a distillation
    checkpoint was made in (its student as saved, its distillation continued)."""
    saved = resumed.distilling if resumed is not None else None
    if run.spec.training.student_seed is not None:
        # The student's dropout draws from its own seed, not from where the teacher's
        # fine-tuning (or the cache that skipped it) left the generators.
        seed_everything(run.spec.training.student_seed)
    speed, fixed = _speed_plan(run, saved)
    rounds = plan_rounds(run.spec, fixed)
    teacher_non_embedding = parameter_counts(run.teacher).non_embedding
    teacher_logits = _teacher_logits(run)
    if saved is not None:
        student = Student.from_checkpoint(run, saved, speed)
    else:
        student = Student.from_teacher(run.teacher, speed)
    first_round = saved.round if saved is not None else 0
    for index, current in enumerate(rounds):
        if index < first_round:
            continue
        run.progress.share(index, len(rounds))
        resuming = resumed if saved is not None and index == first_round else None
        if resuming is None:
            _prune(run, student, current, index, teacher_non_embedding)
        _distill(
            run,
            student,
            current,
            index,
            teacher=teacher,
            teacher_logits=teacher_logits,
            teacher_non_embedding=teacher_non_embedding,
            resuming=resuming,
            last=index == len(rounds) - 1,
        )
    run.progress.share(0, 1)
    if len(rounds) > 1:
        student.pruning_plan = {**student.pruning_plan, "rounds": student.rounds}
    if speed is not None:
        student.pruning_plan = {**student.pruning_plan, "speed_plan": speed.as_dict()}
    return student


def _speed_plan(
    run: Run, saved: DistillingState | None
) -> tuple[SpeedPlan | None, FixedShape | None]:
    """A speedup target's student shape: the one a checkpoint carries, else timed now
    (part of the pruning phase)."""
    if run.spec.target.speedup is None:
        return None, None
    if saved is None:
        run.progress.start_phase("pruning")
    with run.timed("pruning"):
        if saved is not None:
            planned, source = saved.speed_plan, "the checkpoint"
        else:
            planned, source = run.spec.speed_plan, "the job: its target's first training"
        return speed_target(
            run.spec,
            run.teacher,
            run.tokenizer,
            run.evaluation.texts,
            seq_len=run.max_len,
            saved=planned,
            saved_from=source,
            progress=run.progress,
        )


def _teacher_logits(run: Run) -> TeacherLogitsCache | None:
    # With cache_teacher_logits the teacher runs over the training split once, for
    # every round (validate_spec has checked no loss needs its hidden states).
    training = run.spec.training
    if not training.cache_teacher_logits:
        return None
    return cache_teacher_logits(
        run.teacher,
        run.train,
        batch_size=training.batch_size,
        pad_token_id=run.pad_id,
        runtime=run.runtime,
        progress=run.progress,
    )


def _prune(
    run: Run, student: Student, current: Round, index: int, teacher_non_embedding: int
) -> None:
    if run.progress.phase != "pruning":  # the speed plan may have started it
        run.progress.start_phase("pruning")
    with run.timed("pruning"):
        student.model, student.layer_map, student.achieved, plan_report = prune_round(
            student.model,
            current,
            teacher=run.teacher,
            teacher_non_embedding=teacher_non_embedding,
            layer_map=student.layer_map,
            train=run.train,
            spec=run.spec,
            pad_id=run.pad_id,
            runtime=run.runtime,
            progress=run.progress,
        )
    if plan_report is not None:
        student.pruning_plan = plan_report
    gradual = (plan_report or {}).get("gradual_ffn")
    student.rounds.append(
        {
            "round": index + 1,
            "target_ratio": current.ratio,
            "params_ratio": student.achieved,
            "structured": list(current.structured),
            "epochs": current.epochs,
            "layer_map": list(student.layer_map),
            **({"ffn_gradual_to": gradual["to"]} if gradual else {}),
        }
    )


def _distill(
    run: Run,
    student: Student,
    current: Round,
    index: int,
    *,
    teacher: FinetunedTeacher,
    teacher_logits: TeacherLogitsCache | None,
    teacher_non_embedding: int,
    resuming: RunState | None,
    last: bool,
) -> None:
    """Distil round ``index``'s student, zeroing weights or narrowing its FFN as it
    trains where the round says so, through int8 rounding at the end of the ``last``
    round when export.quantization_aware asks; ``resuming``: the checkpoint made in it."""
    saved = resuming.distilling if resuming is not None else None
    run.progress.start_phase("distilling")
    with run.timed("distilling"):
        model = student.model
        steps = run.train.num_batches(run.spec.training.batch_size) * current.epochs
        pruner = SparsityPruner(model, current.zeroing.config(steps)) if current.zeroing else None
        if pruner is not None and saved is not None:
            assert saved.sparsity is not None
            pruner.load_state_dict(saved.sparsity)
        ffn_to = student.rounds[-1].get("ffn_gradual_to")
        neurons = NeuronPruner(model, neuron_schedule(ffn_to, steps)) if ffn_to else None
        if neurons is not None and saved is not None:
            assert saved.neurons is not None
            neurons.load_state_dict(saved.neurons)
        quant = _quant_aware(run, model, steps, resuming) if last else None
        # What every checkpoint of this round carries besides the loop and the weights.
        fixed = {
            "round": index,
            "student_config": model.config.to_dict(),
            "layer_map": list(student.layer_map),
            "achieved": student.achieved,
            "pruning_plan": dict(student.pruning_plan),
            "rounds": [dict(r) for r in student.rounds],
            # A later round (distill_then_prune) prunes to it after a resume.
            "speed_plan": student.speed.as_dict() if student.speed is not None else None,
            "curve_before": [dict(point) for point in student.curve],
        }
        teacher_fields = teacher.checkpoint_fields()

        def save(loop: LoopState) -> None:
            state = DistillingState(
                **fixed,
                student=cpu_state(model),
                sparsity=pruner.state_dict() if pruner else None,
                neurons=neurons.state_dict() if neurons else None,
            )
            run.checkpointer.save(
                RunState(stage="distilling", loop=loop, distilling=state, **teacher_fields)
            )

        curve = distill(
            model,
            run.teacher,
            run.train,
            layer_map=student.layer_map,
            distillation=run.spec.distillation,
            training=dataclasses.replace(run.spec.training, epochs=current.epochs),
            pad_token_id=run.pad_id,
            runtime=run.runtime,
            progress=run.progress,
            teacher_logits=teacher_logits,
            hooks=run.loop_hooks(
                save,
                resume=resuming.loop if resuming is not None else None,
                after_step=_after_step(pruner, neurons, quant),
            ),
        )
        if quant is not None:
            # Evaluation and export see the fp32 modules the weights were trained for.
            restore(model)
            qat = {"from_step": quant.begin_step, "steps": steps}
            student.rounds[-1]["quantization_aware"] = qat
            student.pruning_plan = {**student.pruning_plan, "quantization_aware": qat}
        offset = student.curve[-1]["step"] if student.curve else 0
        student.curve = student.curve + [
            {**point, "step": point["step"] + offset, "round": index + 1} for point in curve
        ]
        student.pruner = pruner
        if pruner is not None:
            # The zeros become plain weights: the export is an ordinary checkpoint.
            pruner.fold()
            zeros = sparsity_report(model)
            run.progress.log(
                f"sparsity: {zeros['sparsity']:.3f} of the encoder's linear weights are "
                f"zero ({pruner.config.pattern})",
                data={"stage": "distilling", **zeros},
            )
        if neurons is not None:
            _cut_masked_neurons(run, student, neurons, teacher_non_embedding)


def _cut_masked_neurons(
    run: Run, student: Student, neurons: NeuronPruner, teacher_non_embedding: int
) -> None:
    # Masked neurons output nothing: cutting them away keeps the function.
    student.model = build_pruned(
        student.model,
        Selection(layers=tuple(range(len(student.layer_map))), neurons=neurons.kept()),
    )
    student.achieved = parameter_counts(student.model).non_embedding / teacher_non_embedding
    student.rounds[-1]["params_ratio"] = student.achieved
    run.progress.log(
        f"FFN narrowed to {neurons.schedule.final_width} of {neurons.full_width} "
        f"neurons while distilling: {student.achieved:.3f} of the teacher's "
        "non-embedding parameters",
        data={
            "stage": "distilling",
            "intermediate_size": neurons.schedule.final_width,
            "params_ratio": student.achieved,
        },
    )


def _quant_aware(
    run: Run, model: PreTrainedModel, steps: int, resuming: RunState | None
) -> QuantAware | None:
    """export.quantization_aware's step hook for this round's ``steps``, caught up with
    a resumed loop (its next step may already be in the int8 part)."""
    fraction = run.spec.export.quantization_aware
    if fraction <= 0 or steps < 1:
        return None
    hook = QuantAware(model, begin_step(steps, fraction))
    hook.catch_up(resuming.loop["step"] if resuming is not None and resuming.loop else 0)
    run.progress.log(
        f"quantization-aware: steps {hook.begin_step}-{steps} of this round train through "
        "ONNX Runtime's int8 rounding",
        data={"stage": "distilling", "quantization_aware_from_step": hook.begin_step},
    )
    return hook


Hook = SparsityPruner | NeuronPruner | QuantAware


@dataclass
class _AfterStep:
    """The pruners' step hook; an object, not a closure, for data-parallel loops."""

    hooks: list[Hook]

    def __call__(self, step: int) -> None:
        for hook in self.hooks:
            hook.on_step(step)


def _after_step(*hooks: Hook | None) -> Callable[[int], None] | None:
    """One after-step callback for the training loop from whichever pruners run."""
    active = [hook for hook in hooks if hook is not None]
    return _AfterStep(active) if active else None
