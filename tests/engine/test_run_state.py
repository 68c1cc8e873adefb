"""RunState: the checkpoint payload, typed. A payload in the layout the engine wrote
before RunState (schema version 1) reads back into the same fields and writes back
unchanged; any other version, or a payload short of an entry, is refused with a reason
that names it."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.engine.conftest import RecordingCallback
from workers.engine import checkpoint
from workers.engine.checkpoint import Checkpointer
from workers.engine.progress import Progress
from workers.engine.run_state import (
    SCHEMA_VERSION,
    DistillingState,
    RunState,
    UnusableCheckpoint,
)

# The keys of each stage's payload as the engine before RunState wrote them (captured
# from its checkpoints at commit 3cc02d2). Schema version 1 is that layout: a change to
# it must come with a new version.
PRE_RUN_STATE_KEYS = {
    "teacher_finetune": {"version", "fingerprint", "stage", "progress", "loop", "teacher"},
    "teacher_done": {
        *("version", "fingerprint", "stage", "progress"),
        *("teacher", "teacher_curve", "teacher_scores", "rng"),
    },
    "distilling": {
        *("version", "fingerprint", "stage", "progress", "loop"),
        *("teacher", "teacher_curve", "teacher_scores"),
        *("round", "student_config", "layer_map", "achieved", "pruning_plan", "rounds"),
        *("speed_plan", "curve_before", "student", "sparsity", "neurons"),
    },
}


def _weights(seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {"encoder.weight": torch.randn(3, 2, generator=generator), "bias": torch.zeros(3)}


def _loop(step: int) -> dict[str, Any]:
    return {"step": step, "epoch": 0, "optimizer": {"state": {}}, "order": torch.arange(4)}


def _pre_run_state_payload(stage: str) -> dict[str, Any]:
    """A payload laid out as the engine before RunState laid it out, by hand."""
    header = {"version": 1, "fingerprint": "abc123", "stage": stage, "progress": 0.42}
    teacher = {
        "teacher": _weights(1),
        "teacher_curve": [{"step": 5, "epoch": 0.5, "loss": 0.61}],
        "teacher_scores": {"accuracy": 0.9, "macro_f1": 0.89},
    }
    if stage == "teacher_finetune":
        return {**header, "loop": _loop(15), "teacher": _weights(1)}
    if stage == "teacher_done":
        return {**header, **teacher, "rng": {"cpu": torch.get_rng_state()}}
    return {
        **header,
        "round": 1,
        "student_config": {"model_type": "bert", "num_hidden_layers": 2},
        "layer_map": [0, 3],
        "achieved": 0.34,
        "pruning_plan": {"num_layers": 2, "intermediate_size": 16, "importance": None},
        "rounds": [{"round": 1, "target_ratio": 0.45, "layer_map": [0, 1, 3]}],
        "speed_plan": None,
        "curve_before": [{"step": 12, "epoch": 2.0, "loss": 0.3, "round": 1}],
        **teacher,
        "loop": _loop(8),
        "student": _weights(2),
        "sparsity": None,
        "neurons": {"step": 8, "frozen": False, "masks": [torch.ones(4, dtype=torch.bool)]},
    }


def _same(a: object, b: object) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return type(a) is type(b) and len(a) == len(b) and all(map(_same, a, b))
    return a == b


def test_the_pre_run_state_layout_is_schema_version_1() -> None:
    assert SCHEMA_VERSION == 1
    for stage, keys in PRE_RUN_STATE_KEYS.items():
        assert set(_pre_run_state_payload(stage)) == keys, stage


@pytest.mark.parametrize("stage", sorted(PRE_RUN_STATE_KEYS))
def test_a_pre_run_state_payload_reads_into_its_fields_and_writes_back_unchanged(
    stage: str,
) -> None:
    payload = _pre_run_state_payload(stage)
    state = RunState.from_checkpoint(payload)
    assert (state.stage, state.fingerprint, state.progress) == (stage, "abc123", 0.42)
    assert _same(state.teacher, payload["teacher"])
    assert state.step == (payload["loop"]["step"] if "loop" in payload else None)
    if stage == "distilling":
        assert isinstance(state.distilling, DistillingState)
        assert state.distilling.round == 1 and state.distilling.layer_map == [0, 3]
        assert _same(state.distilling.student, payload["student"])
        assert _same(state.distilling.neurons, payload["neurons"])
    else:
        assert state.distilling is None
    assert _same(state.to_checkpoint(), payload)


@pytest.mark.parametrize("stage", sorted(PRE_RUN_STATE_KEYS))
def test_the_payload_is_plain_enough_for_weights_only_loading(stage: str) -> None:
    buffer = io.BytesIO()
    torch.save(RunState.from_checkpoint(_pre_run_state_payload(stage)).to_checkpoint(), buffer)
    buffer.seek(0)
    assert _same(torch.load(buffer, weights_only=True), _pre_run_state_payload(stage))


@pytest.mark.parametrize("version", [0, 2, None, "1"])
def test_another_schema_version_is_refused_naming_it(version: object) -> None:
    payload = {**_pre_run_state_payload("distilling"), "version": version}
    with pytest.raises(UnusableCheckpoint, match=rf"schema version {version!r} .*version 1"):
        RunState.from_checkpoint(payload)


def test_a_payload_short_of_an_entry_its_stage_needs_is_refused_naming_it() -> None:
    payload = _pre_run_state_payload("distilling")
    del payload["student_config"], payload["neurons"]
    with pytest.raises(UnusableCheckpoint, match="in distilling lacks student_config, neurons"):
        RunState.from_checkpoint(payload)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ([1, 2], "holds a list, not a dict"),
        ({**_pre_run_state_payload("teacher_done"), "stage": "pruning"}, "unknown stage"),
    ],
)
def test_a_payload_that_is_no_run_state_is_refused(payload: object, reason: str) -> None:
    with pytest.raises(UnusableCheckpoint, match=reason):
        RunState.from_checkpoint(payload)


def test_distilling_state_goes_with_the_distilling_stage_only() -> None:
    distilling = RunState.from_checkpoint(_pre_run_state_payload("distilling")).distilling
    with pytest.raises(ValueError):
        RunState(stage="teacher_done", distilling=distilling)
    with pytest.raises(ValueError):
        RunState(stage="distilling")


def test_checkpointer_stamps_the_run_and_announces_the_round(tmp_path: Path) -> None:
    callback = _Announced()
    progress = Progress(callback)
    progress.resume_at(0.5)
    saver = Checkpointer(folder=tmp_path, fingerprint="f00d", progress=progress)
    state = RunState.from_checkpoint(_pre_run_state_payload("distilling"))
    path = saver.save(state)
    assert callback.checkpoints == [
        (path, {"stage": "distilling", "step": 8, "progress": 0.5, "round": 2})
    ]
    loaded, problem = checkpoint.load(path, expected_fingerprint="f00d")
    assert problem is None and loaded is not None
    assert (loaded.fingerprint, loaded.progress) == ("f00d", 0.5)
    assert _same(
        loaded.to_checkpoint(), {**state.to_checkpoint(), "fingerprint": "f00d", "progress": 0.5}
    )
    # The same file, for a run of other settings.
    assert checkpoint.load(path, expected_fingerprint="beef") == (
        None,
        "the checkpoint belongs to a run with different settings",
    )


class _Announced(RecordingCallback):
    def __init__(self) -> None:
        super().__init__()
        self.checkpoints: list[tuple[Path, dict[str, Any]]] = []

    def on_checkpoint(self, path: Path, info: dict[str, Any]) -> None:
        self.checkpoints.append((path, info))
