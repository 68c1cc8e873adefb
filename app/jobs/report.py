"""The shape of a succeeded job's ``metrics`` (the engine's report: workers/engine/report.py
``run_metrics``, evaluate.py ``model_metrics``), typed for OpenAPI and generated clients.

Open on purpose: every field is optional and unknown keys pass through, so a report from
an older or newer engine release still reads as it was stored. A response holds only
the keys the report has (no nulls are added for the ones it lacks).
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_serializer,
    model_validator,
)

log = logging.getLogger(__name__)


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")

    # No return annotation on purpose: pydantic would take it for the serialized schema
    # (``Any`` makes every report `{}` in OpenAPI); without one it is the model's own.
    @model_serializer(mode="wrap")
    def _as_stored(self, handler: Any):
        out = handler(self)
        if not isinstance(out, dict):
            return out
        return {k: v for k, v in out.items() if v is not None or k in self.model_fields_set}


class _Rates(_Open):
    precision: float | None = None
    recall: float | None = None
    f1: float | None = None


class EntityTypeScores(_Rates):
    support: int | None = Field(None, description="Gold entities of this type.")
    predicted: int | None = Field(None, description="Entities of this type predicted.")


class ClassScores(_Rates):
    support: int | None = Field(None, description="Eval rows of this class.")
    predicted: int | None = Field(None, description="Eval rows given this class.")


class ReportWarning(_Open):
    """Something the numbers alone would let a reader miss (also a `warning` event)."""

    code: str | None = Field(
        None,
        description="`class_never_predicted` (see `classes`, `model`), "
        "`speedup_overshoot` (the student is more than 25% faster than target.speedup) or "
        "`fewer_devices` (the worker had fewer GPUs than training.devices asked for).",
    )
    message: str | None = Field(None, description="What happened, why, and what to change.")
    model: str | None = Field(None, description="class_never_predicted: whose predictions.")
    classes: list[str] | None = Field(
        None, description="class_never_predicted: the classes or entity types, by name."
    )
    target: float | None = Field(None, description="speedup_overshoot: target.speedup.")
    measured: float | None = Field(None, description="speedup_overshoot: the measured one.")


class ModelScores(_Open):
    """One model (teacher or student) measured on the eval split, the same way for both."""

    accuracy: float | None = Field(None, description="Sequence classification, 0-1.")
    macro_f1: float | None = Field(None, description="Sequence classification, 0-1.")
    f1: float | None = Field(None, description="Token classification: entity-level F1 (micro).")
    precision: float | None = Field(None, description="Token classification, entity level.")
    recall: float | None = Field(None, description="Token classification, entity level.")
    token_accuracy: float | None = Field(None, description="Token classification, per word.")
    per_type: dict[str, EntityTypeScores] | None = Field(
        None, description="Token classification: scores per entity type."
    )
    per_class: dict[str, ClassScores] | None = Field(
        None, description="Sequence classification: scores per class, by label name."
    )
    never_predicted: list[str] | None = Field(
        None,
        description="Classes (entity types) the eval split has that this model predicted "
        "for no row (no entity): a rare class lost entirely, which accuracy barely shows.",
    )
    num_parameters: int | None = None
    non_embedding_parameters: int | None = None
    size_bytes: int | None = Field(None, description="Bytes of its safetensors weights.")
    latency_ms_cpu_bs1: float | None = Field(
        None, description="Median CPU forward time at batch 1, ms (latency_threads threads)."
    )
    latency_ms_cpu_bs32: float | None = Field(None, description="The same at batch 32, ms.")
    num_layers: int | None = Field(None, description="Encoder layers.")
    intermediate_size: int | None = Field(None, description="FFN width.")
    flops_per_token: int | None = Field(
        None, description="Dense forward FLOPs per token at latency_seq_len."
    )


class TeacherStudent(_Open):
    teacher: float | None = None
    student: float | None = None


class SpeedupTarget(_Open):
    target: float | None = Field(None, description="target.speedup of the request.")
    measured: float | None = Field(None, description="speedup_cpu_bs1 of this report.")
    met: bool | None = None


class LatencyPoint(_Open):
    runtime: str | None = None
    batch_size: int | None = None
    seq_len: int | None = Field(None, description="Tokens per row (all padded to it).")
    threads: int | None = None
    latency_ms: float | None = Field(None, description="The student's median, ms.")
    teacher_latency_ms: float | None = Field(None, description="The teacher's, same pass.")
    speedup: float | None = None


class SparsityCounts(_Open):
    encoder_parameters: int | None = None
    encoder_nonzero: int | None = None
    sparsity: float | None = Field(None, description="Zeros among the prunable weights, 0-1.")
    groups_2_4: float | None = Field(
        None, description="Fraction of groups of four weights holding at least two zeros."
    )
    gzip_size_bytes: int | None = Field(None, description="The saved weights, gzip -6.")


class SparsityReport(_Open):
    target: float | None = None
    pattern: str | None = Field(None, description="unstructured or 2:4.")
    criterion: str | None = None
    scope: str | None = None
    compression: str | None = Field(None, description="How gzip_size_bytes was measured.")
    teacher: SparsityCounts | None = None
    student: SparsityCounts | None = None


class SweepCandidate(_Open):
    """One student a sweep trained: a child job with target.speedup."""

    index: int | None = Field(None, description="In the order the sweep started them.")
    job_id: str | None = Field(None, description="The child job (GET /v1/jobs/{id}).")
    speedup_target: float | None = Field(None, description="The speed-up it was asked for.")
    speedup: float | None = Field(
        None,
        description="Its speed-up over the teacher in the sweep's runtime and batch size, "
        "from the answer step's pass over every candidate (see SweepReport.timing).",
    )
    own_speedup: float | None = Field(
        None, description="The speed-up its own job measured on its worker, for comparison."
    )
    own_latency_ms: float | None = Field(None, description="Its own job's latency reading.")
    retention: float | None = Field(None, description="Of the teacher's main metric.")
    score: float | None = Field(None, description="Its main metric on the eval split.")
    latency_ms: float | None = Field(None, description="In the sweep's runtime, at its batch size.")
    size_bytes: int | None = None
    ok: bool | None = Field(None, description="False: the child failed or was cancelled.")
    repeat: int | None = Field(
        None,
        description="0: the first training of its speed-up; 1: trained again on the next "
        "student seed, because its retention lay within a point of the floor and the "
        "answer hinged on it (docs/sweeps.md, Repeats near the floor).",
    )
    trainings: list[int] | None = Field(
        None, description="Where its speed-up was trained twice: the candidates that did."
    )
    retentions: list[float] | None = Field(None, description="Their retentions, in order.")
    mean_retention: float | None = Field(
        None, description="Their mean: what the sweep decided on (met, front, pick)."
    )
    met: bool | None = Field(
        None,
        description="Whether it meets the sweep's goal (its trainings' mean retention "
        "where its speed-up was trained twice).",
    )
    pareto: bool | None = Field(
        None, description="On the Pareto front: no other is both faster and more accurate."
    )
    picked: bool | None = Field(None, description="The answer: the job's model artifact.")
    artifacts: list[str] | None = Field(
        None,
        description="Its student among the sweep's own artifacts: the pick's under their "
        "own names (`model`, `report`, ...), another candidate's as "
        "`candidate-<index>-<name>` when export.keep_candidates asked for them; empty "
        "otherwise (its own job's artifacts, which expire sooner).",
    )


class SweepReport(_Open):
    """A sweep's candidates, front and pick (docs/sweeps.md)."""

    goal: dict[str, Any] | None = Field(None, description='{"kind", "value"}.')
    runtime: str | None = None
    batch_size: int | None = None
    axis: dict[str, float] | None = Field(
        None, description='{"lo", "hi"}: the speed-ups the candidates were spread over.'
    )
    parallel: int | None = Field(None, description="Candidates run at once.")
    budget: dict[str, Any] | None = None
    candidates: list[SweepCandidate] | None = None
    front: list[int] | None = Field(None, description="Indices on the Pareto front.")
    pick: int | None = Field(None, description="The index of the picked candidate.")
    met: bool | None = Field(
        None, description="False: no candidate met the goal, the best found is picked."
    )
    message: str | None = Field(None, description="The answer in a sentence, or why not.")
    stopped_by: str | None = Field(
        None, description="Set when the time budget stopped the search early."
    )
    timing: dict[str, Any] | None = Field(
        None,
        description='How the latencies were read: {"retimed": true, "runtime", '
        '"batch_size", "seq_len", "threads", "teacher" ("finetuned" or "architecture"), '
        '"teacher_latency_ms"} when every candidate was timed again with the teacher in '
        'one pass on the answering worker; {"retimed": false, "reason"} when each '
        "candidate's own reading is used.",
    )


class JobMetrics(_Open):
    """What a succeeded job measured: the same numbers as its `report` artifact's
    `metrics` and its model card."""

    teacher: ModelScores | None = None
    student: ModelScores | None = None
    main_metric: str | None = Field(
        None, description="The score retention is on: accuracy, or f1 for token tasks."
    )
    retention: float | None = Field(
        None, description="Student / teacher on main_metric (null when the teacher scored 0)."
    )
    retention_macro_f1: float | None = Field(
        None,
        description="Sequence classification: student / teacher on macro-F1, which falls "
        "where accuracy hides a class the student lost.",
    )
    compression_ratio: float | None = Field(
        None, description="Teacher / student parameters, embeddings included."
    )
    params_ratio_non_embedding: float | None = Field(
        None, description="Student / teacher non-embedding parameters."
    )
    speedup_cpu_bs1: float | None = Field(
        None, description="Teacher / student CPU latency at batch 1."
    )
    speedup_cpu_bs32: float | None = Field(
        None, description="Teacher / student CPU latency at batch 32."
    )
    flops_ratio: float | None = Field(
        None,
        description="Teacher / student FLOPs per token: the most speed-up the removed "
        "structures allow.",
    )
    teacher_finetuned: bool | None = Field(
        None, description="Whether a task head was trained on the teacher first."
    )
    teacher_cached: bool | None = Field(
        None,
        description="Whether the fine-tuned teacher came from the tenant's cache (an "
        "earlier job fine-tuned it; training.teacher_cache) instead of being fine-tuned "
        "by this job.",
    )
    teacher_finetune_s: float | None = Field(
        None,
        description="Seconds the teacher's fine-tuning took: in this job, or, when "
        "teacher_cached, in the job that cached it (what this one saved).",
    )
    layer_map: list[int] | None = Field(
        None, description="layer_map[i]: the teacher layer student layer i was copied from."
    )
    pruning_plan: dict[str, Any] | None = Field(
        None, description="What structured pruning removed, and how it chose."
    )
    latency_threads: int | None = None
    latency_seq_len: int | None = Field(None, description="Tokens per sequence when timed.")
    device: str | None = Field(None, description="cpu or cuda: where the job trained.")
    devices_used: int | None = Field(
        None,
        description="GPUs (processes) the training ran on, data-parallel: training.devices "
        "or every GPU of the worker, no more than it has.",
    )
    latency_ms_gpu_bs1: TeacherStudent | None = Field(None, description="GPU workers only.")
    latency_ms_gpu_bs32: TeacherStudent | None = Field(None, description="GPU workers only.")
    speedup_gpu_bs1: float | None = Field(None, description="GPU workers only.")
    speedup_gpu_bs32: float | None = Field(None, description="GPU workers only.")
    speedup_target: SpeedupTarget | None = Field(
        None, description="With target.speedup: whether this report's timing met it."
    )
    latency_point: LatencyPoint | None = Field(
        None,
        description="A max_latency_ms sweep's candidate: student and teacher timed "
        "together, interleaved, at the sweep's batch size and tokens per row, in its "
        "runtime; the latency the sweep compares with its budget.",
    )
    sparsity: SparsityReport | None = Field(
        None, description="With a sparsity target or pruning.unstructured_sparsity."
    )
    sweep: SweepReport | None = Field(
        None,
        description="A sweep (target.min_retention or max_latency_ms): every candidate, "
        "the front and the pick; the other fields are the picked candidate's report.",
    )
    warnings: list[ReportWarning] | None = Field(
        None,
        description="What the numbers alone would let a reader miss: a class the student "
        "never predicts, a speed-up far above its target. A met target with a warning "
        "here is met, but not as well as it reads.",
    )

    @model_validator(mode="wrap")
    @classmethod
    def _as_stored_if_unfit(cls, data: Any, handler: Any) -> Any:
        # A stored report that does not fit (a release that wrote another type) reads
        # as it was stored, logged, rather than failing the read with a 500.
        try:
            return handler(data)
        except ValidationError as e:
            if not isinstance(data, dict):
                raise
            log.warning("job metrics do not fit JobMetrics; returned as stored: %s", e)
            # Every key as an extra, so nothing is serialized as a type it is not.
            unfit = cls.model_construct(_fields_set=set(data))
            unfit.__pydantic_extra__ = dict(data)
            return unfit
