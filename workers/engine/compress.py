"""The engine's entry point: ``compress(spec, callback) -> CompressionResult``.

This file only sequences the phases; each piece of work lives in a module named for
it (data, teacher, plan, importance, prune_layers, distill, evaluate, export).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import itertools
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel

from workers.engine import checkpoint
from workers.engine.checkpoint import Checkpointer, LoopState, cpu_state, rng_state, set_rng_state
from workers.engine.data import EncodedSplit, iter_batches
from workers.engine.distill import distill
from workers.engine.evaluate import (
    Quality,
    cpu_latency_ms,
    flops_ratio,
    model_metrics,
    quality,
    saved_size_bytes,
)
from workers.engine.export import save_model, verify_reload, write_model_card, write_report
from workers.engine.importance import StructureScores, get_importance
from workers.engine.layers import parameter_counts
from workers.engine.logits_cache import cache_teacher_logits
from workers.engine.plan import plan_structured
from workers.engine.plots import write_plots
from workers.engine.progress import Progress
from workers.engine.prune_layers import selection_for, sizes_from_model, structures_to_score
from workers.engine.prune_width import build_pruned
from workers.engine.runtime import Runtime, resolve_device, seed_everything
from workers.engine.sparsity import (
    MagnitudePruner,
    compressed_size_bytes,
    sparsity_config,
    sparsity_report,
)
from workers.engine.spec import (
    ArtifactFile,
    CompressionResult,
    CompressionSpec,
    EngineCallback,
    EngineInputError,
    NullCallback,
)
from workers.engine.strategies import Round, plan_rounds
from workers.engine.tasks import get_task
from workers.engine.teacher import (
    finetune_teacher,
    has_trained_head,
    load_teacher,
    load_tokenizer,
)
from workers.engine.train import LoopHooks
from workers.engine.validate import read_teacher_config, validate_spec

# Families whose position ids start after the padding index, which costs them
# ``pad_token_id + 1`` of their position table.
_OFFSET_POSITIONS = ("roberta", "xlm-roberta")


def compress(spec: CompressionSpec, callback: EngineCallback | None = None) -> CompressionResult:
    progress = Progress(callback or NullCallback())
    validate_spec(spec)
    # What differs between sequence and token classification (rows, head, scores).
    task = get_task(spec.task)
    timings: dict[str, float] = {}

    # A resumed run reports the progress it had before it reports anything else.
    checkpointer = Checkpointer(
        folder=spec.work_dir / "checkpoints",
        fingerprint=checkpoint.fingerprint(
            _spec_summary(spec, read_teacher_config(spec.teacher_dir))
        ),
        progress=progress,
    )
    resumed = _resume_point(spec, checkpointer, progress)
    stage = resumed["stage"] if resumed else None

    # -- preparing ---------------------------------------------------------------
    progress.start_phase("preparing")
    with _timed(timings, "preparing"):
        teacher_config = read_teacher_config(spec.teacher_dir)
        runtime = Runtime(resolve_device(spec.device))
        seed_everything(spec.training.seed)
        num_labels = len(spec.label_names)
        task.check_label_names(spec.label_names)
        train_examples = task.read(spec.train_file, num_labels=num_labels, split="train")
        eval_examples = task.read(spec.eval_file, num_labels=num_labels, split="eval")
        needs_finetune = not has_trained_head(spec.teacher_dir, num_labels, task)
        if needs_finetune and spec.training.teacher_epochs == 0:
            raise EngineInputError(
                "teacher_needs_finetune",
                f"the teacher has no trained {num_labels}-label {task.name} head, so it "
                "must be fine-tuned first: set training.teacher_epochs to at least 1",
            )
        progress.within(0.2)
        tokenizer = load_tokenizer(spec.teacher_dir, task)
        max_len = _usable_seq_len(teacher_config, spec.training.max_seq_length)
        train = task.encode(tokenizer, train_examples, max_length=max_len, split="train")
        evaluation = task.encode(tokenizer, eval_examples, max_length=max_len, split="eval")
        pad_id = int(tokenizer.pad_token_id)
        progress.within(0.5)
        teacher = load_teacher(spec.teacher_dir, spec.label_names, task).to(runtime.device)
        if resumed and resumed.get("teacher") is not None:
            teacher.load_state_dict(resumed["teacher"])
        progress.log(
            f"loaded {teacher_config['model_type']} teacher; {len(train)} train and "
            f"{len(evaluation)} eval examples on {runtime.device.type}",
            data={
                "model_type": teacher_config["model_type"],
                "train_examples": len(train),
                "eval_examples": len(evaluation),
                "device": runtime.device.type,
                "max_seq_length": max_len,
            },
        )

    # -- teacher_finetune --------------------------------------------------------
    teacher_curve: list[dict[str, float]] | None = None
    teacher_scores: Quality | None = None
    # The fine-tuned teacher's weights, which every later checkpoint carries.
    teacher_state: dict[str, torch.Tensor] | None = None
    if needs_finetune and stage in ("teacher_done", "distilling"):
        assert resumed is not None
        teacher_curve = resumed["teacher_curve"]
        teacher_scores = task.scores_type(**resumed["teacher_scores"])
        teacher_state = resumed["teacher"]
        if stage == "teacher_done":
            set_rng_state(resumed["rng"])
    elif needs_finetune:
        progress.start_phase("teacher_finetune")
        with _timed(timings, "teacher_finetune"):

            def save_finetune(loop: LoopState) -> None:
                checkpointer.save("teacher_finetune", {"loop": loop, "teacher": cpu_state(teacher)})

            teacher_curve = finetune_teacher(
                teacher,
                train,
                training=spec.training,
                pad_token_id=pad_id,
                runtime=runtime,
                progress=progress,
                hooks=LoopHooks(
                    checkpoint_every=spec.training.checkpoint_every_steps,
                    save=save_finetune,
                    resume=resumed["loop"] if stage == "teacher_finetune" else None,
                ),
            )
            teacher_scores = _quality(teacher, evaluation, spec, pad_id, runtime, progress)
            teacher_state = cpu_state(teacher)
            if spec.training.checkpoint_every_steps:
                checkpointer.save(
                    "teacher_done",
                    {
                        "teacher": teacher_state,
                        "teacher_curve": teacher_curve,
                        "teacher_scores": dataclasses.asdict(teacher_scores),
                        "rng": rng_state(),
                    },
                )
            progress.log(
                f"teacher fine-tuned: {teacher_scores.summary()}",
                data={"stage": "teacher_finetune", **teacher_scores.as_dict()},
            )

    # -- pruning and distilling, in the strategy's rounds --------------------------
    rounds = plan_rounds(spec)
    teacher_non_embedding = parameter_counts(teacher).non_embedding
    student: PreTrainedModel = teacher
    layer_map = list(range(teacher.config.num_hidden_layers))
    achieved = 1.0
    pruning_plan: dict[str, Any] = {}
    round_reports: list[dict[str, Any]] = []
    distill_curve: list[dict[str, float]] = []
    pruner: MagnitudePruner | None = None
    first_round = 0
    # With cache_teacher_logits the teacher runs over the training split once, for
    # every round (validate_spec has checked no loss needs its hidden states).
    teacher_logits = (
        cache_teacher_logits(
            teacher,
            train,
            batch_size=spec.training.batch_size,
            pad_token_id=pad_id,
            runtime=runtime,
            progress=progress,
        )
        if spec.training.cache_teacher_logits
        else None
    )
    if stage == "distilling":
        assert resumed is not None
        first_round = int(resumed.get("round", 0))
        student = _student_from_checkpoint(teacher, resumed, runtime)
        layer_map = list(resumed["layer_map"])
        achieved, pruning_plan = resumed["achieved"], dict(resumed["pruning_plan"])
        round_reports = [dict(r) for r in resumed["rounds"]]
        distill_curve = [dict(point) for point in resumed["curve_before"]]
    for index, current in enumerate(rounds):
        if index < first_round:
            continue
        progress.share(index, len(rounds))
        resuming = stage == "distilling" and index == first_round
        if not resuming:
            progress.start_phase("pruning")
            with _timed(timings, "pruning"):
                student, layer_map, achieved, plan_report = _prune_round(
                    student,
                    current,
                    teacher=teacher,
                    teacher_non_embedding=teacher_non_embedding,
                    layer_map=layer_map,
                    train=train,
                    spec=spec,
                    pad_id=pad_id,
                    runtime=runtime,
                    progress=progress,
                )
                if plan_report is not None:
                    pruning_plan = plan_report
                round_reports.append(
                    {
                        "round": index + 1,
                        "target_ratio": current.ratio,
                        "params_ratio": achieved,
                        "structured": list(current.structured),
                        "epochs": current.epochs,
                        "layer_map": list(layer_map),
                    }
                )

        progress.start_phase("distilling")
        with _timed(timings, "distilling"):
            steps = train.num_batches(spec.training.batch_size) * current.epochs
            pruner = (
                MagnitudePruner(student, current.zeroing.config(steps)) if current.zeroing else None
            )
            if pruner is not None and resuming:
                assert resumed is not None
                pruner.load_state_dict(resumed["sparsity"])
            curve_before = [dict(point) for point in distill_curve]

            save_distill = functools.partial(
                _save_distill,
                checkpointer,
                {
                    "round": index,
                    "student_config": student.config.to_dict(),
                    "layer_map": list(layer_map),
                    "achieved": achieved,
                    "pruning_plan": dict(pruning_plan),
                    "rounds": [dict(r) for r in round_reports],
                    "curve_before": curve_before,
                    "teacher": teacher_state,
                    "teacher_curve": teacher_curve,
                    "teacher_scores": (
                        dataclasses.asdict(teacher_scores) if teacher_scores else None
                    ),
                },
                student,
                pruner,
            )

            curve = distill(
                student,
                teacher,
                train,
                layer_map=layer_map,
                distillation=spec.distillation,
                training=dataclasses.replace(spec.training, epochs=current.epochs),
                pad_token_id=pad_id,
                runtime=runtime,
                progress=progress,
                teacher_logits=teacher_logits,
                hooks=LoopHooks(
                    checkpoint_every=spec.training.checkpoint_every_steps,
                    save=save_distill,
                    resume=resumed["loop"] if resuming else None,
                    after_step=pruner.on_step if pruner else None,
                ),
            )
            offset = curve_before[-1]["step"] if curve_before else 0
            distill_curve = curve_before + [
                {**point, "step": point["step"] + offset, "round": index + 1} for point in curve
            ]
            if pruner is not None:
                # The zeros become plain weights: the export is an ordinary checkpoint.
                pruner.fold()
                zeros = sparsity_report(student)
                progress.log(
                    f"sparsity: {zeros['sparsity']:.3f} of the encoder's linear weights are "
                    f"zero ({pruner.config.pattern})",
                    data={"stage": "distilling", **zeros},
                )
    progress.share(0, 1)
    if len(rounds) > 1:
        pruning_plan = {**pruning_plan, "rounds": round_reports}

    # -- evaluating --------------------------------------------------------------
    progress.start_phase("evaluating")
    with _timed(timings, "evaluating"):
        if teacher_scores is None:
            teacher_scores = _quality(teacher, evaluation, spec, pad_id, runtime, progress)
        progress.within(0.2)
        student_scores = _quality(student, evaluation, spec, pad_id, runtime, progress)
        progress.within(0.4)
        # Latency is a CPU figure whatever trained the models, and export runs on CPU
        # too, so both models leave the GPU here.
        teacher.to("cpu")
        student.to("cpu")
        if runtime.is_cuda:
            torch.cuda.empty_cache()
        sizes = {
            "teacher": saved_size_bytes(teacher, spec.work_dir),
            "student": saved_size_bytes(student, spec.work_dir),
        }
        progress.within(0.5)
        latency = cpu_latency_ms(
            {"teacher": teacher, "student": student},
            tokenizer,
            evaluation.texts,
            seq_len=max_len,
            threads=spec.latency_threads,
            progress=progress,
        )
        metrics = _metrics(
            teacher_part=model_metrics(
                teacher,
                teacher_scores,
                size_bytes=sizes["teacher"],
                latency=latency["teacher"],
                seq_len=max_len,
            ),
            student_part=model_metrics(
                student,
                student_scores,
                size_bytes=sizes["student"],
                latency=latency["student"],
                seq_len=max_len,
            ),
            achieved=achieved,
            teacher_finetuned=needs_finetune,
            layer_map=layer_map,
            pruning_plan=pruning_plan,
            spec=spec,
            runtime=runtime,
            seq_len=max_len,
        )

        if pruner is not None:
            metrics["sparsity"] = _sparsity_metrics(
                pruner, {"teacher": teacher, "student": student}, spec.work_dir
            )

    # -- exporting ---------------------------------------------------------------
    progress.start_phase("exporting")
    export_start = time.perf_counter()
    spec.output_dir.mkdir(parents=True, exist_ok=True)
    model_dir = spec.output_dir / "model"
    save_model(student, tokenizer, model_dir)
    progress.within(0.4)
    max_diff = verify_reload(
        student,
        model_dir,
        evaluation,
        batch_size=spec.training.batch_size,
        pad_token_id=pad_id,
        progress=progress,
        task=task,
    )
    progress.within(0.8)
    summary = _spec_summary(spec, teacher_config)
    report_path = spec.output_dir / "report.json"
    card_path = spec.output_dir / "README.md"
    # Up to the report itself, which records it.
    timings["exporting"] = time.perf_counter() - export_start
    report = {
        "metrics": metrics,
        "spec": summary,
        "data": {
            "train_examples": len(train),
            "eval_examples": len(evaluation),
            "max_seq_length": max_len,
        },
        "training": {"teacher_finetune": teacher_curve, "distilling": distill_curve},
        "export": {"reload_max_abs_logit_diff": max_diff},
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
    }
    write_report(report_path, report)
    plots = write_plots(spec.output_dir, report)
    write_model_card(card_path, metrics, summary, plots)
    progress.finish()
    return CompressionResult(
        metrics=metrics,
        artifacts=[
            ArtifactFile("model", "model", model_dir),
            ArtifactFile("report", "report", report_path),
            ArtifactFile("model-card", "model_card", card_path),
            *(ArtifactFile(p.stem.replace("_", "-"), "plot", p) for p in plots),
        ],
    )


@contextlib.contextmanager
def _timed(timings: dict[str, float], phase: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[phase] = time.perf_counter() - start


def _quality(
    model: PreTrainedModel,
    split: EncodedSplit,
    spec: CompressionSpec,
    pad_id: int,
    runtime: Runtime,
    progress: Progress,
) -> Quality:
    return quality(
        model,
        split,
        batch_size=spec.training.batch_size,
        pad_token_id=pad_id,
        runtime=runtime,
        progress=progress,
        task=get_task(spec.task),
        label_names=spec.label_names,
    )


def _prune_round(
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
    plan = plan_structured(sizes, relative, current.structured)
    ranked_structures = sorted(structures_to_score(sizes, plan))
    scores = None
    importance_name: str | None = None
    if ranked_structures:
        importance_name = spec.pruning.importance
        scores = _score_structures(model, train, ranked_structures, spec, pad_id, runtime, progress)
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
        "intermediate_size": plan.intermediate_size,
        "importance": importance_name,
    }
    if {"hidden", "heads"} & set(current.structured):
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


def _save_distill(
    checkpointer: Checkpointer,
    fixed: dict[str, Any],
    student: PreTrainedModel,
    pruner: MagnitudePruner | None,
    loop: LoopState,
) -> None:
    """A distillation checkpoint: the round's fixed facts, the loop, the weights."""
    checkpointer.save(
        "distilling",
        {
            **fixed,
            "loop": loop,
            "student": cpu_state(student),
            "sparsity": pruner.state_dict() if pruner else None,
        },
    )


def _student_from_checkpoint(
    teacher: PreTrainedModel, resumed: dict[str, Any], runtime: Runtime
) -> PreTrainedModel:
    """The student a checkpoint was made from: its config and weights, no pruning redone
    (a later round's pruning depended on the distillation before it)."""
    config = type(teacher.config).from_dict(resumed["student_config"])
    student = type(teacher)._from_config(config, dtype=torch.float32)
    student.load_state_dict(resumed["student"])
    return student.to(runtime.device)


def _score_structures(
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
        generator = torch.Generator().manual_seed(spec.training.seed)
        stream = iter_batches(
            train, spec.training.batch_size, pad_token_id=pad_id, generator=generator
        )
        batches = list(itertools.islice(stream, spec.pruning.importance_batches))
    return importance.structure_scores(
        teacher, batches, runtime=runtime, want=structures, progress=progress
    )


def _sparsity_pruner(
    spec: CompressionSpec, student: PreTrainedModel, train: EncodedSplit
) -> MagnitudePruner | None:
    """Gradual magnitude pruning during distillation, for a sparsity target (or the extra
    ``pruning.unstructured_sparsity`` on top of a params_ratio target)."""
    if spec.target.sparsity is not None:
        target, pattern = spec.target.sparsity, spec.target.pattern
    elif spec.pruning.unstructured_sparsity > 0:
        target, pattern = spec.pruning.unstructured_sparsity, "unstructured"
    else:
        return None
    total_steps = train.num_batches(spec.training.batch_size) * spec.training.epochs
    return MagnitudePruner(student, sparsity_config(target, pattern, total_steps))


def _sparsity_metrics(
    pruner: MagnitudePruner, models: dict[str, PreTrainedModel], work_dir: Path
) -> dict[str, Any]:
    """Zeros as what they are: counts, and the artifact's size once compressed (the only
    size benefit unstructured zeros give); any speed-up is the measured latency."""
    out: dict[str, Any] = {
        "target": pruner.config.target,
        "pattern": pruner.config.pattern,
        "compression": "gzip -6",
    }
    for name, model in models.items():
        with tempfile.TemporaryDirectory(dir=work_dir, prefix="gzip-") as tmp:
            model.save_pretrained(tmp)
            gzipped = compressed_size_bytes(Path(tmp))
            out[name] = {**sparsity_report(model), "gzip_size_bytes": gzipped}
    return out


def _resume_point(
    spec: CompressionSpec, checkpointer: Checkpointer, progress: Progress
) -> dict[str, Any] | None:
    """The checkpoint to continue from, if the spec names one that fits this run."""
    if spec.resume_from is None:
        return None
    data, problem = checkpoint.load(spec.resume_from, expected_fingerprint=checkpointer.fingerprint)
    if data is None:
        progress.log(f"starting afresh: {problem}", level="warning")
        return None
    step = data["loop"]["step"] if "loop" in data else None
    at = f" at step {step}" if step is not None else ""
    progress.log(
        f"resuming from the checkpoint made in {data['stage']}{at}",
        data={"stage": data["stage"], "step": step, "progress": data["progress"]},
    )
    progress.resume_at(float(data["progress"]))
    return data


def _usable_seq_len(config: dict[str, Any], requested: int) -> int:
    positions = config.get("max_position_embeddings")
    if not isinstance(positions, int):
        return requested
    if config.get("model_type") in _OFFSET_POSITIONS:
        positions -= int(config.get("pad_token_id", 1)) + 1
    return min(requested, positions)


def _metrics(
    *,
    teacher_part: dict[str, Any],
    student_part: dict[str, Any],
    achieved: float,
    teacher_finetuned: bool,
    layer_map: list[int],
    pruning_plan: dict[str, Any],
    spec: CompressionSpec,
    runtime: Runtime,
    seq_len: int,
) -> dict[str, Any]:
    # Retention is on the task's main metric (accuracy; entity F1 for token tasks).
    main_metric = get_task(spec.task).main_metric
    t_main, s_main = teacher_part[main_metric], student_part[main_metric]
    return {
        "teacher": teacher_part,
        "student": student_part,
        "main_metric": main_metric,
        # None rather than inf/NaN, which JSON cannot carry.
        "retention": s_main / t_main if t_main > 0 else None,
        "compression_ratio": teacher_part["num_parameters"] / student_part["num_parameters"],
        "params_ratio_non_embedding": achieved,
        "speedup_cpu_bs1": teacher_part["latency_ms_cpu_bs1"] / student_part["latency_ms_cpu_bs1"],
        "speedup_cpu_bs32": teacher_part["latency_ms_cpu_bs32"]
        / student_part["latency_ms_cpu_bs32"],
        # What the removed structures allow at most: the bound the measured speed-ups
        # are read against (zeros from sparsity remove no FLOPs in dense kernels).
        "flops_ratio": flops_ratio(teacher_part, student_part),
        "teacher_finetuned": teacher_finetuned,
        # layer_map[i] is the teacher layer that student layer i was copied from.
        "layer_map": list(layer_map),
        # importance is None when no FFN neuron was removed.
        "pruning_plan": dict(pruning_plan),
        "latency_threads": spec.latency_threads,
        "latency_seq_len": seq_len,
        "device": runtime.device.type,
    }


def _spec_summary(spec: CompressionSpec, teacher_config: dict[str, Any]) -> dict[str, Any]:
    """The spec without local paths, which mean nothing to whoever reads the report."""
    return {
        "task": spec.task,
        "strategy": spec.strategy,
        "label_names": list(spec.label_names),
        "teacher_model_type": teacher_config.get("model_type"),
        "target": dataclasses.asdict(spec.target),
        "distillation": dataclasses.asdict(spec.distillation),
        "pruning": {
            "structured": list(spec.pruning.structured),
            "unstructured_sparsity": spec.pruning.unstructured_sparsity,
            "importance": spec.pruning.importance,
            "importance_batches": spec.pruning.importance_batches,
        },
        "training": dataclasses.asdict(spec.training),
        "device": spec.device,
        "latency_threads": spec.latency_threads,
    }
