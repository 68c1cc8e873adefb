"""The engine's entry point: ``compress(spec, callback) -> CompressionResult``.

This file only sequences the phases; each piece of work lives in a module named for
it (data, teacher, plan, importance, prune_layers, distill, evaluate, export).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch
from transformers import PreTrainedModel

from workers.engine import capabilities, checkpoint
from workers.engine.checkpoint import Checkpointer, LoopState, cpu_state, rng_state, set_rng_state
from workers.engine.data import EncodedSplit
from workers.engine.distill import distill
from workers.engine.evaluate import (
    Quality,
    cpu_latency_ms,
    gpu_latency_ms,
    model_metrics,
    quality,
    saved_size_bytes,
)
from workers.engine.export import save_model, verify_reload, write_model_card, write_report
from workers.engine.format_plot import FORMATS_PNG, plot_formats
from workers.engine.formats import (
    ARTIFACT,
    OnnxModels,
    format_folder,
    format_metrics,
    measure_onnx,
    wants_onnx,
    write_side_files,
)
from workers.engine.layers import parameter_counts
from workers.engine.logits_cache import cache_teacher_logits
from workers.engine.neurons import NeuronPruner, neuron_schedule
from workers.engine.plots import write_plots
from workers.engine.progress import Progress
from workers.engine.prune_width import Selection, build_pruned
from workers.engine.report import (
    gpu_metrics,
    report_warnings,
    run_metrics,
    sparsity_metrics,
    spec_summary,
)
from workers.engine.rounds import prune_round, save_distill, student_from_checkpoint
from workers.engine.runtime import Runtime, resolve_device, seed_everything
from workers.engine.sparsity import (
    SparsityPruner,
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
from workers.engine.speed_plan import SpeedPlan
from workers.engine.speed_target import speed_target
from workers.engine.strategies import FixedShape, plan_rounds
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
            spec_summary(spec, read_teacher_config(spec.teacher_dir))
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
    speed: SpeedPlan | None = None
    fixed: FixedShape | None = None
    if spec.target.speedup is not None:
        if stage != "distilling":
            progress.start_phase("pruning")
        with _timed(timings, "pruning"):
            speed, fixed = speed_target(
                spec,
                teacher,
                tokenizer,
                evaluation.texts,
                seq_len=max_len,
                saved=resumed.get("speed_plan") if resumed else None,
                progress=progress,
            )
    rounds = plan_rounds(spec, fixed)
    teacher_non_embedding = parameter_counts(teacher).non_embedding
    student: PreTrainedModel = teacher
    layer_map = list(range(teacher.config.num_hidden_layers))
    achieved = 1.0
    pruning_plan: dict[str, Any] = {}
    round_reports: list[dict[str, Any]] = []
    distill_curve: list[dict[str, float]] = []
    pruner: SparsityPruner | None = None
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
        student = student_from_checkpoint(teacher, resumed, runtime)
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
            if progress.phase != "pruning":  # the speed plan may have started it
                progress.start_phase("pruning")
            with _timed(timings, "pruning"):
                student, layer_map, achieved, plan_report = prune_round(
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
                gradual = (plan_report or {}).get("gradual_ffn")
                round_reports.append(
                    {
                        "round": index + 1,
                        "target_ratio": current.ratio,
                        "params_ratio": achieved,
                        "structured": list(current.structured),
                        "epochs": current.epochs,
                        "layer_map": list(layer_map),
                        **({"ffn_gradual_to": gradual["to"]} if gradual else {}),
                    }
                )

        progress.start_phase("distilling")
        with _timed(timings, "distilling"):
            steps = train.num_batches(spec.training.batch_size) * current.epochs
            pruner = (
                SparsityPruner(student, current.zeroing.config(steps)) if current.zeroing else None
            )
            if pruner is not None and resuming:
                assert resumed is not None
                pruner.load_state_dict(resumed["sparsity"])
            ffn_to = round_reports[-1].get("ffn_gradual_to")
            neurons = NeuronPruner(student, neuron_schedule(ffn_to, steps)) if ffn_to else None
            if neurons is not None and resuming:
                assert resumed is not None
                neurons.load_state_dict(resumed["neurons"])
            curve_before = [dict(point) for point in distill_curve]

            save_this_round = functools.partial(
                save_distill,
                checkpointer,
                {
                    "round": index,
                    "student_config": student.config.to_dict(),
                    "layer_map": list(layer_map),
                    "achieved": achieved,
                    "pruning_plan": dict(pruning_plan),
                    "rounds": [dict(r) for r in round_reports],
                    # A later round (distill_then_prune) prunes to it after a resume.
                    "speed_plan": speed.as_dict() if speed is not None else None,
                    "curve_before": curve_before,
                    "teacher": teacher_state,
                    "teacher_curve": teacher_curve,
                    "teacher_scores": (
                        dataclasses.asdict(teacher_scores) if teacher_scores else None
                    ),
                },
                student,
                pruner,
                neurons,
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
                    save=save_this_round,
                    resume=resumed["loop"] if resuming else None,
                    after_step=_after_step(pruner, neurons),
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
            if neurons is not None:
                # Masked neurons output nothing: cutting them away keeps the function.
                student = build_pruned(
                    student,
                    Selection(layers=tuple(range(len(layer_map))), neurons=neurons.kept()),
                )
                achieved = parameter_counts(student).non_embedding / teacher_non_embedding
                round_reports[-1]["params_ratio"] = achieved
                progress.log(
                    f"FFN narrowed to {neurons.schedule.final_width} of {neurons.full_width} "
                    f"neurons while distilling: {achieved:.3f} of the teacher's "
                    "non-embedding parameters",
                    data={
                        "stage": "distilling",
                        "intermediate_size": neurons.schedule.final_width,
                        "params_ratio": achieved,
                    },
                )
    progress.share(0, 1)
    if len(rounds) > 1:
        pruning_plan = {**pruning_plan, "rounds": round_reports}
    if speed is not None:
        pruning_plan = {**pruning_plan, "speed_plan": speed.as_dict()}

    # -- evaluating --------------------------------------------------------------
    progress.start_phase("evaluating")
    with _timed(timings, "evaluating"):
        if teacher_scores is None:
            teacher_scores = _quality(teacher, evaluation, spec, pad_id, runtime, progress)
        progress.within(0.2)
        student_scores = _quality(student, evaluation, spec, pad_id, runtime, progress)
        progress.within(0.4)
        # On a GPU run, the GPU's figure too (bf16 autocast, as the run trained).
        gpu_latency = (
            gpu_latency_ms(
                {"teacher": teacher, "student": student},
                tokenizer,
                evaluation.texts,
                seq_len=max_len,
                runtime=runtime,
                progress=progress,
            )
            if runtime.is_cuda
            else None
        )
        # The CPU figure is reported whatever trained the models, and export runs on
        # CPU too, so both models leave the GPU here.
        teacher.to("cpu")
        student.to("cpu")
        if runtime.is_cuda:
            torch.cuda.empty_cache()
        sizes = {
            "teacher": saved_size_bytes(teacher, spec.work_dir),
            "student": saved_size_bytes(student, spec.work_dir),
        }
        progress.within(0.5)
        onnx: OnnxModels | None = None
        onnx_parts: dict[str, dict[str, dict[str, Any]]] = {}
        if wants_onnx(spec.export.formats):
            # ONNX models are built here, not in "exporting": each is scored and timed
            # in its runtime, interleaved with the PyTorch models (formats.py).
            onnx, latency, onnx_parts = measure_onnx(
                spec=spec,
                task=task,
                teacher=teacher,
                student=student,
                tokenizer=tokenizer,
                evaluation=evaluation,
                pad_id=pad_id,
                seq_len=max_len,
                progress=progress,
            )
        else:
            latency = cpu_latency_ms(
                {"teacher": teacher, "student": student},
                tokenizer,
                evaluation.texts,
                seq_len=max_len,
                threads=spec.latency_threads,
                progress=progress,
            )
        metrics = run_metrics(
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
        metrics |= format_metrics(
            formats=spec.export.formats,
            main_metric=task.main_metric,
            teacher_pytorch=metrics["teacher"],
            student_pytorch=metrics["student"],
            runtimes=onnx_parts,
            onnx=onnx,
        )
        if gpu_latency is not None:
            metrics |= gpu_metrics(gpu_latency)
        if speed is not None:
            # The target against the report's own timing, whatever the plan measured.
            # In the target's runtime, teacher and student both timed there (formats.py).
            fmt = capabilities.SPEEDUP_RUNTIMES[spec.target.runtime]
            measured = (
                metrics["formats"][fmt]["speedup_cpu_bs1"] if fmt else metrics["speedup_cpu_bs1"]
            )
            metrics["speedup_target"] = {
                "target": speed.target,
                "runtime": spec.target.runtime,
                "measured": measured,
                "met": measured >= speed.target,
            }

        if pruner is not None:
            metrics["sparsity"] = sparsity_metrics(
                pruner, {"teacher": teacher, "student": student}, spec.work_dir
            )
        metrics["warnings"] = report_warnings(
            metrics, spec=spec, teacher_config=teacher_config, progress=progress
        )

    # -- exporting ---------------------------------------------------------------
    progress.start_phase("exporting")
    export_start = time.perf_counter()
    spec.output_dir.mkdir(parents=True, exist_ok=True)
    model_dir = spec.output_dir / "model"
    max_diff: float | None = None
    if "safetensors" in spec.export.formats:
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
    for fmt in spec.export.formats:
        if fmt != "safetensors":
            write_side_files(format_folder(spec, fmt), student, tokenizer)
    progress.within(0.8)
    # The formats are not part of spec_summary, which fingerprints checkpoints: the
    # training a checkpoint holds does not depend on them.
    summary = {
        **spec_summary(spec, teacher_config),
        "export": {"formats": list(spec.export.formats)},
    }
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
        "export": {
            "formats": list(spec.export.formats),
            "reload_max_abs_logit_diff": max_diff,
            "parity": onnx.parity if onnx is not None else {},
            "export_s": {k: round(v, 3) for k, v in onnx.export_s.items()} if onnx else {},
        },
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
    }
    write_report(report_path, report)
    plots = write_plots(spec.output_dir, report)
    formats_plot = plot_formats(metrics, spec.output_dir / FORMATS_PNG, task.main_metric)
    if formats_plot is not None:
        plots.append(formats_plot)
    write_model_card(card_path, metrics, summary, plots)
    progress.finish()
    return CompressionResult(
        metrics=metrics,
        artifacts=[
            *(
                ArtifactFile(ARTIFACT[fmt], "model", format_folder(spec, fmt))
                for fmt in spec.export.formats
            ),
            ArtifactFile("report", "report", report_path),
            ArtifactFile("model-card", "model_card", card_path),
            *(ArtifactFile(p.stem.replace("_", "-"), "plot", p) for p in plots),
        ],
    )


def _after_step(*hooks: SparsityPruner | NeuronPruner | None) -> Callable[[int], None] | None:
    """One after-step callback for the training loop from whichever pruners run."""
    active = [hook for hook in hooks if hook is not None]
    if not active:
        return None

    def after_step(step: int) -> None:
        for hook in active:
            hook.on_step(step)

    return after_step


@contextlib.contextmanager
def _timed(timings: dict[str, float], phase: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        # Rounds (and a speed plan) enter a phase more than once: their times add up.
        timings[phase] = timings.get(phase, 0.0) + time.perf_counter() - start


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
