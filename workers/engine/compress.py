"""The engine's entry point: ``compress(spec, callback) -> CompressionResult``.

This file only sequences the phases; each piece of work lives in a module named for
it (data, teacher, plan, importance, prune_layers, distill, evaluate, export).
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import time
from collections.abc import Iterator
from typing import Any

import torch
from transformers import PreTrainedModel

from workers.engine.data import EncodedSplit, encode, iter_batches, read_jsonl
from workers.engine.distill import distill
from workers.engine.evaluate import (
    Quality,
    cpu_latency_ms,
    model_metrics,
    quality,
    saved_size_bytes,
)
from workers.engine.export import save_model, verify_reload, write_model_card, write_report
from workers.engine.importance import get_importance, top_neurons
from workers.engine.layers import parameter_counts
from workers.engine.plan import plan_student
from workers.engine.progress import Progress
from workers.engine.prune_layers import build_student, sizes_from_model
from workers.engine.runtime import Runtime, resolve_device, seed_everything
from workers.engine.spec import (
    ArtifactFile,
    CompressionResult,
    CompressionSpec,
    EngineCallback,
    EngineInputError,
    NullCallback,
)
from workers.engine.teacher import (
    finetune_teacher,
    has_trained_head,
    load_teacher,
    load_tokenizer,
)
from workers.engine.validate import read_teacher_config, validate_spec

# Families whose position ids start after the padding index, which costs them
# ``pad_token_id + 1`` of their position table.
_OFFSET_POSITIONS = ("roberta", "xlm-roberta")


def compress(spec: CompressionSpec, callback: EngineCallback | None = None) -> CompressionResult:
    progress = Progress(callback or NullCallback())
    validate_spec(spec)
    timings: dict[str, float] = {}

    # -- preparing ---------------------------------------------------------------
    progress.start_phase("preparing")
    with _timed(timings, "preparing"):
        teacher_config = read_teacher_config(spec.teacher_dir)
        runtime = Runtime(resolve_device(spec.device))
        seed_everything(spec.training.seed)
        num_labels = len(spec.label_names)
        train_examples = read_jsonl(spec.train_file, num_labels=num_labels, split="train")
        eval_examples = read_jsonl(spec.eval_file, num_labels=num_labels, split="eval")
        needs_finetune = not has_trained_head(spec.teacher_dir, num_labels)
        if needs_finetune and spec.training.teacher_epochs == 0:
            raise EngineInputError(
                "teacher_needs_finetune",
                f"the teacher has no trained {num_labels}-label classification head, so it "
                "must be fine-tuned first: set training.teacher_epochs to at least 1",
            )
        progress.within(0.2)
        tokenizer = load_tokenizer(spec.teacher_dir)
        max_len = _usable_seq_len(teacher_config, spec.training.max_seq_length)
        train = encode(tokenizer, train_examples, max_length=max_len, split="train")
        evaluation = encode(tokenizer, eval_examples, max_length=max_len, split="eval")
        pad_id = int(tokenizer.pad_token_id)
        progress.within(0.5)
        teacher = load_teacher(spec.teacher_dir, spec.label_names).to(runtime.device)
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
    if needs_finetune:
        progress.start_phase("teacher_finetune")
        with _timed(timings, "teacher_finetune"):
            teacher_curve = finetune_teacher(
                teacher,
                train,
                training=spec.training,
                pad_token_id=pad_id,
                runtime=runtime,
                progress=progress,
            )
            teacher_scores = _quality(teacher, evaluation, spec, pad_id, runtime, progress)
            progress.log(
                f"teacher fine-tuned: accuracy {teacher_scores.accuracy:.4f}, "
                f"macro-F1 {teacher_scores.macro_f1:.4f}",
                data={"stage": "teacher_finetune", **dataclasses.asdict(teacher_scores)},
            )

    # -- pruning -----------------------------------------------------------------
    progress.start_phase("pruning")
    with _timed(timings, "pruning"):
        params_ratio = spec.target.params_ratio
        assert params_ratio is not None  # validate_spec guarantees it
        teacher_counts = parameter_counts(teacher)
        sizes = sizes_from_model(teacher, teacher_counts.non_embedding)
        plan = plan_student(sizes, params_ratio, ffn="ffn" in spec.pruning.structured)
        layer_map = list(plan.layer_map)
        neurons = None
        importance_name: str | None = None
        if plan.intermediate_size < sizes.intermediate_size:
            importance_name = spec.pruning.importance
            neurons = _rank_neurons(
                teacher, train, layer_map, plan.intermediate_size, spec, pad_id, runtime, progress
            )
        student = build_student(teacher, layer_map, neurons)
        student_non_embedding = parameter_counts(student).non_embedding
        if student_non_embedding != plan.non_embedding:
            raise AssertionError(
                f"the student has {student_non_embedding} non-embedding parameters, "
                f"the plan said {plan.non_embedding}"
            )
        achieved = student_non_embedding / teacher_counts.non_embedding
        pruning_plan = {
            "num_layers": plan.num_layers,
            "intermediate_size": plan.intermediate_size,
            "importance": importance_name,
        }
        ranked = f" (neurons ranked by {importance_name} importance)" if importance_name else ""
        progress.log(
            f"pruning plan: kept teacher layers {layer_map} ({plan.num_layers} of "
            f"{sizes.num_layers}) with FFN width {plan.intermediate_size} of "
            f"{sizes.intermediate_size}{ranked}: {achieved:.3f} of the non-embedding "
            f"parameters (target {params_ratio})",
            data={
                "stage": "pruning",
                "layer_map": layer_map,
                "params_ratio": achieved,
                **pruning_plan,
            },
        )

    # -- distilling --------------------------------------------------------------
    progress.start_phase("distilling")
    with _timed(timings, "distilling"):
        distill_curve = distill(
            student,
            teacher,
            train,
            layer_map=layer_map,
            distillation=spec.distillation,
            training=spec.training,
            pad_token_id=pad_id,
            runtime=runtime,
            progress=progress,
        )

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
                teacher, teacher_scores, size_bytes=sizes["teacher"], latency=latency["teacher"]
            ),
            student_part=model_metrics(
                student, student_scores, size_bytes=sizes["student"], latency=latency["student"]
            ),
            achieved=achieved,
            teacher_finetuned=needs_finetune,
            layer_map=layer_map,
            pruning_plan=pruning_plan,
            spec=spec,
            runtime=runtime,
            seq_len=max_len,
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
    )
    progress.within(0.8)
    summary = _spec_summary(spec, teacher_config)
    report_path = spec.output_dir / "report.json"
    card_path = spec.output_dir / "README.md"
    # Up to the report itself, which records it.
    timings["exporting"] = time.perf_counter() - export_start
    write_report(
        report_path,
        {
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
        },
    )
    write_model_card(card_path, metrics, summary)
    progress.finish()
    return CompressionResult(
        metrics=metrics,
        artifacts=[
            ArtifactFile("model", "model", model_dir),
            ArtifactFile("report", "report", report_path),
            ArtifactFile("model-card", "model_card", card_path),
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
    )


def _rank_neurons(
    teacher: PreTrainedModel,
    train: EncodedSplit,
    layer_map: list[int],
    width: int,
    spec: CompressionSpec,
    pad_id: int,
    runtime: Runtime,
    progress: Progress,
) -> list[torch.Tensor]:
    """For each kept layer, the ``width`` FFN neurons the importance ranks highest,
    scored through the teacher on a seeded sample of training batches."""
    importance = get_importance(spec.pruning.importance)
    batches = []
    if importance.needs_data:
        generator = torch.Generator().manual_seed(spec.training.seed)
        stream = iter_batches(
            train, spec.training.batch_size, pad_token_id=pad_id, generator=generator
        )
        batches = list(itertools.islice(stream, spec.pruning.importance_batches))
    scores = importance.scores(teacher, batches, runtime=runtime, progress=progress)
    return top_neurons([scores[j] for j in layer_map], width)


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
    t_acc, s_acc = teacher_part["accuracy"], student_part["accuracy"]
    return {
        "teacher": teacher_part,
        "student": student_part,
        # None rather than inf/NaN, which JSON cannot carry.
        "retention": s_acc / t_acc if t_acc > 0 else None,
        "compression_ratio": teacher_part["num_parameters"] / student_part["num_parameters"],
        "params_ratio_non_embedding": achieved,
        "speedup_cpu_bs1": teacher_part["latency_ms_cpu_bs1"] / student_part["latency_ms_cpu_bs1"],
        "speedup_cpu_bs32": teacher_part["latency_ms_cpu_bs32"]
        / student_part["latency_ms_cpu_bs32"],
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
