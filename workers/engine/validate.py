"""Checks on a spec that need no torch: each failure names what the user should change."""

from __future__ import annotations

import json
import math
from collections.abc import Collection
from pathlib import Path
from typing import Any

from jobspec import plan, speed_plan, speed_steps, vocabulary
from jobspec.vocabulary import (
    IMPORTANCE,
    MIN_EPOCHS,
    MODEL_TYPES,
    SPARSITY_PATTERNS,
    STRATEGIES,
    STRUCTURED,
    TARGETS,
    TASKS,
    UNSTRUCTURED,
)
from workers.engine.spec import CompressionSpec, EngineInputError

# Also raised by distill.distill(), for callers that skip validate_spec.
CACHE_CONFLICT = "cache_teacher_logits needs distillation.hidden_states=false and attention=false"


def validate_spec(spec: CompressionSpec) -> None:
    if spec.task not in TASKS:
        raise EngineInputError(
            "unsupported_task", f"task {spec.task!r} is not supported; supported: {list(TASKS)}"
        )
    if spec.strategy not in STRATEGIES:
        raise EngineInputError(
            "unsupported_strategy",
            f"strategy {spec.strategy!r} is not supported; supported: {list(STRATEGIES)}",
        )
    _validate_export(spec)
    _validate_target(spec)
    _validate_pruning(spec)
    _validate_structure(spec)
    least = MIN_EPOCHS.get(spec.strategy, 1)
    if spec.training.epochs < least:
        raise EngineInputError(
            "bad_training",
            f"strategy {spec.strategy!r} distils in rounds of one epoch at least: set "
            f"training.epochs to {least} or more",
        )
    _validate_distillation(spec)
    _validate_training(spec)
    labels = spec.label_names
    if len(labels) < 2:
        raise EngineInputError("too_few_labels", "label_names needs at least two labels")
    if len(set(labels)) != len(labels):
        raise EngineInputError("duplicate_labels", f"label_names has duplicates: {list(labels)}")
    if spec.latency_threads < 1:
        raise EngineInputError("bad_latency_threads", "latency_threads must be at least 1")


def _validate_target(spec: CompressionSpec) -> None:
    target = spec.target
    kinds = ("params_ratio", "sparsity", "speedup")
    given = [k for k in kinds if getattr(target, k) is not None]
    if len(given) != 1:
        raise EngineInputError(
            "missing_target",
            "give exactly one of target.params_ratio, target.sparsity or target.speedup",
        )
    if given[0] not in TARGETS:
        raise EngineInputError(
            "unsupported_target",
            f"target {given[0]!r} is not supported yet; supported: {list(TARGETS)}",
        )
    if target.sparsity is not None:
        if target.pattern not in SPARSITY_PATTERNS:
            raise EngineInputError(
                "unsupported_pattern",
                f"target.pattern {target.pattern!r} is not available; "
                f"available: {list(SPARSITY_PATTERNS)}",
            )
        if not 0.0 < target.sparsity < 1.0:
            raise EngineInputError(
                "bad_sparsity",
                f"target.sparsity is the fraction of encoder weights set to zero, in (0, 1); "
                f"got {target.sparsity}",
            )
        if target.pattern == "2:4" and target.sparsity != 0.5:
            raise EngineInputError(
                "bad_sparsity",
                "the 2:4 pattern zeroes 2 weights in every 4, so its sparsity is 0.5; "
                f"got {target.sparsity}",
            )
        return
    if target.speedup is not None:
        if not (math.isfinite(target.speedup) and target.speedup > 1.0):
            raise EngineInputError(
                "bad_speedup",
                "target.speedup is how many times faster than the teacher the student must "
                f"be at batch 1 on CPU, above 1; got {target.speedup}",
            )
        if spec.strategy not in vocabulary.SPEEDUP_STRATEGIES:
            raise EngineInputError(
                "unsupported_strategy",
                f"a speedup target is planned for {list(vocabulary.SPEEDUP_STRATEGIES)}, "
                f"not {spec.strategy!r}; use one of those or a params_ratio target",
            )
        _validate_speedup_runtime(spec)
        return
    if target.runtime != "pytorch":
        raise EngineInputError(
            "bad_target", "target.runtime applies only to a speedup target; remove it"
        )
    ratio = target.params_ratio
    assert ratio is not None
    if not 0.0 < ratio <= 1.0:
        raise EngineInputError(
            "bad_params_ratio",
            f"target.params_ratio is the fraction of non-embedding parameters to keep, "
            f"in (0, 1]; got {ratio}",
        )


def _validate_speedup_runtime(spec: CompressionSpec) -> None:
    runtime = spec.target.runtime
    if runtime not in vocabulary.SPEEDUP_RUNTIMES:
        raise EngineInputError(
            "unsupported_runtime",
            f"target.runtime {runtime!r} is not one this engine times in; supported: "
            f"{list(vocabulary.SPEEDUP_RUNTIMES)}",
        )
    needed = vocabulary.SPEEDUP_RUNTIMES[runtime]
    if needed is not None and needed not in spec.export.formats:
        raise EngineInputError(
            "speedup_runtime_not_exported",
            f"a speedup target in {runtime} is met by the {needed} student, which the "
            f"report times there; add {needed!r} to export.formats",
        )


def _validate_export(spec: CompressionSpec) -> None:
    formats = spec.export.formats
    unknown = [f for f in formats if f not in vocabulary.EXPORT_FORMATS]
    if unknown or not formats or len(set(formats)) != len(formats):
        raise EngineInputError(
            "unsupported_export_format",
            f"export.formats must list each of {list(vocabulary.EXPORT_FORMATS)} at most "
            f"once, and one at least; got {list(formats)}",
        )


def _validate_pruning(spec: CompressionSpec) -> None:
    pruning = spec.pruning
    not_yet = sorted(set(pruning.structured) - set(STRUCTURED))
    if not_yet:
        raise EngineInputError(
            "unsupported_pruning",
            f"structured pruning of {not_yet} is not supported yet; pruning.structured may "
            f"hold {list(STRUCTURED)}",
        )
    if "layers" not in pruning.structured:
        raise EngineInputError(
            "unsupported_pruning",
            "this engine reaches params_ratio by removing whole layers (and, with 'ffn', "
            "FFN neurons): pruning.structured must include 'layers'",
        )
    if pruning.importance not in IMPORTANCE:
        raise EngineInputError(
            "unsupported_importance",
            f"pruning.importance {pruning.importance!r} is not available; "
            f"available: {list(IMPORTANCE)}",
        )
    if pruning.importance_batches < 1:
        raise EngineInputError("bad_pruning", "pruning.importance_batches must be at least 1")
    if not UNSTRUCTURED and pruning.unstructured_sparsity:
        raise EngineInputError(
            "unsupported_pruning", "unstructured pruning is not supported yet; set it to 0"
        )
    if not 0.0 <= pruning.unstructured_sparsity < 1.0:
        raise EngineInputError(
            "bad_pruning",
            f"pruning.unstructured_sparsity must be in [0, 1); got {pruning.unstructured_sparsity}",
        )


def _validate_distillation(spec: CompressionSpec) -> None:
    dist = spec.distillation
    # Read at call time, so that a test (or a release) switching the flag is obeyed.
    if dist.attention and not vocabulary.ATTENTION_LOSS:
        raise EngineInputError(
            "unsupported_loss", "the attention-map loss is not supported yet; set attention=false"
        )
    if not 0.0 <= dist.alpha <= 1.0:
        raise EngineInputError(
            "bad_alpha", f"distillation.alpha must be in [0, 1]; got {dist.alpha}"
        )
    if dist.temperature <= 0:
        raise EngineInputError(
            "bad_temperature", f"distillation.temperature must be > 0; got {dist.temperature}"
        )


def _validate_training(spec: CompressionSpec) -> None:
    tr = spec.training
    checks = [
        (tr.epochs >= 1, "training.epochs must be at least 1"),
        (tr.teacher_epochs >= 0, "training.teacher_epochs must be 0 or more"),
        (tr.batch_size >= 1, "training.batch_size must be at least 1"),
        (
            # None: chosen by the depth of the cut (spec.student_learning_rate).
            tr.learning_rate is None or tr.learning_rate > 0,
            "training.learning_rate must be > 0, or null for the default",
        ),
        (tr.teacher_learning_rate > 0, "training.teacher_learning_rate must be > 0"),
        (tr.max_seq_length >= 8, "training.max_seq_length must be at least 8"),
        (tr.checkpoint_every_steps >= 0, "training.checkpoint_every_steps must be 0 or more"),
        (
            vocabulary.CACHE_TEACHER_LOGITS or not tr.cache_teacher_logits,
            "training.cache_teacher_logits is not supported yet; set it to false",
        ),
        (
            # The hidden-state and attention losses need the teacher's forward pass at
            # every step, which is what caching its logits removes.
            not tr.cache_teacher_logits
            or not (spec.distillation.hidden_states or spec.distillation.attention),
            CACHE_CONFLICT,
        ),
    ]
    for ok, message in checks:
        if not ok:
            raise EngineInputError("bad_training", message)


def _validate_structure(spec: CompressionSpec) -> None:
    """What the teacher's config cannot describe is refused now, not after fine-tuning."""
    structural = spec.target.params_ratio is not None or spec.target.speedup is not None
    if not structural or not (spec.teacher_dir / "config.json").is_file():
        return  # the teacher is checked (with a clearer message) when it is read
    config = read_teacher_config(spec.teacher_dir)
    try:
        sizes = plan.sizes_from_config(
            config,
            num_labels=len(spec.label_names),
            head_dense=spec.task == "sequence-classification",
        )
    except (KeyError, TypeError, ValueError):
        return  # an unsupported model type is reported by the model-type check
    plan.check_structured(sizes, spec.pruning.structured)
    if spec.target.speedup is not None:
        check_speedup_bound(
            sizes,
            spec.pruning.structured,
            spec.target.speedup,
            seq_len=spec.training.max_seq_length,
        )


def check_speedup_bound(
    sizes: plan.TeacherSizes,
    structured: Collection[str],
    speedup: float,
    *,
    seq_len: int,
) -> None:
    """Refuse a speed-up above what removing the allowed structures could give even if
    latency followed FLOPs alone (the engine then measures what this machine gives)."""
    bound = speed_plan.flops_bound(sizes, structured, seq_len)
    if speedup > bound:
        widths = "" if "ffn" in structured else "; adding 'ffn' to pruning.structured allows more"
        raise EngineInputError(
            "target_unreachable",
            f"target.speedup {speedup:g} is more than this teacher allows: removing "
            f"{sorted(structured)} cuts its layer FLOPs by {bound:.2f}x at most, and latency "
            f"falls less than FLOPs; ask for at most {bound:.2f}{widths}",
        )


def speedup_warnings(
    sizes: plan.TeacherSizes,
    structured: Collection[str],
    speedup: float,
    *,
    seq_len: int,
) -> list[dict[str, Any]]:
    """What a user should hear before a speedup job runs, from an estimate of the steps
    the allowed shapes make (speed_steps.ESTIMATE_FIT): that the target falls between
    two steps far apart and the job will take the faster one, or that no allowed shape
    is estimated to reach it. Each: ``code``, ``message``, ``param`` and ``data``."""
    where = speed_steps.landing(sizes, structured, speedup, seq_len=seq_len)
    asked = f"target.speedup {speedup:g} with pruning.structured {sorted(structured)}"
    finer = speed_steps.finer(structured)
    estimate = (
        "Estimated from FLOPs and a CPU latency law measured on MiniLM-L6 "
        "(docs/engine.md); the worker times the shapes on its own hardware."
    )
    taken, short = where.taken, where.short
    if taken is None:
        assert short is not None  # every teacher has a smaller shape
        fastest = speed_steps.describe(sizes, short.shape)
        return [
            {
                "code": "speedup_may_be_unreachable",
                "param": "target.speedup",
                "message": f"{asked}: the fastest student these structures allow ({fastest}) "
                f"is estimated at {short.speedup:.2f}x, so the job may fail with "
                "target_unreachable once the worker has timed it. Ask for less"
                + (f", or {finer} for narrower, faster students" if finer else "")
                + f". {estimate}",
                "data": {"estimated_fastest": round(short.speedup, 3), "shape": fastest},
            }
        ]
    if where.overshoot <= speed_steps.OVERSHOOT:
        return []
    landed = speed_steps.describe(sizes, taken.shape)
    below = speed_steps.describe(sizes, short.shape) if short is not None else None
    between = (
        f"none is estimated between {short.speedup:.2f}x ({below}) and "
        f"{taken.speedup:.2f}x ({landed})"
        if short is not None
        else f"the largest that reaches it is {landed}, estimated at {taken.speedup:.2f}x"
    )
    fixes = [f"{finer} for the steps in between"] if finer else []
    if short is not None:
        fixes.append(f"ask for at most {short.speedup:.2f}x to keep the larger student")
    return [
        {
            "code": "speedup_overshoot",
            "param": "target.speedup",
            "message": f"{asked}: the students these structures allow come in steps, and "
            f"{between}. The job will take the faster step, about {taken.speedup:.2f}x "
            f"({where.overshoot:.0%} more than asked), and keep less of the teacher's "
            "quality for it" + (f"; {' or '.join(fixes)}" if fixes else "") + f". {estimate}",
            "data": {
                "estimated_speedup": round(taken.speedup, 3),
                "shape": landed,
                "step_below": round(short.speedup, 3) if short is not None else None,
                "step_below_shape": below,
            },
        }
    ]


def read_teacher_config(teacher_dir: Path) -> dict[str, Any]:
    """The teacher's config.json, checked before any weights are touched."""
    config_path = teacher_dir / "config.json"
    if not config_path.is_file():
        raise EngineInputError("teacher_missing_config", "the teacher folder has no config.json")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise EngineInputError(
            "teacher_bad_config", f"config.json is not valid JSON: {exc}"
        ) from exc
    if not isinstance(config, dict):
        raise EngineInputError("teacher_bad_config", "config.json must hold a JSON object")
    model_type = config.get("model_type")
    if model_type not in MODEL_TYPES:
        raise EngineInputError(
            "unsupported_model_type",
            f"model_type {model_type!r} is not supported; supported: {list(MODEL_TYPES)}",
        )
    return config
