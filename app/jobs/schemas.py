"""Request and response schemas for jobs (separate from the tables)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.jobs.report import JobMetrics
from app.jobspec import values, vocabulary
from app.jobspec.errors import EngineInputError

JobStatus = Literal["queued", "running", "cancelling", "succeeded", "failed", "cancelled"]
# Every enum of a job request is a list of app/jobspec/vocabulary.py, so the schema (and the
# OpenAPI document) name what the engine does and nothing else: a task, a strategy, a
# criterion is added there, and appears here.
Task = Literal[vocabulary.TASKS]  # type: ignore[valid-type]
Strategy = Literal[vocabulary.STRATEGIES]  # type: ignore[valid-type]
Structure = Literal[vocabulary.STRUCTURES]  # type: ignore[valid-type]
Importance = Literal[vocabulary.IMPORTANCE]  # type: ignore[valid-type]
SparsityPattern = Literal[vocabulary.SPARSITY_PATTERNS]  # type: ignore[valid-type]
Runtime = Literal[tuple(vocabulary.SPEEDUP_RUNTIMES)]  # type: ignore[valid-type]
ExportFormat = Literal[vocabulary.EXPORT_FORMATS]  # type: ignore[valid-type]
# The longest max_runtime_s a job may ask for (the broker's visibility timeout is set
# above it: workers/celery_app.py).
MAX_RUNTIME_S = 7 * 24 * 3600
TERMINAL = ("succeeded", "failed", "cancelled")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TeacherRef(Strict):
    model_id: str = Field(description="Id of an uploaded model (`mdl_…`).")


class DatasetRef(Strict):
    dataset_id: str = Field(description="Id of an uploaded dataset (`ds_…`).")
    train_split: str = "train"
    eval_split: str = "validation"
    allow_unseen_labels: bool = Field(
        False,
        description="Accept an eval split with labels the training split lacks (refused "
        "by default with `labels_missing_from_train`: the student could never learn "
        "them, and it is most often a typo in a label).",
    )


class SweepBudget(Strict):
    """What a sweep (target.min_retention or target.max_latency_ms) may spend."""

    candidates: int = Field(
        values.DEFAULT_SWEEP_CANDIDATES,
        ge=int(values.SWEEP_CANDIDATES.low),
        le=int(values.SWEEP_CANDIDATES.high),
        description="Students trained, each a speedup target: the first round spreads "
        "them along the speed axis, later rounds narrow the bracket around the floor "
        "(docs/sweeps.md).",
    )
    max_seconds: int | None = Field(
        None,
        ge=60,
        le=MAX_RUNTIME_S,
        description="Past this many seconds of the sweep's workers' time (GPU or CPU, "
        "all candidates together) no new candidate is started; those running finish, "
        "and the answer is made from what was found. Default (null): no limit but "
        "max_runtime_s.",
    )


class Target(Strict):
    params_ratio: float | None = Field(
        None,
        **values.PARAMS_RATIO.field(),
        description="Fraction of the teacher's non-embedding parameters to keep.",
    )
    sparsity: float | None = Field(
        None, **values.SPARSITY.field(), description="Fraction of weights zeroed."
    )
    pattern: SparsityPattern | None = None  # type: ignore[valid-type]
    speedup: float | None = Field(
        None,
        **values.SPEEDUP.field(),
        description="How many times faster than the teacher the student must be: CPU "
        "latency at batch 1 (training.max_seq_length tokens, latency_threads threads) on "
        "the worker that runs the job. The student is the largest shape measured to reach "
        "it; the report gives the final timing and whether it met the target.",
    )
    min_retention: float | None = Field(
        None,
        **values.MIN_RETENTION.field(),
        description="A sweep: the fastest student that keeps at least this share of the "
        "teacher's main metric on the eval split (0.99: one percent lost at most). "
        "Candidates are speedup targets in `runtime`; the report lists them all with the "
        "Pareto front, and says plainly if none kept that much (docs/sweeps.md).",
    )
    max_latency_ms: float | None = Field(
        None,
        **values.MAX_LATENCY_MS.field(),
        description="A sweep: the most accurate student whose latency at `batch_size` "
        "rows of `seq_len` tokens in `runtime`, on the worker that runs it, is at most "
        "this many milliseconds. Each candidate is timed there with its teacher (its "
        "report's `latency_point`), and all of them again together before the pick.",
    )
    batch_size: int | None = Field(
        None,
        ge=1,
        le=4096,
        description="With max_latency_ms: the batch the latency is measured at (default 1).",
    )
    seq_len: int | None = Field(
        None,
        ge=1,
        le=8192,
        description="With max_latency_ms: the tokens per row the latency is measured at "
        "(default: training.max_seq_length).",
    )
    budget: SweepBudget | None = Field(
        None, description="With min_retention or max_latency_ms: what the sweep may spend."
    )
    runtime: Runtime | None = Field(  # type: ignore[valid-type]
        None,
        description="Where a speedup target (or a sweep's candidates) is measured, the "
        "teacher and the student both run there: `pytorch` (eager, fp32; the default), "
        "`onnxruntime` (ONNX fp32) or `onnxruntime-int8` (ONNX dynamically quantized). The "
        "planner times candidate shapes in that runtime, and the student's format for it "
        "(`onnx`, `onnx-int8`) must be in export.formats.",
    )

    @model_validator(mode="after")
    def _one_kind(self) -> Target:
        # The engine's own rules (app/jobspec/values.py), answered as validation_error.
        try:
            kind = values.check_target(self)
        except EngineInputError as e:
            raise ValueError(e.message) from None
        if kind == "sparsity" and self.pattern is None:
            self.pattern = vocabulary.DEFAULT_PATTERN
        if kind in vocabulary.RUNTIME_TARGET_KINDS and self.runtime is None:
            self.runtime = vocabulary.DEFAULT_RUNTIME
        if kind == "max_latency_ms" and self.batch_size is None:
            self.batch_size = 1
        # seq_len stays None: training.max_seq_length, which the target does not see.
        if kind in vocabulary.SWEEP_TARGET_KINDS and self.budget is None:
            self.budget = SweepBudget()
        return self


class Distillation(Strict):
    """How the student learns from the teacher: loss = alpha · cross-entropy on the
    labels + (1 - alpha) · T² · KL(teacher/T ‖ student/T), plus the representation
    losses turned on below."""

    temperature: float = Field(
        2.0,
        gt=0.0,
        le=100.0,
        description="T, softening both models' logits in the KL term: higher passes on "
        "more of how the teacher ranks the wrong labels.",
    )
    alpha: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="Weight of the label loss; 1 - alpha weighs the teacher's logits.",
    )
    hidden_states: bool = Field(
        True,
        description="Also match the student's hidden states to the teacher's layers they "
        "were copied from (MSE over real tokens, weight 1).",
    )
    attention: bool = Field(
        False,
        description="Also match attention maps (KL, weight 1); refused with "
        "not_supported_yet where the engine does not do it.",
    )


class Pruning(Strict):
    structured: list[Structure] = Field(  # type: ignore[valid-type]
        default_factory=lambda: list(vocabulary.STRUCTURED_DEFAULT),
        description="What structured pruning may remove to meet the target: `layers` "
        "(whole layers; always), `ffn` (FFN neurons), `hidden` (hidden channels with whole "
        'heads) and `heads` (Llama-family attention heads). Default `["layers", "ffn"]`: '
        "at the same size it kept more of the teacher than layers alone, and it gives a "
        "speedup target steps between whole layers (docs/engine.md, Defaults). With "
        "layers alone a speedup target can only land on a whole number of layers; when "
        "that is far above the target the job is still created, with a warning.",
    )
    unstructured_sparsity: float = Field(0.0, **values.UNSTRUCTURED_SPARSITY.field())
    importance: Importance = Field(  # type: ignore[valid-type]
        vocabulary.DEFAULT_IMPORTANCE,
        description="How neurons are ranked before pruning: first-order Taylor scores or "
        "activations measured on training data through the teacher, or weight magnitude. "
        "For sparsity (single weights zeroed) while the student distils: taylor ranks "
        "|w * gradient| with momentum over all matrices; activation |w| times the size "
        "of the input it multiplies (Wanda), and magnitude |w|, within each matrix.",
    )


class Export(Strict):
    formats: list[ExportFormat] = Field(  # type: ignore[valid-type]
        default_factory=lambda: list(vocabulary.EXPORT_DEFAULT),
        min_length=1,
        description="The student's output formats, each its own artifact (a .tar.gz "
        "folder with config.json and the tokenizer): `safetensors` is the "
        "`save_pretrained` folder (artifact `model`, PyTorch); `onnx` is model.onnx, fp32 "
        "(artifact `model-onnx`, ONNX Runtime); `onnx-int8` is model.onnx dynamically "
        "quantized to int8 (artifact `model-onnx-int8`, ONNX Runtime). Each ONNX export is "
        "checked against PyTorch on eval rows (the job fails with "
        "`export_parity_failed` otherwise), and every format is scored and timed in its "
        "own runtime beside the teacher in PyTorch, ONNX Runtime and int8 (the report's "
        '`formats` and `teacher_runtimes`). Default `["safetensors"]`: the ONNX '
        "formats add the teacher's and the student's export, quantization and timing to "
        "the job; ask for `onnx-int8` to serve on CPU.",
    )
    keep_candidates: bool = Field(
        False,
        description="With a sweep (target.min_retention or target.max_latency_ms): every "
        "candidate that succeeded besides the pick becomes the sweep's own artifacts too "
        "(`candidate-<index>-model`, `candidate-<index>-report`, one per format), kept as "
        "long as the sweep is. By default the candidates' students stay their own jobs' "
        "artifacts, which expire MODELPRESS_SWEEP_CANDIDATE_RETENTION_HOURS after they "
        "end (docs/sweeps.md).",
    )

    quantization_aware: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="With `onnx-int8` in formats: the share of the last distillation "
        "round's steps, at its end, in which the student trains through the int8 rounding "
        "ONNX Runtime will apply to it (weights int8 per output channel, each layer's "
        "input uint8 per tensor, embedding tables uint8; gradients passed straight "
        "through), so that the int8 export is the network it learnt to be (every int8 "
        "export has 7-bit weights, which every x86 CPU multiplies exactly). 0: none "
        "(measured on SST-2 it moved int8 accuracy by 1-2 dev sentences). The report's "
        "`pruning_plan.quantization_aware` says from which step.",
    )

    @model_validator(mode="after")
    def _once_each(self) -> Export:
        try:
            values.check_formats(self.formats)
            values.check_quantization_aware(self.quantization_aware, self.formats)
        except EngineInputError as e:
            raise ValueError(e.message) from None
        return self


class Training(Strict):
    epochs: int = Field(3, ge=1, le=100)
    batch_size: int = Field(32, ge=1, le=4096)
    learning_rate: float | None = Field(
        None,
        gt=0.0,
        le=1.0,
        description="The student's learning rate while it distils. Default (null): "
        f"{values.DEEP_CUT_LEARNING_RATE:g} for a student that keeps less than "
        f"{values.DEEP_CUT_BELOW:g} of the teacher's non-embedding parameters, "
        f"{values.STUDENT_LEARNING_RATE:g} otherwise (docs/engine.md, Defaults); the "
        "`distilling` log event says which was used.",
    )
    max_seq_length: int = Field(128, ge=8, le=8192)
    seed: int = Field(0, ge=0)
    student_seed: int | None = Field(
        None,
        ge=0,
        description="Seed of the student's training alone (pruning's sample of batches, "
        "data order, dropout); null: `seed`. The teacher's fine-tuning keeps `seed`, so a "
        "student trained again on another seed reuses the cached teacher.",
    )
    teacher_epochs: int = Field(
        3,
        ge=0,
        le=100,
        description="Epochs to train the teacher's head first, when it has none for this "
        "task and the dataset's labels (no head, another label count or another kind of "
        "head). 0: never; such a teacher is then refused when the job is created.",
    )
    teacher_learning_rate: float = Field(
        5e-5, gt=0.0, le=1.0, description="Learning rate of that teacher fine-tuning."
    )
    checkpoint_every_steps: int = Field(
        200, ge=1, le=1_000_000, description="Training steps between resumable checkpoints."
    )
    cache_teacher_logits: bool = Field(
        False,
        description="Compute the teacher's logits once and reuse them every epoch instead "
        "of running the teacher at every step.",
    )
    teacher_cache: bool = Field(
        True,
        description="Where the teacher needs fine-tuning first: take the teacher an "
        "earlier job of this tenant fine-tuned from the same teacher, training split and "
        "fine-tuning settings (task, labels, max_seq_length, teacher_epochs, "
        "teacher_learning_rate, batch_size, seed, queue), and keep this job's for later "
        "ones. Counted in the tenant's stored bytes; deleted with the model or dataset. "
        "false: fine-tune again and keep nothing.",
    )
    devices: int | None = Field(
        None,
        ge=1,
        le=64,
        description="GPUs the job trains on, data-parallel (one process each). Default "
        "(null): every GPU the worker has; one process on a CPU worker. `batch_size` stays "
        "the batch of one optimizer step whatever the number, so it changes the speed, not "
        "the result. A worker with fewer GPUs than asked trains on those it has and says "
        "so in the report's `warnings` (`devices_used` is the number it used).",
    )
    gradient_accumulation_steps: int = Field(
        1,
        ge=1,
        le=1024,
        description="Passes in which each device takes its share of a batch, their "
        "gradients added before the step: less memory for the same update. "
        "`devices` x `gradient_accumulation_steps` may not exceed `batch_size`.",
    )

    @model_validator(mode="after")
    def _shares_of_a_batch(self) -> Training:
        try:
            values.check_parallelism(
                batch_size=self.batch_size,
                devices=self.devices,
                accumulation=self.gradient_accumulation_steps,
            )
        except EngineInputError as e:
            raise ValueError(e.message) from None
        return self


EXAMPLE_JOB = {
    "task": vocabulary.SEQUENCE_CLASSIFICATION,
    "teacher": {"model_id": "mdl_01jd8x6m5v2n3k4p5q6r7s8t9v"},
    "dataset": {"dataset_id": "ds_01jd8x6m5v2n3k4p5q6r7s8t9v"},
    "target": {"params_ratio": 0.5},
    "training": {"epochs": 3, "batch_size": 32},
    "name": "sst2-half",
    "metadata": {"team": "search"},
}


# A student to serve on CPU: int8 ONNX beside the PyTorch folder.
EXAMPLE_ONNX_JOB = {
    **EXAMPLE_JOB,
    "export": {"formats": [*vocabulary.EXPORT_DEFAULT, "onnx-int8"]},
    "name": "sst2-half-int8",
}


# Twice as fast at batch 1 on CPU: the widest student measured to get there.
EXAMPLE_SPEEDUP_JOB = {
    **EXAMPLE_JOB,
    "target": {"speedup": 2.0},
    "name": "sst2-2x",
}


class JobCreate(Strict):
    """A compression job. Checked when it is created, before anything is queued; each
    failure is a 422 whose `param` names the field to change:

    - `task` must agree with the dataset's `task_hint` (`task_dataset_mismatch`).
    - `dataset.train_split` and `dataset.eval_split` must be splits of the dataset
      (`split_not_found`, naming the splits it has).
    - The teacher's head is used as it is only when it was made for this task and the
      dataset's label count (see the model's `head_task` and `num_labels`). Otherwise (no
      head, another label count, another kind of head) a new head is trained on the
      dataset for `training.teacher_epochs` epochs before distilling; with
      `teacher_epochs` 0 such a teacher is refused (`teacher_head_mismatch`).
    - `target.params_ratio` must be reachable for the teacher's architecture
      (`target_unreachable`, saying the least ratio there is); so must `target.speedup`,
      as far as FLOPs can tell (`target_unreachable`, saying the most there is; the
      worker then measures what its hardware gives, and fails the job with the same
      code if no allowed shape is fast enough).
    - A value that this engine release cannot do yet (a strategy, target kind, sparsity
      pattern, pruning kind, the attention loss, cached teacher logits, an ONNX format for
      a model family it does not export or a teacher too large for one .onnx file) is
      refused with `not_supported_yet`, saying what is supported.
    - A `max_latency_ms` sweep's `target.seq_len` may not exceed the teacher's
      `max_position_embeddings` (`validation_error`).
    - A `target.speedup` (or a sweep) measured in an ONNX runtime (`target.runtime`)
      needs that runtime's format in `export.formats` (`speedup_runtime_not_exported`).

    Teachers always have a tokenizer: an archive without one is refused at upload.
    """

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [EXAMPLE_JOB]})

    task: Task
    teacher: TeacherRef
    dataset: DatasetRef
    target: Target
    strategy: Strategy = vocabulary.DEFAULT_STRATEGY  # type: ignore[valid-type]
    distillation: Distillation = Distillation()
    pruning: Pruning = Pruning()
    training: Training = Training()
    export: Export = Export()
    accelerator: Literal["auto", "gpu", "cpu"] = Field(
        "auto", description="auto: the gpu queue when a GPU worker is configured, else cpu."
    )
    max_runtime_s: int | None = Field(
        None,
        ge=60,
        le=MAX_RUNTIME_S,
        description="Past this many seconds of running the job fails with "
        "max_runtime_exceeded; default MODELPRESS_JOB_MAX_RUNTIME_SECONDS.",
    )
    name: str | None = Field(None, max_length=200)
    metadata: dict[str, str] = Field(default_factory=dict, max_length=50)


class JobError(BaseModel):
    code: str
    message: str


class JobWarning(BaseModel):
    code: str | None = Field(
        description="Stable and machine-readable: `speedup_overshoot` (the allowed "
        "structures land far above target.speedup), `speedup_may_be_unreachable` (no "
        "allowed shape is estimated to reach it); null for a warning without one."
    )
    param: str | None = Field(None, description="The request field it is about.")
    message: str = Field(description="What will happen, and what to change to avoid it.")


EXAMPLE_JOB_READ = {
    "id": "job_01jd8x6m5v2n3k4p5q6r7s8t9v",
    "object": "job",
    "name": "sst2-half",
    "status": "running",
    "phase": "distilling",
    "progress": 0.42,
    "attempt": 1,
    "queue": "cpu",
    "created_at": "2026-11-27T21:40:53Z",
    "started_at": "2026-11-27T21:40:54Z",
    "finished_at": None,
    "request": {**EXAMPLE_JOB, "strategy": vocabulary.DEFAULT_STRATEGY},
    "metrics": None,
    "error": None,
    "artifacts_expired_at": None,
}


class JobRead(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [EXAMPLE_JOB_READ]})

    id: str
    object: Literal["job"] = "job"
    name: str | None
    status: JobStatus
    phase: str | None = Field(
        description="What a running job is doing: preparing, teacher_finetune, pruning, "
        "distilling, evaluating or exporting; null while queued and once it has ended."
    )
    progress: float = Field(description="0 to 1, rounded to 4 places; 1 once succeeded.")
    attempt: int
    queue: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    request: dict[str, Any] = Field(description="The request with every default filled in.")
    metrics: JobMetrics | None = Field(
        description="A succeeded job's report (teacher and student scores, sizes and "
        "latencies, retention, compression and speed-ups); null until then. Keys a "
        "future engine adds appear as they are."
    )
    error: JobError | None
    artifacts_expired_at: datetime | None = Field(
        None,
        description="When the artifacts were deleted by the operator's retention "
        "(MODELPRESS_ARTIFACT_RETENTION_DAYS); null while they are kept.",
    )
    parent_id: str | None = Field(
        None,
        description="For a sweep's candidate: the sweep (a job with a min_retention or "
        "max_latency_ms target) that started it; its candidates are listed with "
        "GET /v1/jobs?parent_id=. Null for a job submitted by a client.",
    )

    @classmethod
    def of(cls, job: Any) -> JobRead:
        """From a job row (the API's reads and the webhooks' payloads alike)."""
        return cls(
            id=job.id,
            name=job.name,
            status=job.status,
            phase=job.phase,
            progress=job.progress,
            attempt=job.attempt,
            queue=job.queue,
            created_at=job.created_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
            request=job.request,
            metrics=job.metrics,
            error=JobError(code=job.error_code, message=job.error_message or "")
            if job.error_code
            else None,
            artifacts_expired_at=job.artifacts_expired_at,
            parent_id=job.parent_id,
        )


class JobCreated(JobRead):
    """The job as created, and what the API noticed that the request allows but the
    user may not expect (each also a `warning` event of the job, attempt 0)."""

    warnings: list[JobWarning] = Field(
        default_factory=list,
        description="Said when the job was created: the job runs as asked, but e.g. a "
        "speed target that the allowed structures can only overshoot is named here with "
        "the steps they can reach. Empty when there is nothing to say.",
    )


class ArtifactRead(BaseModel):
    name: str
    kind: str
    filename: str
    content_type: str
    size_bytes: int
    sha256: str
    download_url: str
    created_at: datetime


class ArtifactList(BaseModel):
    data: list[ArtifactRead]


class EventRead(BaseModel):
    """One thing that happened to a job, in the order it happened."""

    id: int = Field(
        description="Increasing within the job: the `after` cursor, and the stream's "
        "`Last-Event-ID`."
    )
    type: str = Field(
        description="status, phase, progress, checkpoint, log, warning or lifecycle; "
        "`data` depends on it."
    )
    attempt: int = Field(
        description="The attempt (worker claim) that wrote it; 0 before the first claim."
    )
    data: dict[str, Any] = Field(
        description='status: {"status", "reason"?, "worker"?, "error"?}; phase: {"phase"}; '
        'progress: {"progress"}; checkpoint: {"stage", "step"?, "progress", ...}; '
        'log and warning: {"level", "message", "data"?}; lifecycle: {"message", ...}.'
    )
    created_at: datetime


class EventList(BaseModel):
    data: list[EventRead]
    has_more: bool
    next_cursor: str | None
