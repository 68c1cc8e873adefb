"""The engine's interface: a plain spec in, a plain result out, a callback between.

Nothing here imports torch, so the worker can build a spec (and the API can share the
vocabulary) without loading the engine. The full engine (issue 3) replaces what runs
behind ``compress()``, not these types.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from app.jobspec import vocabulary

# Re-exported: the engine's modules and its callers import it from here.
from app.jobspec.errors import EngineInputError as EngineInputError
from app.jobspec.values import DEEP_CUT_BELOW, DEEP_CUT_LEARNING_RATE, STUDENT_LEARNING_RATE

PHASES = ("preparing", "teacher_finetune", "pruning", "distilling", "evaluating", "exporting")


@dataclass(frozen=True)
class TargetSpec:
    """What the user asked for: exactly one of ``params_ratio``, ``sparsity`` or
    ``speedup`` (CPU batch-1 latency, teacher over student, on the machine that runs the
    job, both in ``runtime``: speed_plan.py)."""

    params_ratio: float | None = None
    sparsity: float | None = None
    pattern: str = vocabulary.DEFAULT_PATTERN
    speedup: float | None = None
    # Where a speedup is measured (vocabulary.SPEEDUP_RUNTIMES): the student and the
    # teacher both in PyTorch, both in ONNX Runtime fp32, or both in ORT int8.
    runtime: str = vocabulary.DEFAULT_RUNTIME


@dataclass(frozen=True)
class DistillationSpec:
    temperature: float = 2.0
    alpha: float = 0.5
    hidden_states: bool = True
    attention: bool = False


@dataclass(frozen=True)
class PruningSpec:
    """``structured``: what may be removed to meet ``target.params_ratio``; "layers"
    alone drops whole layers; with "ffn", "hidden" or "heads" the plan narrows those
    widths first and drops layers only when they are at their floors (plan.py).

    ``importance`` ranks what is removed ("taylor", "activation" or "magnitude"; see
    ``workers/engine/importance.py``), scored on ``importance_batches`` batches of
    training data through the fine-tuned teacher. ``unstructured_sparsity`` zeroes that
    fraction of the student's encoder weights while it is distilled, on top of a
    params_ratio target.
    """

    structured: tuple[str, ...] = vocabulary.STRUCTURED_DEFAULT
    unstructured_sparsity: float = 0.0
    importance: str = vocabulary.DEFAULT_IMPORTANCE
    importance_batches: int = 8


@dataclass(frozen=True)
class TrainingSpec:
    epochs: int = 3
    batch_size: int = 32
    # None: chosen by how deep the cut is (student_learning_rate).
    learning_rate: float | None = None
    max_seq_length: int = 128
    seed: int = 0
    # Seeds the student's phases alone (pruning's sample, data order, dropout); None:
    # ``seed``, as before the field. The teacher's fine-tuning, and so its cache key,
    # keeps ``seed``: a sweep trains a candidate again on another student seed with the
    # teacher it already has (app/sweeps/repeats.py).
    student_seed: int | None = None
    teacher_epochs: int = 3
    teacher_learning_rate: float = 5e-5
    # Training steps between checkpoints (each training phase also checkpoints where it
    # ends); 0 turns them off.
    checkpoint_every_steps: int = 200
    # Teacher logits computed once and reused every epoch (vocabulary.CACHE_TEACHER_LOGITS
    # says whether this release can).
    cache_teacher_logits: bool = False
    # Processes that train data-parallel, one per GPU (train.py, data_parallel.py); None:
    # every GPU the worker sees (one process on a CPU). ``batch_size`` stays the global
    # batch of an optimizer step, so the number changes the speed, not what is computed.
    devices: int | None = None
    # Each process's share of a batch taken in this many passes (their gradients add
    # up before the step): less activation memory, the same update.
    gradient_accumulation_steps: int = 1
    # A teacher fine-tuned by an earlier run with the same key (teacher_key.py) may be
    # used instead of fine-tuning it again, and this run's is offered to be kept
    # (``CompressionSpec.teacher_cache_key``); False: fine-tune, and keep nothing.
    teacher_cache: bool = True

    @property
    def student_seed_value(self) -> int:
        return self.seed if self.student_seed is None else self.student_seed


def student_learning_rate(training: TrainingSpec, kept: float) -> float:
    """The distillation learning rate: the one asked for, else by the fraction of the
    teacher's non-embedding parameters the student keeps (``kept``)."""
    if training.learning_rate is not None:
        return training.learning_rate
    return DEEP_CUT_LEARNING_RATE if kept < DEEP_CUT_BELOW else STUDENT_LEARNING_RATE


@dataclass(frozen=True)
class LatencyPoint:
    """Batch size and tokens per row (None: training.max_seq_length) at which a run
    also times its teacher and student in ``target.runtime``, beside the report's own
    batch 1 and 32: where a ``max_latency_ms`` sweep reads its candidates."""

    batch_size: int
    seq_len: int | None = None


@dataclass(frozen=True)
class ExportSpec:
    """The student's output formats (vocabulary.EXPORT_FORMATS), each its own
    artifact, scored and timed in the runtime it runs in (formats.py): "safetensors"
    (a ``save_pretrained`` folder, PyTorch), "onnx" (fp32, ONNX Runtime) and
    "onnx-int8" (dynamically quantized, ONNX Runtime). ``quantization_aware``: the
    share of the last distillation round's steps, at its end, that train through ONNX
    Runtime's int8 rounding (fake_quant.py); 0 for none, and only with "onnx-int8"."""

    formats: tuple[str, ...] = vocabulary.EXPORT_DEFAULT
    quantization_aware: float = 0.0


@dataclass(frozen=True)
class CompressionSpec:
    """Everything one run needs, as local paths and plain values.

    ``train_file`` and ``eval_file`` are JSONL with ``text`` and an integer ``label``
    (index into ``label_names``) per line. ``teacher_dir`` is a ``save_pretrained``
    folder with safetensors weights and a tokenizer.
    """

    task: str
    teacher_dir: Path
    train_file: Path
    eval_file: Path
    label_names: tuple[str, ...]
    output_dir: Path
    work_dir: Path
    target: TargetSpec = field(default_factory=TargetSpec)
    strategy: str = vocabulary.DEFAULT_STRATEGY
    distillation: DistillationSpec = field(default_factory=DistillationSpec)
    pruning: PruningSpec = field(default_factory=PruningSpec)
    training: TrainingSpec = field(default_factory=TrainingSpec)
    export: ExportSpec = field(default_factory=ExportSpec)
    # The report's ``latency_point`` (evaluating.py); None: none.
    latency_point: LatencyPoint | None = None
    # A lock file shared by the jobs of this host: their latency timings wait for each
    # other's training steps to end and hold new ones back (host_lock.py); None: none.
    host_lock: Path | None = None
    device: str = "auto"  # "auto" | "cpu" | "cuda"
    latency_threads: int = 2
    # Seconds spent timing each model at each batch size (evaluate.LATENCY_BUDGET_S):
    # less makes the medians noisier, never fewer than evaluate.LATENCY_MIN_REPS runs.
    latency_budget_s: float = 2.0
    # A checkpoint file an earlier, interrupted run of this same spec wrote; the run
    # continues from it (one that does not match the spec is ignored with a warning).
    resume_from: Path | None = None
    # The key this run's fine-tuned teacher is kept under (teacher_key.teacher_cache_key,
    # derived by the caller, who knows the inputs' digests), and an entry an earlier run
    # with that key kept (teacher_cache.write_entry), if the caller has one: the run then
    # skips fine-tuning. None: nothing is looked up, nothing offered.
    teacher_cache_key: str | None = None
    cached_teacher: Path | None = None
    # A speedup target's shape planned before (SpeedPlan.as_dict), trained as it is
    # rather than timing shapes again: a sweep's repeat of a candidate trains the shape
    # its first training had (app/sweeps/repeats.py), whatever this host's timings say.
    speed_plan: dict[str, Any] | None = None


@dataclass(frozen=True)
class ArtifactFile:
    """A file the engine produced, for the worker to upload.

    ``path`` is a file, or a folder that the worker packs as ``.tar.gz``.
    """

    name: str
    kind: str
    path: Path


@dataclass
class CompressionResult:
    metrics: dict[str, Any]
    artifacts: list[ArtifactFile]


class EngineCallback(Protocol):
    """How the engine reports and is stopped; it never touches a database or queue."""

    def on_phase(self, phase: str) -> None: ...

    def on_progress(self, progress: float) -> None:
        """Overall progress of the run, 0.0 to 1.0, never decreasing."""

    def on_log(self, message: str, *, level: str = "info", data: dict | None = None) -> None: ...

    def should_stop(self) -> bool:
        """Checked at least once per training step; True stops the run with EngineStopped."""

    def on_checkpoint(self, path: Path, info: dict[str, Any]) -> None:
        """A complete checkpoint is at ``path`` (rewritten in place by the next one);
        keep a copy somewhere that outlives this process to resume from it."""

    def on_teacher_finetuned(self, path: Path, info: dict[str, Any]) -> None:
        """Optional. A run with a ``teacher_cache_key`` fine-tuned its teacher: the entry
        at ``path`` (removed when this returns) may be kept for later runs with that key
        (``info``: the key, the seconds fine-tuning took)."""


class NullCallback:
    def on_phase(self, phase: str) -> None:
        pass

    def on_progress(self, progress: float) -> None:
        pass

    def on_log(self, message: str, *, level: str = "info", data: dict | None = None) -> None:
        pass

    def should_stop(self) -> bool:
        return False

    def on_checkpoint(self, path: Path, info: dict[str, Any]) -> None:
        pass


class EngineStopped(Exception):
    """Raised inside the engine when the callback asked it to stop."""


class ExportCheckFailed(EngineInputError):
    """An exported format does not behave as the trained model does (``code``
    ``export_parity_failed``): the job fails rather than ship it, and the message gives
    the numbers and the formats that can be asked for instead."""
