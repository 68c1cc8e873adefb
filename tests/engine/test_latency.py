"""The latency measurement: interleaved medians per model and batch size; the GPU path
is the same code with the run's device, autocast and a synchronize (its plumbing is
checked here on the CPU; no GPU is in CI)."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from tests.engine.conftest import RecordingCallback
from workers.engine.evaluate import LATENCY_BATCH_SIZES, cpu_latency_ms, gpu_latency_ms
from workers.engine.progress import Progress
from workers.engine.report import gpu_metrics
from workers.engine.runtime import Runtime


def test_latency_measures_every_model_at_every_batch_size(headed_teacher: Path) -> None:
    model = AutoModelForSequenceClassification.from_pretrained(headed_teacher, use_safetensors=True)
    tokenizer = AutoTokenizer.from_pretrained(headed_teacher)
    models = {"teacher": model, "student": model}
    progress = Progress(RecordingCallback())
    texts = ["a good film"]
    for measured in (
        cpu_latency_ms(models, tokenizer, texts, seq_len=16, threads=1, progress=progress),
        gpu_latency_ms(
            models,
            tokenizer,
            texts,
            seq_len=16,
            runtime=Runtime(torch.device("cpu")),
            progress=progress,
        ),
    ):
        assert set(measured) == {"teacher", "student"}
        for per_batch in measured.values():
            assert set(per_batch) == set(LATENCY_BATCH_SIZES)
            assert all(ms > 0 for ms in per_batch.values())
    assert torch.get_num_threads() >= 1


def test_gpu_metrics_give_both_latencies_and_the_speed_ups() -> None:
    out = gpu_metrics({"teacher": {1: 4.0, 32: 40.0}, "student": {1: 2.0, 32: 10.0}})
    assert out["latency_ms_gpu_bs1"] == {"teacher": 4.0, "student": 2.0}
    assert out["speedup_gpu_bs1"] == 2.0 and out["speedup_gpu_bs32"] == 4.0
