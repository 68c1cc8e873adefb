"""A checkpoint written before RunState, in the layout that engine built by hand, is
resumed and ends where an uninterrupted run ends; one of another schema version is
refused with a warning that names the version, and the run starts afresh, ending where
an uninterrupted run ends too.

Starting afresh, rather than failing the job, is the safe answer to a version this
engine cannot read: the fresh run is the seeded run the spec asks for (the result is the
same, only the time is lost), whereas a failed job is one the user can only resubmit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from tests.engine.conftest import make_spec
from tests.engine.test_checkpoint_resume import (
    EVERY,
    TOLERANCE,
    CheckpointingCallback,
    _max_diff,
    _weights,
)
from workers.engine.compress import compress
from workers.engine.spec import CompressionResult, EngineStopped

STOP_AT = ("distilling", 2 * EVERY)


def _pre_run_state_distilling(saved: dict[str, Any]) -> dict[str, Any]:
    """The payload the engine before RunState (commit 3cc02d2) wrote while distilling,
    put together the way its compress.py and rounds.save_distill did, from the values of
    a checkpoint made now."""
    fixed = {
        "round": saved["round"],
        "student_config": saved["student_config"],
        "layer_map": saved["layer_map"],
        "achieved": saved["achieved"],
        "pruning_plan": saved["pruning_plan"],
        "rounds": saved["rounds"],
        "speed_plan": saved["speed_plan"],
        "curve_before": saved["curve_before"],
        "teacher": saved["teacher"],
        "teacher_curve": saved["teacher_curve"],
        "teacher_scores": saved["teacher_scores"],
    }
    return {
        "version": 1,
        "fingerprint": saved["fingerprint"],
        "stage": "distilling",
        "progress": saved["progress"],
        **fixed,
        "loop": saved["loop"],
        "student": saved["student"],
        "sparsity": saved["sparsity"],
        "neurons": saved["neurons"],
    }


@pytest.fixture(scope="module")
def runs(
    headless_teacher: Path, tiny_splits: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> tuple[CompressionResult, dict[str, Any]]:
    """An uninterrupted run, and the payload of a run stopped mid-distillation."""
    root = tmp_path_factory.mktemp("schema")
    training = {"checkpoint_every_steps": EVERY}
    whole = compress(
        make_spec(headless_teacher, tiny_splits, root / "whole", training=training),
        CheckpointingCallback(root / "kept-whole"),
    )
    first = CheckpointingCallback(root / "kept", stop_at=STOP_AT)
    with pytest.raises(EngineStopped):
        compress(make_spec(headless_teacher, tiny_splits, root / "first", training=training), first)
    return whole, torch.load(first.saved[-1]["copy"], weights_only=True)


def _resume(
    payload: dict[str, Any], teacher: Path, splits: tuple[Path, Path], run: Path
) -> tuple[CompressionResult, CheckpointingCallback]:
    path = run / "checkpoint.pt"
    run.mkdir(parents=True, exist_ok=True)
    torch.save(payload, path)
    callback = CheckpointingCallback(run / "kept")
    spec = make_spec(
        teacher,
        splits,
        run,
        training={"checkpoint_every_steps": EVERY},
        resume_from=path,
    )
    return compress(spec, callback), callback


def test_a_pre_run_state_checkpoint_is_resumed(
    runs, headless_teacher, tiny_splits, tmp_path
) -> None:
    whole, saved = runs
    result, callback = _resume(
        _pre_run_state_distilling(saved), headless_teacher, tiny_splits, tmp_path
    )
    assert _max_diff(_weights(result), _weights(whole)) <= TOLERANCE
    resumed = [m for m, _, _ in callback.logs if m.startswith("resuming from")]
    assert resumed == [f"resuming from the checkpoint made in {STOP_AT[0]} at step {STOP_AT[1]}"]
    assert not [m for m, level, _ in callback.logs if level == "warning"]
    assert callback.phases[:2] == ["preparing", "distilling"]
    # Its own checkpoints carry on in the same layout.
    assert torch.load(callback.saved[-1]["copy"], weights_only=True).keys() == saved.keys()


def test_a_checkpoint_of_another_schema_version_is_refused_and_the_run_starts_afresh(
    runs, headless_teacher, tiny_splits, tmp_path
) -> None:
    whole, saved = runs
    result, callback = _resume({**saved, "version": 2}, headless_teacher, tiny_splits, tmp_path)
    warnings = [m for m, level, _ in callback.logs if level == "warning"]
    assert warnings == [
        "starting afresh: the checkpoint has schema version 2 and this engine reads "
        "version 1: it was written by another engine release"
    ]
    assert not [m for m, _, _ in callback.logs if m.startswith("resuming from")]
    assert "teacher_finetune" in callback.phases
    assert callback.progress[0] < saved["progress"]
    assert _max_diff(_weights(result), _weights(whole)) <= TOLERANCE
