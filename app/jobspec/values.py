"""The values a request's target and export may hold, each rule written once.

The API's schema (``app/jobs/schemas.py``) takes its bounds from here and runs these
checks in its validators, so a bad value is a 422 ``validation_error`` naming the field;
the engine runs the same checks on a spec (``workers/engine/validate.py``) and fails
with their codes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

from app.jobspec import vocabulary
from app.jobspec.errors import EngineInputError


@dataclass(frozen=True)
class Bounds:
    """An interval of allowed values, open at each end unless said closed."""

    low: float
    high: float
    low_closed: bool = False
    high_closed: bool = False

    def __contains__(self, value: object) -> bool:
        if not isinstance(value, int | float) or not math.isfinite(value):
            return False
        above = value >= self.low if self.low_closed else value > self.low
        below = value <= self.high if self.high_closed else value < self.high
        return above and below

    def field(self) -> dict[str, float]:
        """As pydantic ``Field`` keyword arguments (the OpenAPI schema shows them)."""
        low = "ge" if self.low_closed else "gt"
        high = "le" if self.high_closed else "lt"
        return {low: self.low, high: self.high}

    def __str__(self) -> str:
        left, right = "[" if self.low_closed else "(", "]" if self.high_closed else ")"
        return f"{left}{self.low:g}, {self.high:g}{right}"


# target.params_ratio: the fraction of the teacher's non-embedding parameters kept. 1 is
# refused: a student as large as its teacher is no compression (a sparsity target, which
# keeps every parameter, is the way to zero weights alone).
PARAMS_RATIO = Bounds(0.0, 1.0)
# target.sparsity: the fraction of the encoder's weights set to zero.
SPARSITY = Bounds(0.0, 1.0)
# target.speedup: teacher latency over student latency; 100x is beyond any shape a
# teacher's layers allow.
SPEEDUP = Bounds(1.0, 100.0, high_closed=True)
# target.min_retention: the least share of the teacher's main metric on the eval split
# the student must keep; 1 asks for a student that loses nothing.
MIN_RETENTION = Bounds(0.0, 1.0, high_closed=True)
# target.max_latency_ms: the most one batch may take; ten minutes is beyond serving.
MAX_LATENCY_MS = Bounds(0.0, 600_000.0, high_closed=True)
# target.budget.candidates: students a sweep trains, first round included. Two at least
# to have a front; 16 at most: past that the bracket is far narrower than the noise of
# one retention figure (a few tenths of a point between seeds on SST-2).
SWEEP_CANDIDATES = Bounds(2, 16, low_closed=True, high_closed=True)
DEFAULT_SWEEP_CANDIDATES = 6
# pruning.unstructured_sparsity: weights zeroed on top of a structured target.
UNSTRUCTURED_SPARSITY = Bounds(0.0, 1.0, low_closed=True)
# The 2:4 pattern zeroes 2 weights in every 4.
TWO_FOUR = "2:4"
TWO_FOUR_SPARSITY = 0.5


# The student's learning rate when ``training.learning_rate`` is None: the deeper cut
# gets the higher rate. On SST-2 (MiniLM-L6, 5,000 rows, 3 epochs: 470 steps) 1e-4 kept
# more than 5e-5 for the layers-and-FFN students that keep a quarter to two fifths of
# the teacher's non-embedding parameters (2 x 888 +0.7 points on average over three
# seeds, the 2x student 3 x ~1000 +0.5 over three, the 3x student 2 x 904-960 +0.8;
# 2 x 1536 -0.1) and not for those that keep half (3 x 1536 -0.9; 5 x 600 +0.5 on that
# run, -0.7 on the quick one). docs/engine.md, Defaults, names the result files.
STUDENT_LEARNING_RATE = 5e-5
DEEP_CUT_LEARNING_RATE = 1e-4
# Below this fraction of the teacher's non-embedding parameters a cut is deep.
DEEP_CUT_BELOW = 0.45


class Target(Protocol):
    """A target as the API's schema and the engine's ``TargetSpec`` both hold it;
    ``pattern`` and ``runtime`` are None (or their defaults) when not given. The sweep
    kinds and their fields (``min_retention``, ``max_latency_ms``, ``batch_size``,
    ``seq_len``, ``budget``) are the schema's alone: the engine runs one speedup
    candidate of a sweep at a time, so its ``TargetSpec`` has none of them and they are
    read here as absent."""

    params_ratio: float | None
    sparsity: float | None
    pattern: str | None
    speedup: float | None
    runtime: str | None


def _given(target: Target, name: str) -> object:
    return getattr(target, name, None)


def target_kind(target: Target) -> str:
    """The one kind of target given (``vocabulary.TARGET_KINDS``, those ``target`` has
    fields for)."""
    kinds = [k for k in vocabulary.TARGET_KINDS if hasattr(target, k)]
    given = [k for k in kinds if getattr(target, k) is not None]
    if len(given) != 1:
        raise EngineInputError(
            "missing_target",
            f"give exactly one of {', '.join(kinds[:-1])} or {kinds[-1]}",
            param="target",
        )
    return given[0]


def check_target(target: Target) -> str:
    """The target's kind, once its value is in range and its pattern and runtime go
    with it."""
    kind = target_kind(target)
    _within(
        "params_ratio",
        target.params_ratio,
        PARAMS_RATIO,
        "the fraction of the teacher's non-embedding parameters to keep",
    )
    _within("sparsity", target.sparsity, SPARSITY, "the fraction of encoder weights set to zero")
    _within(
        "speedup",
        target.speedup,
        SPEEDUP,
        "how many times faster than the teacher the student must be at batch 1 on CPU",
    )
    _within(
        "min_retention",
        _given(target, "min_retention"),
        MIN_RETENTION,
        "the least share of the teacher's score on the eval split the student keeps",
    )
    _within(
        "max_latency_ms",
        _given(target, "max_latency_ms"),
        MAX_LATENCY_MS,
        "the most milliseconds one batch may take in target.runtime",
    )
    if target.sparsity is None and target.pattern not in (None, vocabulary.DEFAULT_PATTERN):
        raise EngineInputError(
            "bad_target", "pattern applies only to a sparsity target", param="target.pattern"
        )
    if target.pattern == TWO_FOUR and target.sparsity != TWO_FOUR_SPARSITY:
        raise EngineInputError(
            "bad_sparsity",
            f"the {TWO_FOUR} pattern zeroes 2 weights in every 4: its sparsity is "
            f"{TWO_FOUR_SPARSITY}; got {target.sparsity}",
            param="target.sparsity",
        )
    runtime_kinds = vocabulary.RUNTIME_TARGET_KINDS
    if kind not in runtime_kinds and target.runtime not in (None, vocabulary.DEFAULT_RUNTIME):
        raise EngineInputError(
            "bad_target",
            f"runtime applies only to a {_either(runtime_kinds)} target",
            param="target.runtime",
        )
    # What a latency is measured on, and a sweep's budget, belong to those kinds alone.
    for name, kinds in (
        ("batch_size", ("max_latency_ms",)),
        ("seq_len", ("max_latency_ms",)),
        ("budget", vocabulary.SWEEP_TARGET_KINDS),
    ):
        if kind not in kinds and _given(target, name) is not None:
            raise EngineInputError(
                "bad_target",
                f"{name} applies only to a {_either(kinds)} target",
                param=f"target.{name}",
            )
    return kind


def _either(kinds: tuple[str, ...]) -> str:
    return kinds[0] if len(kinds) == 1 else f"{', '.join(kinds[:-1])} or {kinds[-1]}"


def _within(kind: str, value: float | None, bounds: Bounds, meaning: str) -> None:
    if value is not None and value not in bounds:
        raise EngineInputError(
            f"bad_{kind}",
            f"target.{kind} is {meaning}, in {bounds}; got {value}",
            param=f"target.{kind}",
        )


def check_formats(formats: tuple[str, ...] | list[str]) -> None:
    """export.formats: one at least, each known and listed once."""
    if not formats:
        raise EngineInputError(
            "bad_export", "export.formats needs one format at least", param="export.formats"
        )
    unknown = [f for f in formats if f not in vocabulary.EXPORT_FORMATS]
    if unknown:
        raise EngineInputError(
            "unsupported_export_format",
            f"export.formats may hold {list(vocabulary.EXPORT_FORMATS)}; got {unknown}",
            param="export.formats",
        )
    twice = sorted({f for f in formats if formats.count(f) > 1})
    if twice:
        raise EngineInputError(
            "bad_export",
            f"list each format once ({', '.join(twice)} is repeated)",
            param="export.formats",
        )


def check_quantization_aware(fraction: float, formats: tuple[str, ...] | list[str]) -> None:
    """export.quantization_aware: a share of the last round's steps, and an int8 export
    for it to serve (the fp32 formats gain nothing from it)."""
    if not 0.0 <= fraction <= 1.0:
        raise EngineInputError(
            "bad_export",
            "export.quantization_aware is the share of the last distillation round's steps "
            f"trained through int8 rounding, from 0 (none) to 1; got {fraction}",
            param="export.quantization_aware",
        )
    if fraction > 0 and "onnx-int8" not in formats:
        raise EngineInputError(
            "quantization_aware_without_int8",
            "export.quantization_aware trains the student for the onnx-int8 export; add "
            f'"onnx-int8" to export.formats (got {list(formats)}) or set it to 0.',
            param="export.quantization_aware",
        )


def check_parallelism(*, batch_size: int, devices: int | None, accumulation: int) -> None:
    """training.devices and training.gradient_accumulation_steps: a batch is shared
    between the devices and each share taken in that many passes, each of one example at
    least. How many GPUs a worker has is not known here: the worker uses fewer when it
    has fewer, and its report says so."""
    if devices is not None and devices < 1:
        raise EngineInputError(
            "bad_training", "training.devices must be 1 or more, or null", param="training.devices"
        )
    if accumulation < 1:
        raise EngineInputError(
            "bad_training",
            "training.gradient_accumulation_steps must be 1 or more",
            param="training.gradient_accumulation_steps",
        )
    processes = devices or 1
    if processes * accumulation > batch_size:
        raise EngineInputError(
            "bad_training",
            f"a batch of {batch_size} cannot be shared by {processes} device(s) in "
            f"{accumulation} pass(es) of one example at least: lower training.devices or "
            "training.gradient_accumulation_steps, or raise training.batch_size",
            param="training.devices" if devices else "training.gradient_accumulation_steps",
        )
