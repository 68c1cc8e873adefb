"""Students already made, timed again together with their teacher, in one interleaved
pass on one host (a sweep's answer step: workers/sweep.py).

Each candidate of a sweep times itself beside its teacher on the worker that trained
it. When two candidates run at once on one host, each is timed while the other trains,
and the two readings are not comparable; on hosts of different CPUs they are not either.
The answer step reads every student again here, on one worker that trains nothing at
that moment, so that the front and the pick rest on numbers taken under the same
conditions.

The teacher is the fine-tuned one where its cache entry is at hand; otherwise the
uploaded teacher with a fresh head of the same shape (the time of a dense forward pass
does not depend on the values of the weights), and ``Retimed.teacher`` says which.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from app.jobspec import vocabulary
from workers.engine import onnx_export as ox
from workers.engine.data import iter_indexed_batches
from workers.engine.evaluate import threaded_latency_ms
from workers.engine.formats import ort_runner, torch_runner
from workers.engine.phases.preparing import usable_seq_len
from workers.engine.progress import Progress
from workers.engine.spec import CompressionSpec
from workers.engine.tasks import get_task
from workers.engine.teacher import load_teacher, load_tokenizer
from workers.engine.teacher_cache import UnusableEntry, load_weights, read_entry
from workers.engine.validate import read_teacher_config

TEACHER = "teacher"


@dataclass(frozen=True)
class Retimed:
    """Median latency (ms) of each student at the batch size, the teacher's, and each
    student's speed-up over the teacher, all from the same pass."""

    runtime: str
    batch_size: int
    seq_len: int
    threads: int
    teacher: str  # "finetuned" (from the cache entry) or "architecture" (fresh head)
    teacher_ms: float
    latency_ms: dict[str, float]

    @property
    def speedup(self) -> dict[str, float]:
        return {name: self.teacher_ms / ms for name, ms in self.latency_ms.items()}


def retime(
    spec: CompressionSpec,
    students: Mapping[str, Path],
    *,
    runtime: str,
    batch_size: int,
    progress: Progress,
    seq_len: int | None = None,
) -> Retimed:
    """Time the teacher of ``spec`` and each student in ``runtime`` at ``batch_size``
    rows of ``seq_len`` tokens (None: ``training.max_seq_length``), interleaved.

    ``students`` maps a name to the student as its artifact holds it: a
    ``save_pretrained`` folder for PyTorch, a folder holding ``model.onnx`` for an ONNX
    runtime (the teacher is exported and quantized here as the engine does for a job).
    """
    task = get_task(spec.task)
    config = read_teacher_config(spec.teacher_dir)
    seq_len = usable_seq_len(config, seq_len or spec.training.max_seq_length)
    tokenizer = load_tokenizer(spec.teacher_dir, task)
    teacher = load_teacher(spec.teacher_dir, spec.label_names, task).eval()
    which = _load_finetuned(teacher, spec, progress)
    num_labels = len(spec.label_names)
    examples = task.read(spec.eval_file, num_labels=num_labels, split="eval")
    evaluation = task.encode(tokenizer, examples, max_length=seq_len, split="eval")
    fmt = vocabulary.SPEEDUP_RUNTIMES[runtime]
    runners: dict[str, Callable[[dict[str, torch.Tensor]], Any]] = {}
    if fmt is None:
        runners[TEACHER] = torch_runner(teacher)
        for name, folder in students.items():
            model = task.auto_class.from_pretrained(
                folder, use_safetensors=True, trust_remote_code=False, dtype=torch.float32
            ).eval()
            runners[name] = torch_runner(model)
    else:
        example = ox.example_batch(
            b
            for _, b in iter_indexed_batches(
                evaluation, 8, pad_token_id=int(tokenizer.pad_token_id), by_length=True
            )
        )
        fp32 = spec.work_dir / "retime" / "teacher" / ox.ONNX_FILE
        ox.export_onnx(teacher, example, fp32)
        path = fp32
        if runtime == "onnxruntime-int8":
            path = fp32.with_name("model-int8.onnx")
            ox.quantize_int8(fp32, path)
        threads = spec.latency_threads
        runners[TEACHER] = ort_runner(ox.session(path, threads=threads))
        for name, folder in students.items():
            runners[name] = ort_runner(ox.session(folder / ox.ONNX_FILE, threads=threads))
    timing = threaded_latency_ms(
        runners,
        tokenizer,
        evaluation.texts,
        seq_len=seq_len,
        threads=spec.latency_threads,
        progress=progress,
        batch_sizes=(batch_size,),
        budget_s=spec.latency_budget_s,
    )
    return Retimed(
        runtime=runtime,
        batch_size=batch_size,
        seq_len=seq_len,
        threads=spec.latency_threads,
        teacher=which,
        teacher_ms=timing[TEACHER][batch_size],
        latency_ms={name: timing[name][batch_size] for name in students},
    )


def _load_finetuned(teacher: torch.nn.Module, spec: CompressionSpec, progress: Progress) -> str:
    if spec.cached_teacher is None or spec.teacher_cache_key is None:
        return "architecture"
    try:
        load_weights(teacher, read_entry(spec.cached_teacher, key=spec.teacher_cache_key).weights)
    except UnusableEntry as e:
        progress.log(
            f"{e}; timing the teacher's architecture with a fresh head instead",
            level="warning",
            data={"stage": "sweep"},
        )
        return "architecture"
    return "finetuned"
