"""Quality, size, FLOPs and CPU latency of teacher and student, measured the same way."""

from __future__ import annotations

import contextlib
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from workers.engine.data import EncodedSplit, iter_indexed_batches, model_inputs, to_device
from workers.engine.flops import flops_per_token
from workers.engine.layers import encoder_layers, ffn, parameter_counts
from workers.engine.metrics import Quality, accuracy, macro_f1
from workers.engine.progress import Progress
from workers.engine.runtime import Runtime
from workers.engine.tasks import SEQUENCE_CLASSIFICATION, Task, get_task

# accuracy and macro_f1 lived here before metrics.py; re-exported for older callers.
__all__ = [
    "Quality",
    "accuracy",
    "cpu_latency_ms",
    "flops_per_token",
    "flops_ratio",
    "interleaved_latency_ms",
    "macro_f1",
    "model_metrics",
    "predict",
    "quality",
    "saved_size_bytes",
]

LATENCY_BATCH_SIZES = (1, 32)
LATENCY_WARMUP = 3
LATENCY_MIN_REPS = 5
LATENCY_MAX_REPS = 100
# Each runner's turn in the interleave: untimed calls, then this many timed ones. The
# first calls after another model's pay for what that model left behind, and how much
# depends on which model it was: with one timed call a turn, an int8 file read 24%
# slower right after a PyTorch model than a second session on it right after an ONNX
# Runtime one, in the same pass; with turns, the same to 0.1%
# (bench/results/interleave-order-2026-12-07.md). A served model answers its requests
# back to back; so is each timed call here.
LATENCY_TURN_CALLS = 5
# With more than one PyTorch thread, a turn's untimed calls go on this long: PyTorch's
# OpenMP threads spin-wait on the cores for a while after a forward pass (libgomp's
# default). Right after one, that int8 file's first call ran 33% slower, its second 9%
# and its third 6%; after 20 ms of its own untimed calls, the first ran as fast as the
# eighth (same results file).
LATENCY_SETTLE_S = 0.02
# Per model and batch size: enough repetitions for a stable median on big models
# without making tiny ones wait. A worker may spend less (settings.latency_budget_seconds,
# spec.latency_budget_s): the repetitions still stop no earlier than LATENCY_MIN_REPS.
LATENCY_BUDGET_S = 2.0


def predict(
    model: PreTrainedModel,
    split: EncodedSplit,
    *,
    task: Task,
    batch_size: int,
    pad_token_id: int,
    runtime: Runtime,
    progress: Progress,
) -> list[Any]:
    """The task's prediction for each example, in split order."""
    model.eval()
    predictions: list[Any] = [None] * len(split)
    batches = iter_indexed_batches(split, batch_size, pad_token_id=pad_token_id, by_length=True)
    for indices, batch in batches:
        progress.check_stop()
        with torch.inference_mode(), runtime.autocast():
            logits = model(**model_inputs(to_device(batch, runtime.device))).logits
        rows = task.decode(logits.float().cpu(), batch)
        for index, row in zip(indices, rows, strict=True):
            predictions[index] = row
    return predictions


def quality(
    model: PreTrainedModel,
    split: EncodedSplit,
    *,
    batch_size: int,
    pad_token_id: int,
    runtime: Runtime,
    progress: Progress,
    task: Task | None = None,
    label_names: Sequence[str] = (),
) -> Quality:
    """The task's scores on ``split`` (sequence classification when no task is given;
    token classification needs the tag names)."""
    task = task or get_task(SEQUENCE_CLASSIFICATION)
    predictions = predict(
        model,
        split,
        task=task,
        batch_size=batch_size,
        pad_token_id=pad_token_id,
        runtime=runtime,
        progress=progress,
    )
    return task.score(predictions, split, label_names)


def saved_size_bytes(model: PreTrainedModel, work_dir: Path) -> int:
    """Bytes of the safetensors files ``save_pretrained`` writes (shards summed)."""
    work_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=work_dir, prefix="size-") as tmp:
        model.save_pretrained(tmp)
        return sum(p.stat().st_size for p in Path(tmp).glob("*.safetensors"))


def latency_inputs(
    tokenizer: PreTrainedTokenizerBase, texts: list[str], *, batch_size: int, seq_len: int
) -> dict[str, torch.Tensor]:
    """Real eval texts padded to ``seq_len``: a fixed shape, so every model and every
    repetition does the same work."""
    rows = [texts[i % len(texts)] for i in range(batch_size)]
    encoded = tokenizer(
        rows, padding="max_length", truncation=True, max_length=seq_len, return_tensors="pt"
    )
    return dict(encoded)


def cpu_latency_ms(
    models: dict[str, PreTrainedModel],
    tokenizer: PreTrainedTokenizerBase,
    texts: list[str],
    *,
    seq_len: int,
    threads: int,
    progress: Progress,
    batch_sizes: Sequence[int] = LATENCY_BATCH_SIZES,
    budget_s: float = LATENCY_BUDGET_S,
) -> dict[str, dict[int, float]]:
    """Median forward latency per model and batch size, on CPU with ``threads`` threads.

    Models are timed in interleaved turns (a, b, a, b, ...) so that drift in the machine's speed
    (turbo, noisy neighbours) hits all of them alike instead of biasing the ratio.
    """
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _interleaved_latency_ms(
            models,
            tokenizer,
            texts,
            seq_len=seq_len,
            runtime=None,
            progress=progress,
            batch_sizes=batch_sizes,
            budget_s=budget_s,
        )
    finally:
        torch.set_num_threads(previous_threads)


def gpu_latency_ms(
    models: dict[str, PreTrainedModel],
    tokenizer: PreTrainedTokenizerBase,
    texts: list[str],
    *,
    seq_len: int,
    runtime: Runtime,
    progress: Progress,
    budget_s: float = LATENCY_BUDGET_S,
) -> dict[str, dict[int, float]]:
    """The same measurement on the run's accelerator, under its autocast (bf16 on CUDA),
    each forward timed to the end of its kernels (the clock waits on a synchronize)."""
    return _interleaved_latency_ms(
        models,
        tokenizer,
        texts,
        seq_len=seq_len,
        runtime=runtime,
        progress=progress,
        budget_s=budget_s,
    )


def _interleaved_latency_ms(
    models: dict[str, PreTrainedModel],
    tokenizer: PreTrainedTokenizerBase,
    texts: list[str],
    *,
    seq_len: int,
    runtime: Runtime | None,
    progress: Progress,
    batch_sizes: Sequence[int] = LATENCY_BATCH_SIZES,
    budget_s: float = LATENCY_BUDGET_S,
) -> dict[str, dict[int, float]]:
    device = runtime.device if runtime is not None else torch.device("cpu")
    autocast = runtime.autocast if runtime is not None else contextlib.nullcontext
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for model in models.values():
        model.eval()

    def runner(model: PreTrainedModel) -> Callable[[dict[str, torch.Tensor]], None]:
        def run(inputs: dict[str, torch.Tensor]) -> None:
            model(**inputs)
            sync()

        return run

    with torch.inference_mode(), autocast():
        return interleaved_latency_ms(
            {name: runner(model) for name, model in models.items()},
            tokenizer,
            texts,
            seq_len=seq_len,
            progress=progress,
            batch_sizes=batch_sizes,
            device=device,
            budget_s=budget_s,
        )


def threaded_latency_ms(
    runners: dict[str, Callable[[dict[str, torch.Tensor]], Any]],
    tokenizer: PreTrainedTokenizerBase,
    texts: list[str],
    *,
    seq_len: int,
    threads: int,
    progress: Progress,
    batch_sizes: Sequence[int],
    budget_s: float = LATENCY_BUDGET_S,
) -> dict[str, dict[int, float]]:
    """interleaved_latency_ms with PyTorch on ``threads`` threads and no autograd, for
    runners of any runtime (ONNX Runtime sessions set their own threads)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            return interleaved_latency_ms(
                runners,
                tokenizer,
                texts,
                seq_len=seq_len,
                progress=progress,
                batch_sizes=batch_sizes,
                budget_s=budget_s,
            )
    finally:
        torch.set_num_threads(previous)


def interleaved_latency_ms(
    runners: dict[str, Callable[[dict[str, torch.Tensor]], Any]],
    tokenizer: PreTrainedTokenizerBase,
    texts: list[str],
    *,
    seq_len: int,
    progress: Progress,
    batch_sizes: Sequence[int] = LATENCY_BATCH_SIZES,
    device: torch.device | None = None,
    budget_s: float = LATENCY_BUDGET_S,
) -> dict[str, dict[int, float]]:
    """Median latency of each runner (one forward pass on the inputs it is given, done
    when it returns) per batch size, in turns a, b, a, b... so drift in the machine's
    speed hits all of them alike. Runners may be models in any runtime (formats.py).

    A turn is untimed calls (one, or LATENCY_SETTLE_S of them with PyTorch on more than
    one thread), then LATENCY_TURN_CALLS timed ones: each timing is of a warm model on
    quiet cores, whatever ran before it. Per batch size, repetitions (timed calls)
    stop at LATENCY_MAX_REPS, or once every runner has run LATENCY_MIN_REPS times and
    the slowest has spent ``budget_s`` seconds, at the end of a round of turns."""
    results: dict[str, dict[int, float]] = {name: {} for name in runners}
    settle_s = LATENCY_SETTLE_S if torch.get_num_threads() > 1 else 0.0
    # No training step of this host's other jobs runs while these are timed.
    with progress.timing():
        for batch_size in batch_sizes:
            inputs = latency_inputs(tokenizer, texts, batch_size=batch_size, seq_len=seq_len)
            if device is not None:
                inputs = {k: v.to(device) for k, v in inputs.items()}
            timings: dict[str, list[float]] = {name: [] for name in runners}
            for _ in range(LATENCY_WARMUP):
                for run in runners.values():
                    run(inputs)
            while True:
                progress.check_stop()
                for name, run in runners.items():
                    settled = time.perf_counter() + settle_s
                    run(inputs)
                    while time.perf_counter() < settled:
                        run(inputs)
                    for _ in range(LATENCY_TURN_CALLS):
                        start = time.perf_counter()
                        run(inputs)
                        timings[name].append(time.perf_counter() - start)
                reps = len(next(iter(timings.values())))
                spent = max(sum(t) for t in timings.values())
                if reps >= LATENCY_MAX_REPS or (reps >= LATENCY_MIN_REPS and spent >= budget_s):
                    break
            for name, values in timings.items():
                results[name][batch_size] = statistics.median(values) * 1000.0
    return results


def model_metrics(
    model: PreTrainedModel,
    scores: Quality,
    *,
    size_bytes: int,
    latency: dict[int, float],
    seq_len: int | None = None,
) -> dict[str, Any]:
    """The quality scores first (the task's own keys; ``per_type`` for entities), then
    size and speed. With ``seq_len`` (the latency inputs' length, so both describe the
    same forward pass) also ``flops_per_token``: dense FLOPs, which zeroed weights do
    not reduce."""
    counts = parameter_counts(model)
    out: dict[str, Any] = {
        **scores.as_dict(),
        "num_parameters": counts.total,
        "non_embedding_parameters": counts.non_embedding,
        "size_bytes": size_bytes,
        "latency_ms_cpu_bs1": latency[1],
        "latency_ms_cpu_bs32": latency[32],
        "num_layers": len(encoder_layers(model)),
        "intermediate_size": ffn(model, encoder_layers(model)[0]).width,
    }
    if seq_len is not None:
        out["flops_per_token"] = flops_per_token(model, seq_len)
    return out


def flops_ratio(teacher_part: dict[str, Any], student_part: dict[str, Any]) -> float:
    """Teacher FLOPs / student FLOPs per token: the speed-up that the removed structures
    allow at most, the bound a measured speed-up is read against."""
    return teacher_part["flops_per_token"] / student_part["flops_per_token"]
