"""The ``evaluating`` phase: teacher and student scored, sized and timed side by side,
in every runtime the export asks for; the run's metrics."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from transformers import PreTrainedModel

from app.jobspec import vocabulary
from app.jobspec.speed_plan import SpeedPlan
from workers.engine.evaluate import (
    cpu_latency_ms,
    gpu_latency_ms,
    model_metrics,
    saved_size_bytes,
    threaded_latency_ms,
)
from workers.engine.formats import (
    OnnxModels,
    format_metrics,
    measure_onnx,
    ort_runner,
    torch_runner,
    wants_onnx,
)
from workers.engine.phases.preparing import usable_seq_len
from workers.engine.phases.prune_distill import Student
from workers.engine.phases.run import Run
from workers.engine.phases.teacher_finetune import FinetunedTeacher
from workers.engine.report import gpu_metrics, report_warnings, run_metrics, sparsity_metrics

# Latency per model and batch size, as evaluate.cpu_latency_ms gives it.
Latency = dict[str, Any]


@dataclass(frozen=True)
class Evaluation:
    metrics: dict[str, Any]  # what the job's ``metrics`` shows
    onnx: OnnxModels | None  # the ONNX students, built here and exported as they are


def evaluate(run: Run, teacher: FinetunedTeacher, student: Student) -> Evaluation:
    """Score both models (the teacher only when fine-tuning did not), time them, and
    leave both on the CPU, where the export runs."""
    progress, spec = run.progress, run.spec
    progress.start_phase("evaluating")
    with run.timed("evaluating"):
        models = {"teacher": run.teacher, "student": student.model}
        scores = {
            "teacher": teacher.scores if teacher.scores is not None else run.quality(run.teacher)
        }
        progress.within(0.2)
        scores["student"] = run.quality(student.model)
        progress.within(0.4)
        # On a GPU run, the GPU's figure too (bf16 autocast, as the run trained).
        gpu_latency = (
            gpu_latency_ms(
                models,
                run.tokenizer,
                run.evaluation.texts,
                seq_len=run.max_len,
                runtime=run.runtime,
                progress=progress,
            )
            if run.runtime.is_cuda
            else None
        )
        # The CPU figure is reported whatever trained the models, and export runs on
        # CPU too, so both models leave the GPU here.
        for model in models.values():
            model.to("cpu")
        if run.runtime.is_cuda:
            torch.cuda.empty_cache()
        sizes = {name: saved_size_bytes(model, spec.work_dir) for name, model in models.items()}
        progress.within(0.5)
        onnx, latency, onnx_parts = _cpu_latency(run, student.model)
        parts = {
            name: model_metrics(
                model,
                scores[name],
                size_bytes=sizes[name],
                latency=latency[name],
                seq_len=run.max_len,
            )
            for name, model in models.items()
        }
        metrics = run_metrics(
            teacher_part=parts["teacher"],
            student_part=parts["student"],
            achieved=student.achieved,
            teacher_finetuned=run.needs_finetune,
            layer_map=student.layer_map,
            pruning_plan=student.pruning_plan,
            spec=spec,
            runtime=run.runtime,
            seq_len=run.max_len,
        )
        metrics |= format_metrics(
            formats=spec.export.formats,
            main_metric=run.task.main_metric,
            teacher_pytorch=metrics["teacher"],
            student_pytorch=metrics["student"],
            runtimes=onnx_parts,
            onnx=onnx,
        )
        if gpu_latency is not None:
            metrics |= gpu_metrics(gpu_latency)
        if student.speed is not None:
            metrics["speedup_target"] = _speedup_verdict(run, student.speed, metrics)
        if spec.latency_point is not None:
            metrics["latency_point"] = _at_latency_point(run, student.model, onnx)
        if student.pruner is not None:
            metrics["sparsity"] = sparsity_metrics(student.pruner, models, spec.work_dir)
        # Processes the training loops ran on (runtime.resolve_devices).
        metrics["devices_used"] = run.runtime.devices
        # A fine-tuned teacher taken from the cache (teacher_finetuned stays true: it was
        # fine-tuned, by an earlier run), and what fine-tuning it took, then or here.
        metrics["teacher_cached"] = teacher.from_cache
        if teacher.finetune_s is not None:
            metrics["teacher_finetune_s"] = round(teacher.finetune_s, 3)
        metrics["warnings"] = report_warnings(
            metrics, spec=spec, teacher_config=run.teacher_config, progress=progress
        )
        if run.devices_warning is not None:  # logged as a warning when the run started
            metrics["warnings"].append({"code": "fewer_devices", "message": run.devices_warning})
    return Evaluation(metrics=metrics, onnx=onnx)


def _cpu_latency(
    run: Run, student: PreTrainedModel
) -> tuple[OnnxModels | None, Latency, dict[str, dict[str, dict[str, Any]]]]:
    """Both models' CPU latency; with ONNX formats, the ONNX students too."""
    if wants_onnx(run.spec.export.formats):
        # ONNX models are built here, not in "exporting": each is scored and timed
        # in its runtime, interleaved with the PyTorch models (formats.py).
        return measure_onnx(
            spec=run.spec,
            task=run.task,
            teacher=run.teacher,
            student=student,
            tokenizer=run.tokenizer,
            evaluation=run.evaluation,
            pad_id=run.pad_id,
            seq_len=run.max_len,
            progress=run.progress,
        )
    latency = cpu_latency_ms(
        {"teacher": run.teacher, "student": student},
        run.tokenizer,
        run.evaluation.texts,
        seq_len=run.max_len,
        threads=run.spec.latency_threads,
        progress=run.progress,
        budget_s=run.spec.latency_budget_s,
    )
    return None, latency, {}


def _at_latency_point(
    run: Run, student: PreTrainedModel, onnx: OnnxModels | None
) -> dict[str, Any]:
    """Teacher and student timed together, interleaved, at the spec's latency point in
    the target's runtime (the ONNX sessions built for the formats, or the PyTorch
    models): the figure a max_latency_ms sweep compares with its budget."""
    spec = run.spec
    point, runtime = spec.latency_point, spec.target.runtime
    assert point is not None
    seq_len = usable_seq_len(run.teacher_config, point.seq_len or run.max_len)
    if vocabulary.SPEEDUP_RUNTIMES[runtime] is None:
        runners = {"teacher": torch_runner(run.teacher), "student": torch_runner(student)}
    else:
        assert onnx is not None  # validation: the runtime's format is exported
        runners = {role: ort_runner(onnx.sessions[role][runtime]) for role in onnx.sessions}
    ms = threaded_latency_ms(
        runners,
        run.tokenizer,
        run.evaluation.texts,
        seq_len=seq_len,
        threads=spec.latency_threads,
        progress=run.progress,
        batch_sizes=(point.batch_size,),
        budget_s=spec.latency_budget_s,
    )
    teacher_ms, student_ms = ms["teacher"][point.batch_size], ms["student"][point.batch_size]
    return {
        "runtime": runtime,
        "batch_size": point.batch_size,
        "seq_len": seq_len,
        "threads": spec.latency_threads,
        "latency_ms": student_ms,
        "teacher_latency_ms": teacher_ms,
        "speedup": teacher_ms / student_ms,
    }


def _speedup_verdict(run: Run, speed: SpeedPlan, metrics: dict[str, Any]) -> dict[str, Any]:
    """The target against the report's own timing, whatever the plan measured: in the
    target's runtime, teacher and student both timed there (formats.py)."""
    fmt = vocabulary.SPEEDUP_RUNTIMES[run.spec.target.runtime]
    measured = metrics["formats"][fmt]["speedup_cpu_bs1"] if fmt else metrics["speedup_cpu_bs1"]
    return {
        "target": speed.target,
        "runtime": run.spec.target.runtime,
        "measured": measured,
        "met": measured >= speed.target,
    }
