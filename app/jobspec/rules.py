"""What this release does and what a teacher's family allows, each rule written once.

The API runs these on a request before anything is queued (``app/jobs/validation.py``,
a 422 with the error's ``code`` and ``param``) and the engine runs them on a spec
(``workers/engine/validate.py``): one implementation, so the two cannot disagree. What
the release supports is read from ``vocabulary`` when a rule runs, so a release (or a
test) that holds a feature back is obeyed at once. The checks on a target's values are
``values.py``; those that need the teacher's sizes are beside what they compute
(``plan.check_structured``, ``plan.check_ratio_reachable``,
``speed_plan.check_speedup_bound``).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from app.jobspec import families, vocabulary
from app.jobspec.errors import EngineInputError
from app.jobspec.families import Family


def listing(values: Sequence[str]) -> str:
    return ", ".join(repr(v) for v in values) if values else "none yet"


def _not_yet(param: str, message: str, *, code: str = "not_supported_yet") -> EngineInputError:
    return EngineInputError(code, message, param=param)


def check_task(task: str) -> None:
    if task not in vocabulary.TASKS:
        raise _not_yet(
            "task", f"Task {task!r} is not supported yet; supported: {listing(vocabulary.TASKS)}."
        )


def check_strategy(strategy: str, *, epochs: int) -> None:
    if strategy not in vocabulary.STRATEGIES:
        raise _not_yet(
            "strategy",
            f"Strategy {strategy!r} is not supported yet; supported: "
            f"{listing(vocabulary.STRATEGIES)}.",
        )
    least = vocabulary.MIN_EPOCHS.get(strategy, 1)
    if epochs < least:
        raise EngineInputError(
            "too_few_epochs",
            f"Strategy {strategy!r} distils in rounds of one epoch at least; set "
            f"training.epochs to {least} or more.",
            param="training.epochs",
        )


# Also raised by distill.distill(), for callers that skip the checks.
CACHE_CONFLICT = (
    "Cached teacher logits replace the teacher's forward pass, which the hidden-state and "
    "attention losses need; set distillation.hidden_states and distillation.attention to "
    "false, or cache_teacher_logits to false."
)


def check_distillation(*, hidden_states: bool, attention: bool, cache_teacher_logits: bool) -> None:
    if cache_teacher_logits and (hidden_states or attention):
        raise EngineInputError(
            "cache_needs_logits_only", CACHE_CONFLICT, param="training.cache_teacher_logits"
        )
    if attention and not vocabulary.ATTENTION_LOSS:
        raise _not_yet(
            "distillation.attention",
            "The attention-map loss is not supported yet; set distillation.attention to "
            "false (the logit and hidden-state losses are).",
        )
    if cache_teacher_logits and not vocabulary.CACHE_TEACHER_LOGITS:
        raise _not_yet(
            "training.cache_teacher_logits",
            "Caching the teacher's logits is not supported yet; set "
            "training.cache_teacher_logits to false (the teacher then runs at every step).",
        )


def check_target_support(
    kind: str, *, pattern: str | None, runtime: str | None, strategy: str, formats: Collection[str]
) -> None:
    """What this release plans for a target of ``kind`` (``values.check_target`` gives
    it), and that a speedup's (or a sweep's) runtime has its student exported. A kind
    held back is refused after its strategy and runtime are checked, so a request that
    would be refused anyway hears why first."""
    if kind in vocabulary.RUNTIME_TARGET_KINDS:
        _check_speed_target(kind, runtime=runtime, strategy=strategy, formats=formats)
    if kind not in vocabulary.TARGETS:
        raise _not_yet(
            f"target.{kind}",
            f"A {kind} target is not supported yet; supported targets: "
            f"{listing(vocabulary.TARGETS)}.",
        )
    if kind == "sparsity" and pattern not in vocabulary.SPARSITY_PATTERNS:
        raise _not_yet(
            "target.pattern",
            f"Sparsity pattern {pattern!r} is not supported yet; supported: "
            f"{listing(vocabulary.SPARSITY_PATTERNS)}.",
        )


def _check_speed_target(
    kind: str, *, runtime: str | None, strategy: str, formats: Collection[str]
) -> None:
    """A speedup target, or a sweep whose candidates are speedup targets: a strategy
    that plans by speed, a runtime the engine times in, and the student exported for it."""
    if strategy not in vocabulary.SPEEDUP_STRATEGIES:
        raise _not_yet(
            "strategy",
            f"A {kind} target is planned for the strategies "
            f"{listing(vocabulary.SPEEDUP_STRATEGIES)}, not {strategy!r} yet; use one of "
            "those, or a params_ratio target with joint.",
        )
    runtime = runtime or vocabulary.DEFAULT_RUNTIME
    if runtime not in vocabulary.SPEEDUP_RUNTIMES:
        raise _not_yet(
            "target.runtime",
            f"Runtime {runtime!r} is not one this engine times in; supported: "
            f"{listing(list(vocabulary.SPEEDUP_RUNTIMES))}.",
        )
    needed = vocabulary.SPEEDUP_RUNTIMES[runtime]
    if needed is not None and needed not in formats:
        raise EngineInputError(
            "speedup_runtime_not_exported",
            f"A {kind} target in {runtime} is measured on the {needed!r} student, which "
            f"the worker times in {runtime} only when it exports it; add {needed!r} to "
            "export.formats, or measure in another runtime.",
            param="target.runtime",
        )


def check_structures(structured: Collection[str]) -> None:
    """pruning.structured: what this release removes, "layers" always among them."""
    not_yet = [s for s in structured if s not in vocabulary.STRUCTURED]
    if not_yet or "layers" not in structured:
        raise _not_yet(
            "pruning.structured",
            "This engine reaches target.params_ratio by removing whole layers and, with "
            f'"ffn", FFN neurons: pruning.structured must include "layers" and may hold '
            f"{listing(vocabulary.STRUCTURED)}"
            + (f" ({listing(not_yet)} not supported yet)." if not_yet else "."),
        )


def check_pruning(
    structured: Collection[str], *, importance: str, unstructured_sparsity: float
) -> None:
    check_structures(structured)
    if importance not in vocabulary.IMPORTANCE:
        raise _not_yet(
            "pruning.importance",
            f"Importance {importance!r} is not supported yet; supported: "
            f"{listing(vocabulary.IMPORTANCE)}.",
        )
    if unstructured_sparsity and not vocabulary.UNSTRUCTURED:
        raise _not_yet(
            "pruning.unstructured_sparsity",
            "Unstructured pruning is not supported yet; set pruning.unstructured_sparsity to 0.",
        )


def check_teacher(model_type: str | None) -> Family:
    """The teacher's family, or ``model_unsupported``."""
    return families.family_of(model_type)


def check_family(family: Family, structured: Collection[str]) -> None:
    """What of ``structured`` the family's config can never describe
    (``pruning_not_possible``, with why and what instead) or it cannot lose yet."""
    for structure in structured:
        if structure in family.impossible:
            raise EngineInputError(
                "pruning_not_possible", family.impossible[structure], param="pruning.structured"
            )
    not_yet = families.unsupported_structures(family, structured)
    if not_yet:
        raise _not_yet(
            "pruning.structured",
            f"Pruning {listing(not_yet)} of a {family.name} teacher is not supported yet; "
            f"for {family.name} models pruning.structured may hold "
            f"{listing(family.structures)}.",
        )


def check_onnx(model_type: str | None, formats: Collection[str]) -> None:
    """An ONNX format only for the families whose export the tests check (a model of any
    size: past 1 GiB of weights they go to an external data file beside the .onnx)."""
    onnx = [f for f in formats if f in vocabulary.ONNX_FORMATS]
    if not onnx:
        return
    if model_type not in vocabulary.ONNX_MODEL_TYPES:
        raise _not_yet(
            "export.formats",
            f"ONNX export of {model_type!r} models is not supported yet (asked for "
            f"{listing(onnx)}); it is for {listing(vocabulary.ONNX_MODEL_TYPES)}. Ask "
            'for ["safetensors"].',
        )
