"""Shared fixtures for engine tests: a tiny data set, tiny teachers, spec building and a
callback that records everything the engine reports."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.tiny import make_tiny_bert, make_tiny_dataset, write_engine_jsonl
from workers.engine import evaluate
from workers.engine.spec import CompressionSpec, TargetSpec, TrainingSpec

LABELS = ("negative", "positive")


class RecordingCallback:
    def __init__(self, stop_after_checks: int | None = None) -> None:
        self.phases: list[str] = []
        self.progress: list[float] = []
        self.logs: list[tuple[str, str, dict | None]] = []
        self.stop_checks = 0
        self._stop_after = stop_after_checks

    def on_phase(self, phase: str) -> None:
        self.phases.append(phase)

    def on_progress(self, progress: float) -> None:
        self.progress.append(progress)

    def on_log(self, message: str, *, level: str = "info", data: dict | None = None) -> None:
        self.logs.append((message, level, data))

    def should_stop(self) -> bool:
        self.stop_checks += 1
        return self._stop_after is not None and self.stop_checks > self._stop_after


@pytest.fixture(scope="session", autouse=True)
def _quick_cpu() -> Iterator[None]:
    # Tiny models gain nothing from a second thread and lose a lot (10x measured) when
    # the CI box is shared; a few latency repetitions are enough to check the plumbing.
    # Session scope, so that it is in force before any module-scoped run fixture.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(evaluate, "LATENCY_MAX_REPS", 8)
        yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tiny")


@pytest.fixture(scope="session")
def tiny_splits(tiny_root: Path) -> tuple[Path, Path]:
    source = make_tiny_dataset(tiny_root / "data.jsonl", n=200, seed=0, label_names=LABELS)
    train, eval_ = tiny_root / "train.jsonl", tiny_root / "eval.jsonl"
    write_engine_jsonl(source, train, eval_, LABELS)
    return train, eval_


@pytest.fixture(scope="session")
def headless_teacher(tiny_root: Path) -> Path:
    return make_tiny_bert(tiny_root / "teacher-base", num_labels=None)


@pytest.fixture(scope="session")
def headed_teacher(tiny_root: Path) -> Path:
    return make_tiny_bert(tiny_root / "teacher-head", num_labels=2, seed=1)


def make_spec(
    teacher_dir: Path,
    splits: tuple[Path, Path],
    run_dir: Path,
    *,
    params_ratio: float | None = 0.5,
    training: dict[str, Any] | None = None,
    **overrides: Any,
) -> CompressionSpec:
    """A spec sized so the tiny task is learnt in a couple of seconds on one thread."""
    train_kw: dict[str, Any] = {
        "epochs": 2,
        "batch_size": 16,
        "learning_rate": 2e-3,
        "max_seq_length": 32,
        "seed": 0,
        "teacher_epochs": 8,
        "teacher_learning_rate": 5e-3,
    }
    train_kw.update(training or {})
    spec = CompressionSpec(
        task="sequence-classification",
        teacher_dir=teacher_dir,
        train_file=splits[0],
        eval_file=splits[1],
        label_names=LABELS,
        output_dir=run_dir / "out",
        work_dir=run_dir / "work",
        target=TargetSpec(params_ratio=params_ratio),
        training=TrainingSpec(**train_kw),
        device="cpu",
        latency_threads=1,
    )
    return dataclasses.replace(spec, **overrides)
