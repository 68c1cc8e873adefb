"""Checks on a job request against its teacher, its dataset and what the engine can do,
run before anything is written or queued. Each failure is a 422 that names the field at
fault and says what to change.

What the engine does and what a teacher allows are the engine's own rules, in plain
Python (``app/jobspec/rules.py``, ``plan.py``, ``speed_plan.py``): this module calls them and
answers their ``EngineInputError`` as a 422 with its code and ``param``, so a rule is
written once and a feature the engine enables there is accepted here with no change.
What only the service knows (datasets, splits, labels, the stored teacher's head) is
checked here.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from app.datasets.labels import LABELS_MISSING_FROM_TRAIN, describe, unseen_labels
from app.datasets.tables import Dataset
from app.errors import ProblemError
from app.jobs.schemas import JobCreate
from app.jobspec import plan, rules, speed_plan, speed_steps, values, vocabulary
from app.jobspec.errors import EngineInputError
from app.models.archive import head_task
from app.models.tables import Model


def check_job_request(body: JobCreate, teacher: Model, dataset: Dataset) -> list[dict[str, Any]]:
    """Raise the first problem; return what is allowed but worth saying before the job
    runs (each ``code``, ``message``, ``param``, ``data``), such as a speed target the
    allowed structures can only overshoot."""
    _check_task(body, dataset)
    _check_splits(body, dataset)
    _check_labels(body, dataset)
    _check_teacher(body, teacher, dataset)
    with _as_problem():
        _check_engine_support(body, teacher)
        return _check_reachable(body, teacher, dataset)


@contextmanager
def _as_problem() -> Iterator[None]:
    """The engine's refusal as the API's: a 422 with its code, message and field."""
    try:
        yield
    except EngineInputError as e:
        raise ProblemError(422, e.code, e.message, param=e.param) from None


def _check_task(body: JobCreate, dataset: Dataset) -> None:
    # A task the engine does not do never gets here: JobCreate.task lists only
    # vocabulary.TASKS, so it is a 422 validation_error naming `task`.
    # task_hint says what the dataset's columns hold (text/label or tokens/tags); a
    # dataset without one is trusted to fit.
    if dataset.task_hint is not None and dataset.task_hint != body.task:
        holds = {
            vocabulary.SEQUENCE_CLASSIFICATION: "texts with one label each",
            vocabulary.TOKEN_CLASSIFICATION: "tokens with one tag each",
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
    with _as_problem():
        rules.check_teacher(teacher.model_type)  # model_unsupported
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


def _check_engine_support(body: JobCreate, teacher: Model) -> None:
    """What this release does and what the teacher's family allows (app/jobspec/rules.py)."""
    training, target = body.training, body.target
    rules.check_strategy(body.strategy, epochs=training.epochs)
    rules.check_distillation(
        hidden_states=body.distillation.hidden_states,
        attention=body.distillation.attention,
        cache_teacher_logits=training.cache_teacher_logits,
    )
    rules.check_target_support(
        values.target_kind(target),
        pattern=target.pattern,
        runtime=target.runtime,
        strategy=body.strategy,
        formats=body.export.formats,
    )
    if target.seq_len is not None:
        _check_seq_len(target.seq_len, teacher)
    sweep = values.target_kind(target) in vocabulary.SWEEP_TARGET_KINDS
    if body.export.keep_candidates and not sweep:
        raise EngineInputError(
            "validation_error",
            "export.keep_candidates applies only to a sweep (target.min_retention or "
            "target.max_latency_ms): a single job has no candidates; leave it out",
            param="export.keep_candidates",
        )
    if sweep and not training.teacher_cache:
        raise EngineInputError(
            "validation_error",
            "a sweep fine-tunes its teacher once and keeps it in the tenant's teacher cache "
            "for its candidates to share: leave training.teacher_cache true",
            param="training.teacher_cache",
        )
    pruning = body.pruning
    rules.check_pruning(
        pruning.structured,
        importance=pruning.importance,
        unstructured_sparsity=pruning.unstructured_sparsity,
    )
    rules.check_family(rules.check_teacher(teacher.model_type), pruning.structured)
    rules.check_onnx(teacher.model_type, body.export.formats)


def _check_seq_len(seq_len: int, teacher: Model) -> None:
    """A max_latency_ms sweep's rows are ``seq_len`` tokens: no longer than the
    teacher's position table."""
    positions = (teacher.config or {}).get("max_position_embeddings")
    if isinstance(positions, int) and seq_len > positions:
        raise EngineInputError(
            "validation_error",
            f"target.seq_len {seq_len}: teacher {teacher.id} reads at most {positions} "
            "tokens per row (max_position_embeddings); time the sweep at that many or fewer",
            param="target.seq_len",
        )


def _check_reachable(body: JobCreate, teacher: Model, dataset: Dataset) -> list[dict[str, Any]]:
    """What the teacher's sizes (config.json) allow: the structures, and the target."""
    try:
        sizes = plan.teacher_sizes(
            teacher.config, task=body.task, num_labels=len(dataset.label_names)
        )
    except (KeyError, TypeError, ValueError):
        return []  # config.json lacks the sizes: the worker says what it finds
    structured = body.pruning.structured
    plan.check_structured(sizes, structured)
    target, seq_len = body.target, body.training.max_seq_length
    if target.speedup is not None:
        speed_plan.check_speedup_bound(sizes, structured, target.speedup, seq_len=seq_len)
        return speed_steps.speedup_warnings(sizes, structured, target.speedup, seq_len=seq_len)
    if target.params_ratio is not None:
        plan.check_ratio_reachable(sizes, structured, target.params_ratio)
    return []
