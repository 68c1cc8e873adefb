"""The numbers a run reports: metrics teacher vs student, sparsity as what it is, and
the spec as the report shows it."""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Any

from transformers import PreTrainedModel

from app.jobspec import plan, speed_steps
from app.jobspec.speed_plan import SpeedPlan
from workers.engine.evaluate import flops_ratio
from workers.engine.progress import Progress
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
    extra: dict[str, Any] = {}
    if "macro_f1" in teacher_part:
        # Beside accuracy, which a class lost entirely barely moves when it is rare.
        extra["retention_macro_f1"] = _ratio(student_part["macro_f1"], teacher_part["macro_f1"])
    return {
        "teacher": teacher_part,
        "student": student_part,
        "main_metric": main_metric,
        # None rather than inf/NaN, which JSON cannot carry.
        "retention": _ratio(s_main, t_main),
        **extra,
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


def _ratio(value: float, reference: float) -> float | None:
    return value / reference if reference > 0 else None


def report_warnings(
    metrics: dict[str, Any],
    *,
    spec: CompressionSpec,
    teacher_config: dict[str, Any],
    progress: Progress,
) -> list[dict[str, Any]]:
    """What the numbers alone would let a reader miss, each ``code`` and ``message``
    (and what it is about), also sent as a ``warning`` log: classes (entity types) of
    the eval split the student never predicts, and a speed-up far above its target.
    Whether a target was met says nothing about either."""
    found = [*_never_predicted(metrics), *_overshoot(metrics, spec, teacher_config)]
    for warning in found:
        progress.log(warning["message"], level="warning", data={"stage": "evaluating", **warning})
    return found


def _never_predicted(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    teacher = metrics["teacher"]
    rows = [("student", metrics["student"])] + [
        (f"student ({fmt})", row)
        for fmt, row in metrics.get("formats", {}).items()
        if fmt != "safetensors"
    ]
    found = []
    for who, part in rows:
        missing = list(part.get("never_predicted") or ())
        if not missing:
            continue
        per_class = "per_class" in part
        kind = "class" if per_class else "entity type"
        named = "; ".join(f"{name!r} ({_class_note(name, part, teacher)})" for name in missing)
        retention = [f"accuracy retention {metrics['retention']:.3f}"] if per_class else []
        if per_class and metrics.get("retention_macro_f1") is not None:
            retention.append(f"macro-F1 retention {metrics['retention_macro_f1']:.3f}")
        met = metrics.get("speedup_target", {}).get("met")
        found.append(
            {
                "code": "class_never_predicted",
                "model": who,
                "classes": missing,
                "message": f"The {who} never predicts {kind} {named}"
                + (f": {', '.join(retention)}" if retention else "")
                + ("; the speed target is met, but not with every class" if met else "")
                + ". Its per-class rows say what else it misses; more epochs, a larger "
                "student (a lower target), or more training rows of that "
                f"{kind} can bring it back.",
            }
        )
    return found


def _class_note(name: str, part: dict[str, Any], teacher: dict[str, Any]) -> str:
    """How many eval rows (gold entities) of ``name`` there are, and how the teacher did."""
    unit = "eval rows" if "per_class" in part else "gold entities"
    support = (part.get("per_class") or part.get("per_type") or {}).get(name, {}).get("support")
    gold = f"{support} {unit}" if support is not None else f"in the {unit}"
    if name in (teacher.get("never_predicted") or ()):
        return f"{gold}; the teacher never predicts it either"
    row = (teacher.get("per_class") or teacher.get("per_type") or {}).get(name)
    return f"{gold}; teacher recall {row['recall']:.2f}" if row else gold


def _overshoot(
    metrics: dict[str, Any], spec: CompressionSpec, teacher_config: dict[str, Any]
) -> list[dict[str, Any]]:
    verdict = metrics.get("speedup_target")
    if not verdict or verdict["measured"] <= verdict["target"] * (1 + speed_steps.OVERSHOOT):
        return []
    target, measured = verdict["target"], verdict["measured"]
    structured = list(spec.pruning.structured)
    why = ""
    plan_data = (metrics.get("pruning_plan") or {}).get("speed_plan")
    if plan_data:
        chosen = SpeedPlan.from_dict(plan_data)
        sizes = plan.teacher_sizes(teacher_config, task=spec.task, num_labels=len(spec.label_names))
        where = speed_steps.landing(
            sizes, structured, target, seq_len=chosen.seq_len, fit=chosen.fit, taken=chosen.shape
        )
        if where.short is not None:
            short = where.short
            how = (
                "short of the target, and these structures have no step in between"
                if short.speedup < target
                else "but the plan's own timing put the larger students it tried short"
            )
            why = (
                f" The student is {speed_steps.describe(sizes, chosen.shape)}; the next "
                f"larger one pruning.structured {structured} allows "
                f"({speed_steps.describe(sizes, short.shape)}) was predicted at "
                f"{short.speedup:.2f}x by this machine's latency fit, {how}."
            )
    finer = speed_steps.finer(structured)
    return [
        {
            "code": "speedup_overshoot",
            "target": target,
            "measured": measured,
            "message": f"The student is {measured:.2f}x faster than the teacher for a target "
            f"of {target:g}x ({measured / target - 1:.0%} more), and kept less of its quality "
            f"for speed the job did not ask for.{why}"
            + (f" To land nearer the target, {finer}." if finer else ""),
        }
    ]


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
