"""Checks on a job request against its teacher, its dataset and what the engine can do,
run before anything is written or queued. Each failure is a 422 that names the field at
fault and says what to change.

What the engine supports comes from ``workers/engine/capabilities.py`` (plain Python,
no torch), so a feature enabled there is accepted here with no change to this file.
"""

from __future__ import annotations

from typing import Any

from app.datasets.labels import LABELS_MISSING_FROM_TRAIN, describe, unseen_labels
from app.datasets.tables import Dataset
from app.errors import ProblemError
from app.jobs.schemas import JobCreate
from app.models.archive import head_task
from app.models.tables import Model
from jobspec import families, plan, vocabulary
from workers.engine.spec import EngineInputError
from workers.engine.validate import check_speedup_bound, speedup_warnings


def check_job_request(body: JobCreate, teacher: Model, dataset: Dataset) -> list[dict[str, Any]]:
    """Raise the first problem; return what is allowed but worth saying before the job
    runs (each ``code``, ``message``, ``param``, ``data``), such as a speed target the
    allowed structures can only overshoot."""
    _check_task(body, dataset)
    _check_splits(body, dataset)
    _check_labels(body, dataset)
    _check_teacher(body, teacher, dataset)
    _check_engine_support(body)
    _check_family(body, teacher)
    _check_export(body, teacher)
    return _check_reachable(body, teacher, dataset)


def _not_supported_yet(param: str, detail: str) -> ProblemError:
    return ProblemError(422, "not_supported_yet", detail, param=param)


def _listing(values: tuple[str, ...] | list[str]) -> str:
    return ", ".join(repr(v) for v in values) if values else "none yet"


def _check_task(body: JobCreate, dataset: Dataset) -> None:
    # A task the engine does not do never gets here: JobCreate.task lists only
    # vocabulary.TASKS, so it is a 422 validation_error naming `task`.
    # task_hint says what the dataset's columns hold (text/label or tokens/tags); a
    # dataset without one is trusted to fit.
    if dataset.task_hint is not None and dataset.task_hint != body.task:
        holds = {
            "sequence-classification": "texts with one label each",
            "token-classification": "tokens with one tag each",
        }.get(dataset.task_hint, f"{dataset.task_hint} data")
        raise ProblemError(
            422,
            "task_dataset_mismatch",
            f"Dataset {dataset.id} holds {holds} (task_hint {dataset.task_hint!r}), which a "
            f"{body.task} job cannot train on; set task to {dataset.task_hint!r} or use a "
            f"dataset made for {body.task}.",
            param="task",
        )


def _check_splits(body: JobCreate, dataset: Dataset) -> None:
    for split_field, split in (
        ("train_split", body.dataset.train_split),
        ("eval_split", body.dataset.eval_split),
    ):
        if split not in dataset.splits:
            raise ProblemError(
                422,
                "split_not_found",
                f"Dataset {dataset.id} has no split {split!r}; it has "
                f"{', '.join(sorted(dataset.splits))}.",
                param=f"dataset.{split_field}",
            )


def _check_labels(body: JobCreate, dataset: Dataset) -> None:
    ref = body.dataset
    if ref.allow_unseen_labels or not dataset.label_counts:
        return  # allowed, or uploaded before labels were counted
    unseen = unseen_labels(dataset.label_counts, train=ref.train_split, other=ref.eval_split)
    if unseen:
        raise ProblemError(
            422,
            LABELS_MISSING_FROM_TRAIN,
            f"Eval split {ref.eval_split!r} of dataset {dataset.id} has labels that train "
            f"split {ref.train_split!r} lacks: {describe(unseen)}. The student could never "
            "learn them, and they would count as errors; if one is a typo, fix the labels "
            "and upload the dataset again, or set dataset.allow_unseen_labels to true to "
            "train anyway.",
            param="dataset.eval_split",
        )


def _check_teacher(body: JobCreate, teacher: Model, dataset: Dataset) -> None:
    # The tokenizer needs no check here: an archive without one is refused at upload
    # (model_tokenizer_missing), so every stored teacher has one.
    if teacher.model_type not in vocabulary.MODEL_TYPES:
        raise ProblemError(
            422,
            "model_unsupported",
            f"Teacher model_type {teacher.model_type!r} is not supported; "
            f"supported: {_listing(vocabulary.MODEL_TYPES)}.",
            param="teacher.model_id",
        )
    why = _head_unfit(body.task, teacher, len(dataset.label_names))
    if why is not None and body.training.teacher_epochs < 1:
        raise ProblemError(
            422,
            "teacher_head_mismatch",
            f"Teacher {teacher.id} {why}, so its head must be trained on dataset "
            f"{dataset.id} before distilling; set training.teacher_epochs to at least 1 "
            "(the default is 3), or use a teacher fine-tuned for this task on these "
            f"{len(dataset.label_names)} labels.",
            param="training.teacher_epochs",
        )


def _head_unfit(task: str, teacher: Model, num_labels: int) -> str | None:
    """Why the teacher's head cannot serve this job as it is, or None if it can."""
    kind = head_task(teacher.architecture, has_task_head=teacher.has_task_head)
    if kind is None:
        return "has no task head"
    if kind != task:
        return f"has a {kind} head ({teacher.architecture}), not a {task} one"
    if teacher.num_labels != num_labels:
        return f"has a head for {teacher.num_labels} labels and the dataset has {num_labels}"
    return None


def _check_engine_support(body: JobCreate) -> None:
    if body.strategy not in vocabulary.STRATEGIES:
        raise _not_supported_yet(
            "strategy",
            f"Strategy {body.strategy!r} is not supported yet; supported: "
            f"{_listing(vocabulary.STRATEGIES)}.",
        )
    if body.training.cache_teacher_logits and (
        body.distillation.hidden_states or body.distillation.attention
    ):
        raise ProblemError(
            422,
            "cache_needs_logits_only",
            "Cached teacher logits replace the teacher's forward pass, which the hidden-state "
            "and attention losses need; set distillation.hidden_states and "
            "distillation.attention to false, or cache_teacher_logits to false.",
            param="training.cache_teacher_logits",
        )
    least = vocabulary.MIN_EPOCHS.get(body.strategy, 1)
    if body.training.epochs < least:
        raise ProblemError(
            422,
            "too_few_epochs",
            f"Strategy {body.strategy!r} distils in rounds of one epoch at least; set "
            f"training.epochs to {least} or more.",
            param="training.epochs",
        )
    _check_target(body)
    _check_pruning(body)
    if body.distillation.attention and not vocabulary.ATTENTION_LOSS:
        raise _not_supported_yet(
            "distillation.attention",
            "The attention-map loss is not supported yet; set distillation.attention to "
            "false (the logit and hidden-state losses are).",
        )
    if body.training.cache_teacher_logits and not vocabulary.CACHE_TEACHER_LOGITS:
        raise _not_supported_yet(
            "training.cache_teacher_logits",
            "Caching the teacher's logits is not supported yet; set "
            "training.cache_teacher_logits to false (the teacher then runs at every step).",
        )


def _check_target(body: JobCreate) -> None:
    target = body.target
    kind = next(
        k for k in ("params_ratio", "sparsity", "speedup") if getattr(target, k) is not None
    )
    if kind not in vocabulary.TARGETS:
        raise _not_supported_yet(
            f"target.{kind}",
            f"A {kind} target is not supported yet; supported targets: "
            f"{_listing(vocabulary.TARGETS)}.",
        )
    if kind == "sparsity" and target.pattern not in vocabulary.SPARSITY_PATTERNS:
        raise _not_supported_yet(
            "target.pattern",
            f"Sparsity pattern {target.pattern!r} is not supported yet; supported: "
            f"{_listing(vocabulary.SPARSITY_PATTERNS)}.",
        )
    if kind == "speedup" and body.strategy not in vocabulary.SPEEDUP_STRATEGIES:
        raise _not_supported_yet(
            "strategy",
            f"A speedup target is planned for the strategies "
            f"{_listing(vocabulary.SPEEDUP_STRATEGIES)}, not {body.strategy!r} yet; use one "
            "of those, or a params_ratio target with joint.",
        )


def _check_family(body: JobCreate, teacher: Model) -> None:
    """What the teacher's family cannot lose yet (its adapter in workers/engine/families/
    says; what its config can never describe is pruning_not_possible, further on)."""
    family = families.family_of(teacher.model_type)
    not_yet = families.unsupported_structures(family, body.pruning.structured)
    if not_yet:
        raise _not_supported_yet(
            "pruning.structured",
            f"Pruning {_listing(not_yet)} of a {family.name} teacher is not supported yet; "
            f"for {family.name} models pruning.structured may hold "
            f"{_listing(list(family.structures))}.",
        )


def _check_export(body: JobCreate, teacher: Model) -> None:
    onnx = [f for f in body.export.formats if f != "safetensors"]
    if onnx and teacher.model_type not in vocabulary.ONNX_MODEL_TYPES:
        raise _not_supported_yet(
            "export.formats",
            f"ONNX export of {teacher.model_type!r} models is not supported yet (asked for "
            f"{_listing(onnx)}); it is for {_listing(vocabulary.ONNX_MODEL_TYPES)}. Ask "
            'for ["safetensors"].',
        )
    if onnx and teacher.num_parameters > vocabulary.ONNX_MAX_PARAMETERS:
        raise _not_supported_yet(
            "export.formats",
            f"Teacher {teacher.id} has {teacher.num_parameters:,} parameters; an ONNX file "
            f"holds {vocabulary.ONNX_MAX_PARAMETERS:,} at most (one 2 GB protobuf, and "
            'the teacher is exported to be timed too). Ask for ["safetensors"].',
        )
    runtime = body.target.runtime
    if body.target.speedup is None or runtime is None:
        return
    needed = vocabulary.SPEEDUP_RUNTIMES[runtime]
    if needed is not None and needed not in body.export.formats:
        raise ProblemError(
            422,
            "speedup_runtime_not_exported",
            f"A speedup target in {runtime} is measured on the {needed!r} student, which "
            f"the worker times in {runtime} only when it exports it; add {needed!r} to "
            "export.formats, or measure in another runtime.",
            param="target.runtime",
        )


def _check_pruning(body: JobCreate) -> None:
    pruning = body.pruning
    not_yet = [s for s in pruning.structured if s not in vocabulary.STRUCTURED]
    if not_yet or "layers" not in pruning.structured:
        raise _not_supported_yet(
            "pruning.structured",
            "This engine reaches target.params_ratio by removing whole layers and, with "
            f'"ffn", FFN neurons: pruning.structured must include "layers" and may hold '
            f"{_listing(vocabulary.STRUCTURED)}"
            + (f" ({_listing(not_yet)} not supported yet)." if not_yet else "."),
        )
    if pruning.importance not in vocabulary.IMPORTANCE:
        raise _not_supported_yet(
            "pruning.importance",
            f"Importance {pruning.importance!r} is not supported yet; supported: "
            f"{_listing(vocabulary.IMPORTANCE)}.",
        )
    if pruning.unstructured_sparsity and not vocabulary.UNSTRUCTURED:
        raise _not_supported_yet(
            "pruning.unstructured_sparsity",
            "Unstructured pruning is not supported yet; set pruning.unstructured_sparsity to 0.",
        )


def _sizes(config: dict[str, Any], *, task: str, num_labels: int) -> plan.TeacherSizes | None:
    """The teacher's sizes as the engine's planner sees them (plan.py is plain Python,
    shared with the engine), or None if config.json lacks them."""
    try:
        return plan.sizes_from_config(
            config, num_labels=num_labels, head_dense=task == "sequence-classification"
        )
    except (KeyError, TypeError, ValueError):
        return None


def _check_reachable(body: JobCreate, teacher: Model, dataset: Dataset) -> list[dict[str, Any]]:
    sizes = _sizes(teacher.config, task=body.task, num_labels=len(dataset.label_names))
    if sizes is None:
        return []
    structured = body.pruning.structured
    try:
        plan.check_structured(sizes, structured)
    except EngineInputError as e:
        raise ProblemError(
            422, "pruning_not_possible", e.message, param="pruning.structured"
        ) from None
    if body.target.speedup is not None:
        try:
            check_speedup_bound(
                sizes, structured, body.target.speedup, seq_len=body.training.max_seq_length
            )
        except EngineInputError as e:
            raise ProblemError(422, e.code, e.message, param="target.speedup") from None
        return speedup_warnings(
            sizes, structured, body.target.speedup, seq_len=body.training.max_seq_length
        )
    ratio = body.target.params_ratio
    if ratio is None:
        return []
    smallest = plan.smallest_ratio(sizes, structured)
    if ratio < smallest - 1e-9:
        widths = [s for s in ("ffn", "hidden", "heads") if s in structured]
        how = (
            f"one layer with its {', '.join(widths)} width at the floor"
            if widths
            else 'one whole layer; add "ffn" (or "hidden") to pruning.structured to go smaller'
        )
        raise ProblemError(
            422,
            "target_unreachable",
            f"The smallest student this engine makes from this teacher keeps {how}: about "
            f"{smallest:.3f} of its non-embedding parameters; ask for "
            f"target.params_ratio >= {smallest:.3f}.",
            param="target.params_ratio",
        )
    return []
