"""The modelpress rows of bench/sst2.py: the engine through its public entry point,
``compress(CompressionSpec, callback)``, on the cached fine-tuned teacher.

A target this engine release does not accept yet (the ``sparsity`` target was being
built when this was written) is asked of ``validate_spec`` at run time, and the row is
reported as skipped with the engine's own reason: never a made-up number.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.jobspec import vocabulary
from bench.common import LABELS, PrintCallback, gpu_part
from workers.engine.compress import compress
from workers.engine.spec import (
    CompressionSpec,
    EngineInputError,
    ExportSpec,
    PruningSpec,
    TargetSpec,
    TrainingSpec,
)
from workers.engine.validate import validate_spec


@dataclass(frozen=True)
class EngineRow:
    method: str
    target: str
    spec_target: TargetSpec
    pruning: PruningSpec
    strategy: str = "prune_then_distill"
    # The job's export.formats: a speedup planned in ONNX Runtime int8 needs its format.
    formats: tuple[str, ...] = ("safetensors",)
    # export.quantization_aware (with "onnx-int8" in formats).
    quantization_aware: float = 0.0


# The params_ratio rows a run may ask for (``--ratio-structures``).
RATIO_STRUCTURES = ("layers", "ffn", "joint")


def _ratio_rows(ratio: float, structures: tuple[str, ...]) -> list[EngineRow]:
    """The params_ratio rows of one ratio, in the order of RATIO_STRUCTURES."""
    made = {
        "layers": EngineRow(
            f"modelpress params_ratio={ratio}",
            f"params_ratio={ratio} (structured: layers)",
            TargetSpec(params_ratio=ratio),
            PruningSpec(structured=("layers",)),
        ),
        "ffn": EngineRow(
            f"modelpress params_ratio={ratio} +ffn",
            f"params_ratio={ratio} (structured: layers, ffn)",
            TargetSpec(params_ratio=ratio),
            PruningSpec(structured=("layers", "ffn")),
        ),
        "joint": EngineRow(
            f"modelpress params_ratio={ratio} +ffn joint",
            f"params_ratio={ratio} (structured: layers, ffn; strategy joint: "
            "the FFN narrowed while distilling)",
            TargetSpec(params_ratio=ratio),
            PruningSpec(structured=("layers", "ffn")),
            strategy="joint",
        ),
    }
    return [made[name] for name in RATIO_STRUCTURES if name in structures]


def rows(
    ratios: tuple[float, ...],
    sparsities: tuple[float, ...],
    speedups: tuple[float, ...] = (),
    int8_speedups: tuple[float, ...] = (),
    *,
    ratio_structures: tuple[str, ...] = RATIO_STRUCTURES,
) -> list[EngineRow]:
    out = []
    for ratio in ratios:
        out += _ratio_rows(ratio, ratio_structures)
    for speedup in speedups:
        out.append(
            EngineRow(
                f"modelpress speedup={speedup} +ffn",
                f"speedup={speedup} (structured: layers, ffn; the shape measured on this "
                "machine to reach it at batch 1)",
                TargetSpec(speedup=speedup),
                PruningSpec(structured=("layers", "ffn")),
            )
        )
    for speedup in int8_speedups:
        out.append(
            EngineRow(
                f"modelpress speedup={speedup} +ffn (onnxruntime-int8 plan)",
                f"speedup={speedup} in onnxruntime-int8 (structured: layers, ffn; the shape "
                "measured on this machine to reach it at batch 1, teacher and student both "
                "in the engine's int8; export onnx-int8)",
                TargetSpec(speedup=speedup, runtime="onnxruntime-int8"),
                PruningSpec(structured=("layers", "ffn")),
                formats=("safetensors", "onnx-int8"),
            )
        )
    for sparsity in sparsities:
        out.append(
            EngineRow(
                f"modelpress sparsity={sparsity}",
                f"sparsity={sparsity} unstructured (Taylor scores, global)",
                TargetSpec(sparsity=sparsity, pattern="unstructured"),
                PruningSpec(),
            )
        )
    return out


def run(
    row: EngineRow,
    *,
    teacher_dir: Path,
    splits: tuple[Path, Path],
    training: TrainingSpec,
    work: Path,
    device: str,
    threads: int,
    latency_budget_s: float = 2.0,
) -> dict[str, Any]:
    """One ``compress()`` run; returns the row's record (``model_dir`` when it ran,
    ``skipped`` with the reason when the engine refused the spec)."""
    slug = row.method.replace(" ", "_").replace("=", "")
    spec = CompressionSpec(
        task="sequence-classification",
        teacher_dir=teacher_dir,
        train_file=splits[0],
        eval_file=splits[1],
        label_names=LABELS,
        output_dir=work / slug / "out",
        work_dir=work / slug / "work",
        target=row.spec_target,
        pruning=row.pruning,
        strategy=row.strategy,
        training=training,
        export=ExportSpec(row.formats, row.quantization_aware),
        device=device,
        latency_threads=threads,
        latency_budget_s=latency_budget_s,
    )
    record: dict[str, Any] = {"method": row.method, "target": row.target}
    try:
        validate_spec(spec)
    except EngineInputError as exc:
        supported = f"vocabulary.TARGETS={list(vocabulary.TARGETS)}"
        record["skipped"] = f"engine refuses this spec ({exc.code}: {exc.message}; {supported})"
        return record
    start = time.perf_counter()
    result = compress(spec, PrintCallback(slug))
    record["wall_s"] = round(time.perf_counter() - start, 1)
    record["model_dir"] = str(spec.output_dir / "model")
    report = json.loads((spec.output_dir / "report.json").read_text(encoding="utf-8"))
    metrics = result.metrics
    record["details"] = {
        "pruning": dataclasses.asdict(row.pruning),
        "strategy": row.strategy,
        "pruning_plan": metrics.get("pruning_plan"),
        "layer_map": metrics.get("layer_map"),
        "params_ratio_non_embedding": metrics.get("params_ratio_non_embedding"),
        # The engine's own evaluation, kept to cross-check the benchmark's final pass.
        "engine_student_accuracy": metrics["student"]["accuracy"],
        "engine_teacher_accuracy": metrics["teacher"]["accuracy"],
        "engine_speedup_cpu_bs1": metrics.get("speedup_cpu_bs1"),
        "engine_latency_ms_cpu_bs1": {
            "teacher": metrics["teacher"].get("latency_ms_cpu_bs1"),
            "student": metrics["student"].get("latency_ms_cpu_bs1"),
        },
        # A GPU run's own GPU timing of both models (report.gpu_metrics); None on a CPU.
        "engine_gpu": gpu_part(metrics),
        # Each exported format scored and timed by the job itself (formats.py).
        "engine_formats": metrics.get("formats"),
        "timings_s": report.get("timings_s"),
    }
    return record
