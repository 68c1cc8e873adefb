"""A ``speedup`` target turned into a student shape: the shapes' batch-1 CPU latency
measured for the planner (speed_plan.py), or the plan a resumed checkpoint carries, so a
resumed run prunes to the shape the interrupted one chose (timings vary; the plan must
not), on whichever worker it resumes.

Each shape is the teacher's config with its sizes changed, built with random weights
(latency does not depend on their values) and timed as the report times models:
interleaved, median of repetitions, ``threads`` threads, inputs padded to ``seq_len``.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from app.jobspec.plan import Shape, TeacherSizes, evenly_spaced_layers
from app.jobspec.speed_plan import (
    Measure,
    SpeedPlan,
    calibration_shapes,
    fit_latency,
    plan_for_speedup,
    predicted_speedups,
)
from workers.engine import onnx_export as ox
from workers.engine.evaluate import LATENCY_BUDGET_S, cpu_latency_ms, interleaved_latency_ms
from workers.engine.formats import ort_runner
from workers.engine.layers import parameter_counts
from workers.engine.progress import Progress
from workers.engine.prune_layers import sizes_from_model
from workers.engine.prune_width import resized_config
from workers.engine.spec import CompressionSpec
from workers.engine.strategies import FixedShape


def shape_model(teacher: PreTrainedModel, sizes: TeacherSizes, shape: Shape) -> PreTrainedModel:
    """A model of the teacher's class at ``shape`` (configured as a pruned student of
    that shape would be), random weights, on CPU."""
    config = resized_config(
        teacher,
        keep=evenly_spaced_layers(sizes.num_layers, shape.num_layers),
        intermediate_size=shape.intermediate_size,
        hidden_size=shape.hidden_size,
        num_heads=shape.num_heads,
        num_kv_heads=shape.num_kv_heads,
    )
    # Random initialisation must not move the run's random stream: a resumed run
    # reuses the saved plan and skips this, and must still draw what the first run drew.
    with torch.random.fork_rng(devices=[]):
        model = type(teacher)._from_config(config, dtype=torch.float32)
    return model.eval()


def shape_timer(
    teacher: PreTrainedModel,
    sizes: TeacherSizes,
    tokenizer: PreTrainedTokenizerBase,
    texts: list[str],
    *,
    seq_len: int,
    threads: int,
    progress: Progress,
    runtime: str = "pytorch",
    work_dir: Path | None = None,
    budget_s: float = LATENCY_BUDGET_S,
) -> Measure:
    """``measure(shapes) -> ms``: batch-1 CPU latency of each shape, timed together, in
    ``runtime``: eager PyTorch, or each shape exported to ONNX (and quantized to int8 for
    "onnxruntime-int8") under ``work_dir`` and run in an ONNX Runtime session, as the
    report times that format (formats.py). An exported shape is kept for the next call
    (the teacher's shape is timed in every one); the caller removes ``work_dir``."""
    exported: dict[Shape, Path] = {}

    def onnx_file(shape: Shape) -> Path:
        if shape not in exported:
            assert work_dir is not None
            path = work_dir / f"shape{len(exported)}" / ox.ONNX_FILE
            rows = [texts[i % len(texts)] for i in range(2)]
            example = tokenizer(
                rows,
                padding="max_length",
                max_length=seq_len,
                truncation=True,
                return_tensors="pt",
            )
            ox.export_onnx(shape_model(teacher, sizes, shape), dict(example), path)
            if runtime == "onnxruntime-int8":
                ox.quantize_int8(path, path.with_name("int8.onnx"))
                path.unlink()
                path = path.with_name("int8.onnx")
            exported[shape] = path
        return exported[shape]

    def measure(shapes: Sequence[Shape]) -> list[float]:
        if runtime == "pytorch":
            models = {f"shape{i}": shape_model(teacher, sizes, s) for i, s in enumerate(shapes)}
            timed = cpu_latency_ms(
                models,
                tokenizer,
                texts,
                seq_len=seq_len,
                threads=threads,
                progress=progress,
                batch_sizes=(1,),
                budget_s=budget_s,
            )
            return [timed[name][1] for name in models]
        sessions = {}
        for i, shape in enumerate(shapes):
            progress.check_stop()
            sessions[f"shape{i}"] = ox.session(onnx_file(shape), threads=threads)
        timed = interleaved_latency_ms(
            {name: ort_runner(sess) for name, sess in sessions.items()},
            tokenizer,
            texts,
            seq_len=seq_len,
            progress=progress,
            batch_sizes=(1,),
            budget_s=budget_s,
        )
        return [timed[name][1] for name in sessions]

    return measure


def spec_timer(
    spec: CompressionSpec,
    teacher: PreTrainedModel,
    sizes: TeacherSizes,
    tokenizer: PreTrainedTokenizerBase,
    texts: list[str],
    *,
    seq_len: int,
    progress: Progress,
    work_dir: Path,
) -> Measure:
    """shape_timer with the spec's threads, runtime and latency budget."""
    return shape_timer(
        teacher,
        sizes,
        tokenizer,
        texts,
        seq_len=seq_len,
        threads=spec.latency_threads,
        progress=progress,
        runtime=spec.target.runtime,
        work_dir=work_dir,
        budget_s=spec.latency_budget_s,
    )


def speed_target(
    spec: CompressionSpec,
    teacher: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: list[str],
    *,
    seq_len: int,
    saved: dict[str, Any] | None,
    progress: Progress,
    saved_from: str = "the checkpoint",
) -> tuple[SpeedPlan, FixedShape]:
    """The student shape for ``spec.target.speedup``: a plan made before (``saved``,
    ``SpeedPlan.as_dict``: a resumed checkpoint's, or the one a sweep's repeat is
    given, ``saved_from`` says which), else one made now on this machine."""
    assert spec.target.speedup is not None
    sizes = sizes_from_model(teacher, parameter_counts(teacher).non_embedding)
    if saved is not None:
        speed = SpeedPlan.from_dict(saved)
    else:
        measure = spec_timer(
            spec,
            teacher,
            sizes,
            tokenizer,
            texts,
            seq_len=seq_len,
            progress=progress,
            work_dir=spec.work_dir / "speed-plan",
        )
        try:
            speed = plan_for_speedup(
                sizes,
                spec.pruning.structured,
                spec.target.speedup,
                measure=measure,
                seq_len=seq_len,
                threads=spec.latency_threads,
            )
        finally:
            shutil.rmtree(spec.work_dir / "speed-plan", ignore_errors=True)
    shape = speed.shape
    teacher_params = sizes.teacher_non_embedding
    full_width = replace(sizes.teacher_shape, num_layers=shape.num_layers)
    fixed = FixedShape(
        shape=shape,
        ratio=sizes.shape_params(shape) / teacher_params,
        depth_ratio=sizes.shape_params(full_width) / teacher_params,
    )
    reused = f" (from {saved_from})" if saved is not None else ""
    where = f" in {spec.target.runtime}" if spec.target.runtime != "pytorch" else ""
    progress.log(
        f"speed plan{reused}{where}: {shape.num_layers} layers, FFN "
        f"{shape.intermediate_size}, hidden "
        f"{shape.hidden_size}: measured {speed.measured_speedup:.2f}x the teacher at batch 1 "
        f"(predicted {speed.predicted_speedup:.2f}x, target {speed.target:g}x), "
        f"{fixed.ratio:.3f} of its non-embedding parameters",
        data={"stage": "pruning", "speed_plan": speed.as_dict(), "params_ratio": fixed.ratio},
    )
    return speed, fixed


def layer_speedups(
    spec: CompressionSpec,
    teacher: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: list[str],
    *,
    seq_len: int,
    progress: Progress,
) -> dict[int, float]:
    """For each layer count allowed, the speed-up its fastest shape would reach, by the
    latency fit of the calibration shapes timed now in ``spec.target.runtime`` (what the
    planner of a speedup target fits first): the largest is the far end of a sweep's
    axis, and each is where a speed-up target drops a layer (app/sweeps/axis.py)."""
    sizes = sizes_from_model(teacher, parameter_counts(teacher).non_embedding)
    structured = spec.pruning.structured
    measure = spec_timer(
        spec,
        teacher,
        sizes,
        tokenizer,
        texts,
        seq_len=seq_len,
        progress=progress,
        work_dir=spec.work_dir / "sweep-axis",
    )
    try:
        calibration = calibration_shapes(sizes, structured)
        fit = fit_latency(sizes, calibration, measure(calibration), seq_len)
    finally:
        shutil.rmtree(spec.work_dir / "sweep-axis", ignore_errors=True)
    fastest: dict[int, float] = {}
    for s, speedup in predicted_speedups(sizes, structured, fit, seq_len).items():
        fastest[s.num_layers] = max(speedup, fastest.get(s.num_layers, 0.0))
    return fastest
