"""The engine's entry point: ``compress(spec, callback) -> CompressionResult``.

This file only sequences the phases; each is a module of ``workers/engine/phases/``
that takes what the phases before it produced. What a run resumes from is a
``RunState`` (run_state.py), read from the checkpoint the spec names.
"""

from __future__ import annotations

from workers.engine import checkpoint
from workers.engine.checkpoint import Checkpointer
from workers.engine.phases.evaluating import evaluate
from workers.engine.phases.exporting import export
from workers.engine.phases.preparing import prepare
from workers.engine.phases.prune_distill import prune_and_distill
from workers.engine.phases.reporting import report
from workers.engine.phases.teacher_finetune import finetune
from workers.engine.progress import Progress
from workers.engine.report import spec_summary
from workers.engine.spec import CompressionResult, CompressionSpec, EngineCallback, NullCallback
from workers.engine.speed_target import layer_speedups
from workers.engine.validate import read_teacher_config, validate_spec


def compress(spec: CompressionSpec, callback: EngineCallback | None = None) -> CompressionResult:
    progress, checkpointer = _start(spec, callback)
    # A resumed run reports the progress it had before it reports anything else.
    resumed = checkpointer.resume(spec.resume_from)
    run = prepare(spec, progress=progress, checkpointer=checkpointer, resumed=resumed)
    teacher = finetune(run, resumed)
    student = prune_and_distill(run, teacher, resumed)
    evaluation = evaluate(run, teacher, student)
    reload_diff = export(run, student.model)
    return report(run, teacher, student, evaluation, reload_diff=reload_diff)


def prepare_teacher(spec: CompressionSpec, callback: EngineCallback | None = None) -> dict:
    """The first phases alone: the teacher fine-tuned where it needs a head (and offered
    to the callback's teacher cache) or taken from the cache, then scored; and the
    latency fit of the allowed shapes timed in the target's runtime. What a sweep runs
    once before its candidates, so that each of them takes the teacher from the cache,
    and its axis ends where a student can still get. Returns the report's teacher fields
    (``teacher``: its scores, None when it came with a trained head; ``teacher_finetuned``,
    ``teacher_cached``, ``teacher_finetune_s``), ``fastest_speedup``, the fit's
    speed-up of the fastest allowed student, and ``layer_steps``, each layer count's
    fastest (``[layers, speed-up]``, most layers first)."""
    progress, checkpointer = _start(spec, callback)
    run = prepare(spec, progress=progress, checkpointer=checkpointer, resumed=None)
    teacher = finetune(run, None)
    by_layers = layer_speedups(
        spec,
        run.teacher,
        run.tokenizer,
        run.evaluation.texts,
        seq_len=run.max_len,
        progress=run.progress,
    )
    return {
        "teacher": teacher.scores.as_dict() if teacher.scores is not None else None,
        "teacher_finetuned": run.needs_finetune,
        "teacher_cached": teacher.from_cache,
        "teacher_finetune_s": teacher.finetune_s,
        "fastest_speedup": round(max(by_layers.values()), 3),
        "layer_steps": [[k, round(v, 3)] for k, v in sorted(by_layers.items(), reverse=True)],
    }


def _start(spec: CompressionSpec, callback: EngineCallback | None) -> tuple[Progress, Checkpointer]:
    """The spec checked, and the progress and checkpoints of a run of it."""
    progress = Progress(callback or NullCallback(), host_lock=spec.host_lock)
    validate_spec(spec)
    summary = spec_summary(spec, read_teacher_config(spec.teacher_dir))
    checkpointer = Checkpointer(
        folder=spec.work_dir / "checkpoints",
        fingerprint=checkpoint.fingerprint(summary),
        progress=progress,
    )
    return progress, checkpointer
