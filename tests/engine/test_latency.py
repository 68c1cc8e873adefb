"""The latency measurement: interleaved medians per model and batch size; the GPU path
is the same code with the run's device, autocast and a synchronize (its plumbing is
checked here on the CPU; no GPU is in CI)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from tests.engine.conftest import RecordingCallback
from workers.engine import evaluate
from workers.engine.evaluate import (
    LATENCY_BATCH_SIZES,
    LATENCY_MIN_REPS,
    LATENCY_TURN_CALLS,
    LATENCY_WARMUP,
    cpu_latency_ms,
    gpu_latency_ms,
    interleaved_latency_ms,
)
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


def _timed_runs(tokenizer_dir: Path, *, budget_s: float, run_s: float) -> int:
    """How many timed runs (warm-up excluded) the loop makes of a runner taking ``run_s``."""
    calls = 0

    def run(_inputs: dict[str, torch.Tensor]) -> None:
        nonlocal calls
        calls += 1
        time.sleep(run_s)

    interleaved_latency_ms(
        {"only": run},
        AutoTokenizer.from_pretrained(tokenizer_dir),
        ["a good film"],
        seq_len=8,
        progress=Progress(RecordingCallback()),
        batch_sizes=(1,),
        budget_s=budget_s,
    )
    turns, left = divmod(calls - LATENCY_WARMUP, LATENCY_TURN_CALLS + 1)
    assert left == 0, "a turn is one untimed call and LATENCY_TURN_CALLS timed ones"
    return turns * LATENCY_TURN_CALLS


def test_the_budget_bounds_the_runs_but_never_below_the_minimum(
    headed_teacher: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(evaluate, "LATENCY_MAX_REPS", 100)  # conftest's 8 would end it first
    # 20 ms a run: a 0.5 s budget stops near 25 runs (sleep overshoots, so fewer, never
    # more), at the end of a turn; a budget shorter than one run still makes the
    # minimum, in whole turns.
    generous = _timed_runs(headed_teacher, budget_s=0.5, run_s=0.02)
    tight = _timed_runs(headed_teacher, budget_s=0.001, run_s=0.02)
    assert tight == -(-LATENCY_MIN_REPS // LATENCY_TURN_CALLS) * LATENCY_TURN_CALLS
    assert 15 <= generous <= 25 + LATENCY_TURN_CALLS - 1


def _bs1_ms(runners: dict, tokenizer_dir: Path) -> dict[str, dict[int, float]]:
    return interleaved_latency_ms(
        runners,
        AutoTokenizer.from_pretrained(tokenizer_dir),
        ["a good film"],
        seq_len=8,
        progress=Progress(RecordingCallback()),
        batch_sizes=(1,),
        budget_s=0.05,
    )


def test_a_runner_is_timed_warm_whatever_ran_before_it(headed_teacher: Path) -> None:
    """The first call after another runner's pays for what that one left (caches, spinning
    threads); it is not timed. Here it costs 30 ms against 1 ms warm: timed one call a
    turn, every median would read 30."""
    last: list[str] = [""]

    def runner(name: str):
        def run(_inputs: dict[str, torch.Tensor]) -> None:
            time.sleep(0.001 if last[0] == name else 0.03)
            last[0] = name

        return run

    measured = _bs1_ms({"a": runner("a"), "b": runner("b")}, headed_teacher)
    assert measured["a"][1] < 10 and measured["b"][1] < 10, measured


def test_with_pytorch_threads_a_turn_waits_out_the_previous_runners_spin(
    headed_teacher: Path,
) -> None:
    """PyTorch's OpenMP threads spin on the cores for a while after a forward pass; the
    next runner is slow until they stop. Here a call that starts within 15 ms of the
    other runner's last one takes 3 ms, else 1 ms: after a single untimed call, four of
    a turn's five timed calls would still be slow, and so would the median."""
    ended: dict[str, float] = {"a": 0.0, "b": 0.0}

    def runner(name: str, other: str):
        def run(_inputs: dict[str, torch.Tensor]) -> None:
            spinning = time.perf_counter() - ended[other] < 0.015
            time.sleep(0.003 if spinning else 0.001)
            ended[name] = time.perf_counter()

        return run

    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        measured = _bs1_ms({"a": runner("a", "b"), "b": runner("b", "a")}, headed_teacher)
    finally:
        torch.set_num_threads(previous)
    assert measured["a"][1] < 2 and measured["b"][1] < 2, measured
