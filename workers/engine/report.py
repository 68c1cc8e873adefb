"""The numbers a run reports: metrics teacher vs student, sparsity as what it is, and
the spec as the report shows it."""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Any

from transformers import PreTrainedModel

from workers.engine.evaluate import flops_ratio
from workers.engine.runtime import Runtime
from workers.engine.sparsity import SparsityPruner, compressed_size_bytes, sparsity_report
from workers.engine.spec import CompressionSpec
from workers.engine.strategies import weight_criterion, zeroing_target
from workers.engine.tasks import get_task


def sparsity_metrics(
    pruner: SparsityPruner, models: dict[str, PreTrainedModel], work_dir: Path
) -> dict[str, Any]:
    """Zeros as what they are: counts, and the artifact's size once compressed (the only
    size benefit unstructured zeros give); any speed-up is the measured latency."""
    out: dict[str, Any] = {
        "target": pruner.config.target,
        "pattern": pruner.config.pattern,
        "criterion": pruner.config.criterion,
        "scope": pruner.config.scope,
        "compression": "gzip -6",
    }
    for name, model in models.items():
        with tempfile.TemporaryDirectory(dir=work_dir, prefix="gzip-") as tmp:
            model.save_pretrained(tmp)
            gzipped = compressed_size_bytes(Path(tmp))
            out[name] = {**sparsity_report(model), "gzip_size_bytes": gzipped}
    return out


def run_metrics(
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


def spec_summary(spec: CompressionSpec, teacher_config: dict[str, Any]) -> dict[str, Any]:
    """The spec without local paths, which mean nothing to whoever reads the report.

    Where single weights are zeroed, how they are ranked too, and for ``joint`` the
    floors its later rounds keep: they are part of what the run computes, so a
    checkpoint from a release that did otherwise does not match (checkpoint.fingerprint)
    and is not resumed into masks or rounds it cannot continue."""
    pruning: dict[str, Any] = {
        "structured": list(spec.pruning.structured),
        "unstructured_sparsity": spec.pruning.unstructured_sparsity,
        "importance": spec.pruning.importance,
        "importance_batches": spec.pruning.importance_batches,
    }
    if zeroing_target(spec)[0] > 0:
        criterion, scope = weight_criterion(spec)
        pruning["weight_criterion"] = {"criterion": criterion, "scope": scope}
    if spec.strategy == "joint" and spec.target.params_ratio is not None:
        # Later rounds hold the original teacher's floors (plan.TeacherSizes.floors_of);
        # a joint checkpoint from before that rule planned its rounds otherwise, so it
        # must not match (it is ignored, with a warning, and the run starts afresh).
        pruning["round_floors"] = "teacher"
    return {
        "task": spec.task,
        "strategy": spec.strategy,
        "label_names": list(spec.label_names),
        "teacher_model_type": teacher_config.get("model_type"),
        "target": _target(spec),
        "distillation": dataclasses.asdict(spec.distillation),
        "pruning": pruning,
        "training": dataclasses.asdict(spec.training),
        "device": spec.device,
        "latency_threads": spec.latency_threads,
    }


def _target(spec: CompressionSpec) -> dict[str, Any]:
    # The runtime is named only where it is not the PyTorch one every earlier release
    # measured in, so checkpoints those releases wrote still match (checkpoint.fingerprint).
    target = dataclasses.asdict(spec.target)
    if target["runtime"] == "pytorch":
        del target["runtime"]
    return target


def gpu_metrics(latency: dict[str, dict[int, float]]) -> dict[str, Any]:
    """GPU latency at batch 1 and 32 for both models, and the speed-ups."""
    out: dict[str, Any] = {}
    for batch in (1, 32):
        teacher, student = latency["teacher"][batch], latency["student"][batch]
        out[f"latency_ms_gpu_bs{batch}"] = {"teacher": teacher, "student": student}
        out[f"speedup_gpu_bs{batch}"] = teacher / student
    return out
