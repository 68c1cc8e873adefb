"""Each output format the job asked for, built, checked, scored and timed in the runtime
it runs in, beside the teacher in every runtime, all timed in one interleaved pass.

A format's speed-up is given twice: against the teacher in the same runtime (what the
compression gave) and against the teacher in PyTorch fp32 (what compression and runtime
gave together; the reference for the project's bar). The PyTorch student is always timed
too: the report's ``student`` section stays what it was before formats existed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from app.jobspec import vocabulary
from workers.engine import onnx_export as ox
from workers.engine.data import Batch, EncodedSplit, iter_batches, iter_indexed_batches
from workers.engine.evaluate import LATENCY_BUDGET_S, interleaved_latency_ms
from workers.engine.metrics import Quality
from workers.engine.progress import Progress
from workers.engine.spec import CompressionSpec, ExportCheckFailed
from workers.engine.tasks import Task

# Format -> the runtime it runs in, and its artifact's name ("model", "model-onnx",
# "model-onnx-int8").
RUNTIME = vocabulary.FORMAT_RUNTIMES
ARTIFACT = vocabulary.FORMAT_ARTIFACTS
ONNX_FORMATS = vocabulary.ONNX_FORMATS
# Eval rows the parity check runs (in split order, so rows of mixed lengths are padded
# together as a served batch would be).
PARITY_ROWS = 256
# fp32 ONNX computes what PyTorch computes, up to kernel rounding (~1e-5 measured on
# MiniLM); more than this means the graph is wrong, not rounded.
FP32_MAX_LOGIT_DIFF = 1e-3
# int8 moves logits by design; it must still predict what the model predicts nearly
# everywhere (its accuracy, measured separately, is what the report leads with).
INT8_MIN_AGREEMENT = 0.9


@dataclass
class OnnxModels:
    """ONNX files and sessions per role ("teacher", "student") and runtime."""

    files: dict[str, dict[str, Path]] = field(default_factory=dict)
    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    parity: dict[str, dict[str, Any]] = field(default_factory=dict)
    export_s: dict[str, float] = field(default_factory=dict)


def wants_onnx(formats: Sequence[str]) -> bool:
    return any(f in ONNX_FORMATS for f in formats)


def format_folder(spec: CompressionSpec, fmt: str) -> Path:
    return spec.output_dir / ARTIFACT[fmt]


def parity_batches(split: EncodedSplit, batch_size: int, pad_token_id: int) -> list[Batch]:
    rows = min(len(split), PARITY_ROWS)
    batches = []
    for batch in iter_batches(split, batch_size, pad_token_id=pad_token_id):
        batches.append(batch)
        rows -= int(batch["input_ids"].shape[0])
        if rows <= 0:
            break
    return batches


def build_onnx(
    *,
    spec: CompressionSpec,
    teacher: PreTrainedModel,
    student: PreTrainedModel,
    evaluation: EncodedSplit,
    pad_id: int,
    progress: Progress,
) -> OnnxModels:
    """Student and teacher exported to ONNX fp32 and int8; the student's requested
    formats go to their artifact folders and are checked against PyTorch on eval rows
    (a failed check raises ExportCheckFailed), the rest to the work folder."""
    formats = spec.export.formats
    batches = parity_batches(evaluation, spec.training.batch_size, pad_id)
    example = ox.example_batch(
        b for _, b in iter_indexed_batches(evaluation, 8, pad_token_id=pad_id, by_length=True)
    )
    out = OnnxModels()
    for role, model in (("student", student), ("teacher", teacher)):
        files: dict[str, Path] = {}
        for fmt in ONNX_FORMATS:
            if role == "student" and fmt in formats:
                files[RUNTIME[fmt]] = format_folder(spec, fmt) / ox.ONNX_FILE
            else:
                files[RUNTIME[fmt]] = spec.work_dir / "onnx" / role / fmt / ox.ONNX_FILE
        progress.check_stop()
        start = time.perf_counter()
        ox.export_onnx(model, example, files["onnxruntime"])
        exported = time.perf_counter() - start
        progress.check_stop()
        start = time.perf_counter()
        ox.quantize_int8(files["onnxruntime"], files["onnxruntime-int8"])
        quantized = time.perf_counter() - start
        sessions = {
            rt: ox.session(path, threads=spec.latency_threads) for rt, path in files.items()
        }
        out.files[role], out.sessions[role] = files, sessions
        if role == "student":
            fp32, int8 = ONNX_FORMATS
            out.export_s = {fp32: exported, int8: exported + quantized}
            for fmt in ONNX_FORMATS:
                if fmt in formats:
                    found = ox.parity(model, sessions[RUNTIME[fmt]], batches)
                    out.parity[fmt] = check_parity(fmt, found)
        progress.log(
            f"{role} exported to ONNX in {exported:.1f}s, quantized to int8 in {quantized:.1f}s",
            data={"stage": "exporting", "role": role, "onnx_s": exported, "int8_s": quantized},
        )
    return out


def check_parity(fmt: str, found: ox.Parity) -> dict[str, Any]:
    """The parity record for the report, or ExportCheckFailed naming the numbers."""
    if fmt == "onnx":
        ok = found.max_abs_logit_diff <= FP32_MAX_LOGIT_DIFF
        bound = f"max |logit difference| <= {FP32_MAX_LOGIT_DIFF:g}"
    else:
        ok = found.argmax_agreement >= INT8_MIN_AGREEMENT
        bound = f"argmax agreement >= {INT8_MIN_AGREEMENT:.0%}"
    record = {**found.as_dict(), "passed": ok, "bound": bound}
    if not ok:
        raise ExportCheckFailed(
            "export_parity_failed",
            f"The {fmt} export does not reproduce the trained model on {found.rows} eval "
            f"rows: max |logit difference| {found.max_abs_logit_diff:.3g}, argmax agreement "
            f"{found.argmax_agreement:.2%} (needed: {bound}). Nothing was shipped; ask for "
            "the other formats (export.formats) and report this with the job id.",
        )
    return record


def ort_quality(
    sess: Any,
    split: EncodedSplit,
    *,
    task: Task,
    batch_size: int,
    pad_token_id: int,
    label_names: Sequence[str],
    progress: Progress,
) -> Quality:
    """The task's scores on ``split`` with the model run in ONNX Runtime."""
    predictions: list[Any] = [None] * len(split)
    batches = iter_indexed_batches(split, batch_size, pad_token_id=pad_token_id, by_length=True)
    for indices, batch in batches:
        progress.check_stop()
        rows = task.decode(ox.ort_logits(sess, batch).float(), batch)
        for index, row in zip(indices, rows, strict=True):
            predictions[index] = row
    return task.score(predictions, split, label_names)


def measure_onnx(
    *,
    spec: CompressionSpec,
    task: Task,
    teacher: PreTrainedModel,
    student: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    evaluation: EncodedSplit,
    pad_id: int,
    seq_len: int,
    progress: Progress,
) -> tuple[OnnxModels, dict[str, dict[int, float]], dict[str, dict[str, dict[str, Any]]]]:
    """Build the ONNX models, score each on the eval split, and time everything in one
    pass. Returns the models, the PyTorch latencies (role -> batch size -> ms) and, per
    role and ONNX runtime, the scores, file size and latencies."""
    onnx = build_onnx(
        spec=spec,
        teacher=teacher,
        student=student,
        evaluation=evaluation,
        pad_id=pad_id,
        progress=progress,
    )
    parts: dict[str, dict[str, dict[str, Any]]] = {}
    for role, sessions in onnx.sessions.items():
        for runtime, sess in sessions.items():
            scores = ort_quality(
                sess,
                evaluation,
                task=task,
                batch_size=spec.training.batch_size,
                pad_token_id=pad_id,
                label_names=spec.label_names,
                progress=progress,
            )
            size = ox.file_bytes(onnx.files[role][runtime])
            parts.setdefault(role, {})[runtime] = {**scores.as_dict(), "size_bytes": size}
    timing = latency_ms(
        {"teacher": teacher, "student": student},
        onnx,
        tokenizer,
        evaluation.texts,
        seq_len=seq_len,
        threads=spec.latency_threads,
        budget_s=spec.latency_budget_s,
        progress=progress,
    )
    for role, by_runtime in parts.items():
        for runtime, part in by_runtime.items():
            for bs, ms in timing[role][runtime].items():
                part[f"latency_ms_cpu_bs{bs}"] = ms
    pytorch = {role: timing[role]["pytorch"] for role in timing}
    return onnx, pytorch, parts


def latency_ms(
    models: dict[str, PreTrainedModel],
    onnx: OnnxModels,
    tokenizer: PreTrainedTokenizerBase,
    texts: list[str],
    *,
    seq_len: int,
    threads: int,
    budget_s: float = LATENCY_BUDGET_S,
    progress: Progress,
) -> dict[str, dict[str, dict[int, float]]]:
    """role -> runtime -> batch size -> median ms, every model in every runtime timed in
    one interleaved pass with ``threads`` threads (PyTorch's and each ORT session's)."""
    runners: dict[str, Callable[[dict[str, torch.Tensor]], Any]] = {}
    for role, model in models.items():
        model.eval()
        runners[f"{role}|pytorch"] = torch_runner(model)
        for runtime, sess in onnx.sessions.get(role, {}).items():
            runners[f"{role}|{runtime}"] = ort_runner(sess)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            flat = interleaved_latency_ms(
                runners, tokenizer, texts, seq_len=seq_len, progress=progress, budget_s=budget_s
            )
    finally:
        torch.set_num_threads(previous)
    out: dict[str, dict[str, dict[int, float]]] = {}
    for key, values in flat.items():
        role, runtime = key.split("|")
        out.setdefault(role, {})[runtime] = values
    return out


def torch_runner(model: PreTrainedModel) -> Callable[[dict[str, torch.Tensor]], Any]:
    """A PyTorch model as an interleaved_latency_ms runner."""
    return lambda inputs: model(**inputs)


def ort_runner(sess: Any) -> Callable[[dict[str, torch.Tensor]], Any]:
    """An ONNX Runtime session as an interleaved_latency_ms runner."""
    cache: dict[int, dict[str, Any]] = {}

    def run(inputs: dict[str, torch.Tensor]) -> Any:
        # numpy copies made once per input set, as a server holds its tokenizer output.
        key = id(inputs)
        if key not in cache:
            cache.clear()
            cache[key] = ox.feeds(sess, inputs)
        return sess.run(["logits"], cache[key])

    return run


def format_metrics(
    *,
    formats: Sequence[str],
    main_metric: str,
    teacher_pytorch: dict[str, Any],
    student_pytorch: dict[str, Any],
    runtimes: dict[str, dict[str, dict[str, Any]]],
    onnx: OnnxModels | None,
) -> dict[str, Any]:
    """``teacher_runtimes`` (the teacher in each runtime) and ``formats`` (each requested
    student format in its runtime, its speed-ups against the teacher in that runtime and
    in PyTorch, its retention against the PyTorch teacher, and its parity record).

    ``runtimes[role][runtime]`` holds that model's quality keys, ``size_bytes`` and
    ``latency_ms_cpu_bs1``/``bs32``; the PyTorch entries are the report's teacher and
    student sections."""
    runtimes = {
        "teacher": {"pytorch": teacher_pytorch, **runtimes.get("teacher", {})},
        "student": {"pytorch": student_pytorch, **runtimes.get("student", {})},
    }
    reference = runtimes["teacher"]["pytorch"]
    out: dict[str, Any] = {}
    for fmt in formats:
        runtime = RUNTIME[fmt]
        mine, teacher = runtimes["student"][runtime], runtimes["teacher"][runtime]
        row: dict[str, Any] = {"runtime": runtime, "artifact": ARTIFACT[fmt], **_numbers(mine)}
        for bs in (1, 32):
            key = f"latency_ms_cpu_bs{bs}"
            row[f"speedup_cpu_bs{bs}"] = teacher[key] / mine[key]
            row[f"speedup_vs_teacher_pytorch_cpu_bs{bs}"] = reference[key] / mine[key]
        row["retention"] = _ratio(mine[main_metric], reference[main_metric])
        row["retention_vs_teacher_same_runtime"] = _ratio(mine[main_metric], teacher[main_metric])
        if onnx is not None and fmt in onnx.parity:
            row["parity"] = onnx.parity[fmt]
            row["export_s"] = round(onnx.export_s[fmt], 3)
        out[fmt] = row
    teacher_rows = {rt: _numbers(values) for rt, values in runtimes["teacher"].items()}
    return {"formats": out, "teacher_runtimes": teacher_rows}


# What a format row repeats of a model's metrics: its scores, size and latencies (the
# shape is the PyTorch student's, in the report's ``student`` section).
_NOT_PER_FORMAT = (
    "per_type",
    "flops_per_token",
    "num_parameters",
    "non_embedding_parameters",
    "num_layers",
    "intermediate_size",
)


def _numbers(part: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in part.items() if k not in _NOT_PER_FORMAT}


def _ratio(value: float, reference: float) -> float | None:
    return value / reference if reference > 0 else None


def write_side_files(
    folder: Path, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase
) -> None:
    """config.json and the tokenizer beside the .onnx file, so the folder is what
    ``AutoTokenizer.from_pretrained`` and an ORT session need, with the labels."""
    model.config.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
