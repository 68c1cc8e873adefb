"""A run stopped after a checkpoint and resumed from it ends where an uninterrupted run
with the same seed ends, whichever training phase it was stopped in."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from tests.engine.conftest import RecordingCallback, make_spec
from workers.engine import checkpoint
from workers.engine.compress import compress
from workers.engine.spec import CompressionResult, EngineStopped, TargetSpec

EVERY = 5
# CPU kernels are deterministic run to run in one process; the tolerance only allows
# for summation order should a library change it.
TOLERANCE = 1e-5


class CheckpointingCallback(RecordingCallback):
    """Keeps a copy of each checkpoint; with ``stop_at`` = (stage, step) it stops the
    run right after that checkpoint, as a kill would."""

    def __init__(
        self,
        keep: Path,
        stop_at: tuple[str, int | None] | Callable[[dict[str, Any]], bool] | None = None,
    ) -> None:
        super().__init__()
        self.keep = keep
        self.stop_at = stop_at
        self.saved: list[dict[str, Any]] = []
        self._stopping = False

    def on_checkpoint(self, path: Path, info: dict[str, Any]) -> None:
        copy = self.keep / f"{info['stage']}-{info['step']}.pt"
        self.keep.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, copy)
        self.saved.append({**info, "copy": copy})
        wanted = self.stop_at
        if (callable(wanted) and wanted(info)) or wanted == (info["stage"], info["step"]):
            self._stopping = True

    def should_stop(self) -> bool:
        return self._stopping


def _weights(result: CompressionResult) -> dict[str, torch.Tensor]:
    model_dir = next(a.path for a in result.artifacts if a.name == "model")
    return load_file(model_dir / "model.safetensors")


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


@pytest.fixture(scope="module")
def uninterrupted(
    headless_teacher: Path, tiny_splits: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> tuple[CompressionResult, CheckpointingCallback]:
    run = tmp_path_factory.mktemp("uninterrupted")
    callback = CheckpointingCallback(run / "kept")
    spec = make_spec(headless_teacher, tiny_splits, run, training={"checkpoint_every_steps": EVERY})
    return compress(spec, callback), callback


def _interrupted_then_resumed(
    teacher: Path, splits: tuple[Path, Path], run: Path, stop_at: tuple[str, int]
) -> tuple[CompressionResult, CheckpointingCallback, dict[str, Any]]:
    first = CheckpointingCallback(run / "kept", stop_at=stop_at)
    spec = make_spec(teacher, splits, run / "first", training={"checkpoint_every_steps": EVERY})
    with pytest.raises(EngineStopped):
        compress(spec, first)
    last = first.saved[-1]
    assert (last["stage"], last["step"]) == stop_at
    second = CheckpointingCallback(run / "kept-2")
    resumed_spec = make_spec(
        teacher,
        splits,
        run / "second",  # a fresh work folder, as on another worker
        training={"checkpoint_every_steps": EVERY},
        resume_from=last["copy"],
    )
    return compress(resumed_spec, second), second, last


def test_checkpoints_are_made_every_n_steps_and_at_phase_ends(uninterrupted) -> None:
    _, callback = uninterrupted
    finetune = [c["step"] for c in callback.saved if c["stage"] == "teacher_finetune"]
    distilling = [c["step"] for c in callback.saved if c["stage"] == "distilling"]
    assert finetune and finetune == list(range(EVERY, EVERY * (len(finetune) + 1), EVERY))
    assert distilling and distilling[0] == EVERY
    assert [c["stage"] for c in callback.saved].count("teacher_done") == 1
    progress = [c["progress"] for c in callback.saved]
    assert progress == sorted(progress)


@pytest.mark.parametrize(
    "stop_at",
    [("teacher_finetune", 3 * EVERY), ("teacher_done", None), ("distilling", 2 * EVERY)],
    ids=["mid-finetune", "after-finetune", "mid-distilling"],
)
def test_resumed_run_ends_where_the_uninterrupted_run_ends(
    stop_at, uninterrupted, headless_teacher, tiny_splits, tmp_path
) -> None:
    expected, _ = uninterrupted
    result, callback, last = _interrupted_then_resumed(
        headless_teacher, tiny_splits, tmp_path, stop_at
    )
    assert _max_diff(_weights(result), _weights(expected)) <= TOLERANCE
    for part in ("teacher", "student"):
        assert result.metrics[part]["accuracy"] == expected.metrics[part]["accuracy"]
    # It went on from the checkpoint: no fine-tuning epoch was run twice...
    resumed_logs = [m for m, _, _ in callback.logs if m.startswith("resuming from")]
    assert len(resumed_logs) == 1
    if stop_at[0] != "teacher_finetune":
        assert "teacher_finetune" not in callback.phases
    # ...and its progress did not start again from zero.
    assert callback.progress[0] >= last["progress"] - 1e-9
    assert callback.progress == sorted(callback.progress)


def test_checkpoint_of_another_spec_is_ignored_with_a_warning(
    uninterrupted, headless_teacher, tiny_splits, tmp_path
) -> None:
    _, callback = uninterrupted
    foreign = next(c["copy"] for c in callback.saved if c["stage"] == "distilling")
    spec = make_spec(
        headless_teacher,
        tiny_splits,
        tmp_path,
        training={"checkpoint_every_steps": 0, "seed": 1},  # another seed: another run
        resume_from=foreign,
        params_ratio=0.5,
    )
    # Stopped at the next phase: only how the run started matters here.
    probe = RecordingCallback(stop_after_checks=1)
    with pytest.raises(EngineStopped):
        compress(spec, probe)
    warnings = [m for m, level, _ in probe.logs if level == "warning"]
    assert any("different settings" in w for w in warnings)


def test_unreadable_checkpoint_is_reported_not_loaded(tmp_path: Path) -> None:
    broken = tmp_path / "checkpoint.pt"
    broken.write_bytes(b"not a checkpoint")
    data, problem = checkpoint.load(broken, expected_fingerprint="x")
    assert data is None and problem and "could not be read" in problem


def test_resume_with_sparsity_masks_ends_like_the_uninterrupted_run(
    headed_teacher, tiny_splits, tmp_path
) -> None:
    """The masks (and where the schedule is) travel in the checkpoint: the resumed run
    zeroes the same weights and ends with the same ones."""
    training = {"checkpoint_every_steps": EVERY, "epochs": 3}
    target = TargetSpec(sparsity=0.5, pattern="unstructured")
    whole = compress(
        make_spec(
            headed_teacher,
            tiny_splits,
            tmp_path / "whole",
            params_ratio=None,
            target=target,
            training=training,
        ),
        CheckpointingCallback(tmp_path / "kept-whole"),
    )
    first = CheckpointingCallback(tmp_path / "kept", stop_at=("distilling", 2 * EVERY))
    with pytest.raises(EngineStopped):
        compress(
            make_spec(
                headed_teacher,
                tiny_splits,
                tmp_path / "first",
                params_ratio=None,
                target=target,
                training=training,
            ),
            first,
        )
    resumed = compress(
        make_spec(
            headed_teacher,
            tiny_splits,
            tmp_path / "second",
            params_ratio=None,
            target=target,
            training=training,
            resume_from=first.saved[-1]["copy"],
        ),
        CheckpointingCallback(tmp_path / "kept-2"),
    )
    expected, got = _weights(whole), _weights(resumed)
    assert _max_diff(got, expected) <= TOLERANCE
    assert all(torch.equal(got[k] == 0, expected[k] == 0) for k in got)
