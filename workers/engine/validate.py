"""Checks on a spec that need no torch: each failure names what the user should change.

The rules a request must keep are the API's own (``app/jobspec/rules.py``, ``values.py``,
``plan.check_structured``, ``speed_plan.check_speedup_bound``): a spec file given to
``modelpress compress`` is refused as a job request would be, with the same codes. What
only a spec can get wrong (label names, batches to score, latency threads) is checked
here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from app.jobspec import families, plan, rules, speed_plan, values
from workers.engine.spec import CompressionSpec, EngineInputError


def validate_spec(spec: CompressionSpec) -> None:
    rules.check_task(spec.task)
    rules.check_strategy(spec.strategy, epochs=spec.training.epochs)
    values.check_formats(spec.export.formats)
    values.check_quantization_aware(spec.export.quantization_aware, spec.export.formats)
    target = spec.target
    kind = values.check_target(target)
    rules.check_target_support(
        kind,
        pattern=target.pattern,
        runtime=target.runtime,
        strategy=spec.strategy,
        formats=spec.export.formats,
    )
    _validate_pruning(spec)
    _validate_structure(spec)
    dist = spec.distillation
    rules.check_distillation(
        hidden_states=dist.hidden_states,
        attention=dist.attention,
        cache_teacher_logits=spec.training.cache_teacher_logits,
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
    if not spec.latency_budget_s > 0:
        raise EngineInputError("bad_latency_budget", "latency_budget_s must be positive")


def _validate_pruning(spec: CompressionSpec) -> None:
    pruning = spec.pruning
    rules.check_pruning(
        pruning.structured,
        importance=pruning.importance,
        unstructured_sparsity=pruning.unstructured_sparsity,
    )
    if pruning.importance_batches < 1:
        raise EngineInputError("bad_pruning", "pruning.importance_batches must be at least 1")
    if pruning.unstructured_sparsity not in values.UNSTRUCTURED_SPARSITY:
        raise EngineInputError(
            "bad_pruning",
            f"pruning.unstructured_sparsity must be in {values.UNSTRUCTURED_SPARSITY}; got "
            f"{pruning.unstructured_sparsity}",
        )


def _validate_distillation(spec: CompressionSpec) -> None:
    dist = spec.distillation
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
    ]
    for ok, message in checks:
        if not ok:
            raise EngineInputError("bad_training", message)
    values.check_parallelism(
        batch_size=tr.batch_size, devices=tr.devices, accumulation=tr.gradient_accumulation_steps
    )


def _validate_structure(spec: CompressionSpec) -> None:
    """What the teacher's config cannot describe is refused now, not after fine-tuning."""
    structural = spec.target.params_ratio is not None or spec.target.speedup is not None
    if not structural or not (spec.teacher_dir / "config.json").is_file():
        return  # the teacher is checked (with a clearer message) when it is read
    config = read_teacher_config(spec.teacher_dir)
    try:
        sizes = plan.teacher_sizes(config, task=spec.task, num_labels=len(spec.label_names))
    except (KeyError, TypeError, ValueError):
        return  # a config without its sizes is reported when the teacher is read
    plan.check_structured(sizes, spec.pruning.structured)
    if spec.target.speedup is not None:
        speed_plan.check_speedup_bound(
            sizes,
            spec.pruning.structured,
            spec.target.speedup,
            seq_len=spec.training.max_seq_length,
        )


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
    families.family_of(config.get("model_type"))  # model_unsupported
    return config
