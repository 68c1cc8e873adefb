"""Quality, size and CPU latency of teacher and student, measured the same way."""

from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from workers.engine.data import EncodedSplit, iter_batches, model_inputs, to_device
from workers.engine.layers import encoder_layers, parameter_counts
from workers.engine.progress import Progress
from workers.engine.runtime import Runtime

LATENCY_BATCH_SIZES = (1, 32)
LATENCY_WARMUP = 3
LATENCY_MIN_REPS = 5
LATENCY_MAX_REPS = 100
# Per model and batch size: enough repetitions for a stable median on big models
# without making tiny ones wait.
LATENCY_BUDGET_S = 2.0


@dataclass(frozen=True)
class Quality:
    accuracy: float
    macro_f1: float


def accuracy(predictions: list[int], labels: list[int]) -> float:
    if not labels:
        return 0.0
    return sum(p == y for p, y in zip(predictions, labels, strict=True)) / len(labels)


def macro_f1(predictions: list[int], labels: list[int]) -> float:
    """Unweighted mean of per-class F1 over the classes seen in labels or predictions
    (sklearn's default set): a class absent from both says nothing about the model."""
    classes = sorted(set(labels) | set(predictions))
    if not classes:
        return 0.0
    scores = []
    for c in classes:
        tp = sum(p == c and y == c for p, y in zip(predictions, labels, strict=True))
        fp = sum(p == c and y != c for p, y in zip(predictions, labels, strict=True))
        fn = sum(p != c and y == c for p, y in zip(predictions, labels, strict=True))
        denominator = 2 * tp + fp + fn
        scores.append(2 * tp / denominator if denominator else 0.0)
    return sum(scores) / len(scores)


def predict(
    model: PreTrainedModel,
    split: EncodedSplit,
    *,
    batch_size: int,
    pad_token_id: int,
    runtime: Runtime,
    progress: Progress,
) -> tuple[list[int], list[int]]:
    """Predictions and the labels in the same (length-sorted) order."""
    model.eval()
    predictions: list[int] = []
    labels: list[int] = []
    for batch in iter_batches(split, batch_size, pad_token_id=pad_token_id, by_length=True):
        progress.check_stop()
        with torch.inference_mode(), runtime.autocast():
            logits = model(**model_inputs(to_device(batch, runtime.device))).logits
        predictions.extend(logits.float().argmax(dim=-1).tolist())
        labels.extend(batch["labels"].tolist())
    return predictions, labels


def quality(
    model: PreTrainedModel,
    split: EncodedSplit,
    *,
    batch_size: int,
    pad_token_id: int,
    runtime: Runtime,
    progress: Progress,
) -> Quality:
    predictions, labels = predict(
        model,
        split,
        batch_size=batch_size,
        pad_token_id=pad_token_id,
        runtime=runtime,
        progress=progress,
    )
    return Quality(accuracy=accuracy(predictions, labels), macro_f1=macro_f1(predictions, labels))


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
) -> dict[str, dict[int, float]]:
    """Median forward latency per model and batch size, on CPU with ``threads`` threads.

    Models are timed interleaved (a, b, a, b, ...) so that drift in the machine's speed
    (turbo, noisy neighbours) hits all of them alike instead of biasing the ratio.
    """
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    results: dict[str, dict[int, float]] = {name: {} for name in models}
    try:
        for model in models.values():
            model.eval()
        for batch_size in LATENCY_BATCH_SIZES:
            inputs = latency_inputs(tokenizer, texts, batch_size=batch_size, seq_len=seq_len)
            timings: dict[str, list[float]] = {name: [] for name in models}
            with torch.inference_mode():
                for _ in range(LATENCY_WARMUP):
                    for model in models.values():
                        model(**inputs)
                while True:
                    progress.check_stop()
                    for name, model in models.items():
                        start = time.perf_counter()
                        model(**inputs)
                        timings[name].append(time.perf_counter() - start)
                    reps = len(next(iter(timings.values())))
                    spent = max(sum(t) for t in timings.values())
                    if reps >= LATENCY_MAX_REPS or (
                        reps >= LATENCY_MIN_REPS and spent >= LATENCY_BUDGET_S
                    ):
                        break
            for name, values in timings.items():
                results[name][batch_size] = statistics.median(values) * 1000.0
    finally:
        torch.set_num_threads(previous_threads)
    return results


def model_metrics(
    model: PreTrainedModel, scores: Quality, *, size_bytes: int, latency: dict[int, float]
) -> dict[str, float | int]:
    counts = parameter_counts(model)
    return {
        "accuracy": scores.accuracy,
        "macro_f1": scores.macro_f1,
        "num_parameters": counts.total,
        "non_embedding_parameters": counts.non_embedding,
        "size_bytes": size_bytes,
        "latency_ms_cpu_bs1": latency[1],
        "latency_ms_cpu_bs32": latency[32],
        "num_layers": len(encoder_layers(model)),
        "intermediate_size": int(model.config.intermediate_size),
    }
