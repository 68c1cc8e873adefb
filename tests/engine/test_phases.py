"""Each phase of ``compress()`` run alone (workers/engine/phases/), on what the phases
before it would have handed it, built here where that is shorter."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.engine.conftest import RecordingCallback, make_spec
from tests.engine.test_checkpoint_resume import CheckpointingCallback
from workers.engine import checkpoint
from workers.engine.checkpoint import Checkpointer, cpu_state
from workers.engine.phases.evaluating import Evaluation, evaluate
from workers.engine.phases.exporting import export
from workers.engine.phases.preparing import prepare, usable_seq_len
from workers.engine.phases.prune_distill import Student, prune_and_distill
from workers.engine.phases.reporting import report
from workers.engine.phases.run import Run
from workers.engine.phases.teacher_finetune import FinetunedTeacher, finetune
from workers.engine.progress import Progress
from workers.engine.run_state import RunState
from workers.engine.spec import CompressionSpec

FINGERPRINT = "phases"


def _prepared(
    spec: CompressionSpec,
    callback: RecordingCallback | None = None,
    resumed: RunState | None = None,
) -> Run:
    progress = Progress(callback or RecordingCallback())
    saver = Checkpointer(
        folder=spec.work_dir / "checkpoints", fingerprint=FINGERPRINT, progress=progress
    )
    return prepare(spec, progress=progress, checkpointer=saver, resumed=resumed)


def _rows(path: Path) -> int:
    return len(path.read_text().splitlines())


def _same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], atol: float = 0.0):
    return a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=atol, rtol=0) for k in a)


# -- preparing ------------------------------------------------------------------------


@pytest.mark.parametrize(("teacher", "needs"), [("headless", True), ("headed", False)])
def test_preparing_reads_the_data_and_decides_whether_the_teacher_needs_a_head(
    teacher, needs, headless_teacher, headed_teacher, tiny_splits, tmp_path
) -> None:
    folder = headless_teacher if teacher == "headless" else headed_teacher
    callback = RecordingCallback()
    run = _prepared(make_spec(folder, tiny_splits, tmp_path), callback)
    assert run.needs_finetune is needs
    assert (len(run.train), len(run.evaluation)) == tuple(_rows(p) for p in tiny_splits)
    assert run.max_len == 32 and run.pad_id == 0
    assert callback.phases == ["preparing"] and set(run.timings) == {"preparing"}


def test_preparing_loads_the_teacher_weights_a_checkpoint_carries(
    headless_teacher, tiny_splits, tmp_path
) -> None:
    spec = make_spec(headless_teacher, tiny_splits, tmp_path)
    fresh = _prepared(spec).teacher
    saved = {k: torch.full_like(v, 0.5) for k, v in fresh.state_dict().items()}
    resumed = RunState(stage="teacher_finetune", loop={"step": 5}, teacher=saved)
    assert _same_weights(cpu_state(_prepared(spec, resumed=resumed).teacher), saved)


def test_the_sequence_length_fits_the_teacher_position_table() -> None:
    roberta = {"model_type": "roberta", "max_position_embeddings": 514, "pad_token_id": 1}
    assert usable_seq_len(roberta, 1024) == 512
    assert usable_seq_len({"model_type": "bert", "max_position_embeddings": 128}, 256) == 128
    assert usable_seq_len({"model_type": "bert", "max_position_embeddings": 512}, 128) == 128
    assert usable_seq_len({"model_type": "bert"}, 128) == 128


# -- teacher_finetune -------------------------------------------------------------------


def test_a_teacher_with_a_head_is_not_fine_tuned(headed_teacher, tiny_splits, tmp_path) -> None:
    callback = RecordingCallback()
    run = _prepared(make_spec(headed_teacher, tiny_splits, tmp_path), callback)
    before = cpu_state(run.teacher)
    assert finetune(run, None) == FinetunedTeacher()
    assert callback.phases == ["preparing"]
    assert _same_weights(cpu_state(run.teacher), before)


def test_fine_tuning_trains_scores_and_checkpoints_the_teacher(
    headless_teacher, tiny_splits, tmp_path
) -> None:
    callback = CheckpointingCallback(tmp_path / "kept")
    training = {"teacher_epochs": 2, "checkpoint_every_steps": 5}
    run = _prepared(make_spec(headless_teacher, tiny_splits, tmp_path, training=training), callback)
    before = cpu_state(run.teacher)
    done = finetune(run, None)
    assert callback.phases == ["preparing", "teacher_finetune"]
    assert done.curve and done.scores is not None and 0.0 <= done.scores.accuracy <= 1.0
    assert _same_weights(done.weights, cpu_state(run.teacher))
    assert not _same_weights(done.weights, before)
    assert done.scores == run.quality(run.teacher)
    stages = [c["stage"] for c in callback.saved]
    assert stages[-1] == "teacher_done" and set(stages[:-1]) == {"teacher_finetune"}
    last, problem = checkpoint.load(callback.saved[-1]["copy"], expected_fingerprint=FINGERPRINT)
    assert problem is None and last is not None
    assert last.teacher_scores == dataclasses.asdict(done.scores)
    assert last.teacher_curve == done.curve and _same_weights(last.teacher, done.weights)


def test_a_teacher_done_checkpoint_is_taken_as_it_is(
    headless_teacher, tiny_splits, tmp_path
) -> None:
    callback = RecordingCallback()
    run = _prepared(make_spec(headless_teacher, tiny_splits, tmp_path), callback)
    scores = dataclasses.replace(run.quality(run.teacher), accuracy=0.123)
    rng = {"cpu": torch.random.manual_seed(99).get_state()}
    torch.manual_seed(0)
    curve = [{"step": 5, "epoch": 1.0, "loss": 0.5}]
    resumed = RunState(
        stage="teacher_done",
        teacher=cpu_state(run.teacher),
        teacher_curve=curve,
        teacher_scores=dataclasses.asdict(scores),
        rng=rng,
    )
    done = finetune(run, resumed)
    assert done == FinetunedTeacher(curve=curve, scores=scores, weights=resumed.teacher)
    assert callback.phases == ["preparing"]
    # The data order and dropout of distillation go on from where they were.
    assert torch.equal(torch.get_rng_state(), rng["cpu"])


# -- pruning and distilling -------------------------------------------------------------


def test_the_rounds_prune_then_distil_a_student_and_leave_the_teacher_be(
    headed_teacher, tiny_splits, tmp_path
) -> None:
    callback = RecordingCallback()
    spec = make_spec(headed_teacher, tiny_splits, tmp_path, training={"epochs": 1})
    run = _prepared(spec, callback)
    teacher_before = cpu_state(run.teacher)
    student = prune_and_distill(run, FinetunedTeacher(), None)
    assert callback.phases == ["preparing", "pruning", "distilling"]
    assert student.model is not run.teacher
    assert 0.4 < student.achieved < 0.7
    assert student.rounds == [
        {
            "round": 1,
            "target_ratio": 0.5,
            "params_ratio": student.achieved,
            "structured": list(spec.pruning.structured),
            "epochs": 1,
            "layer_map": student.layer_map,
        }
    ]
    assert student.curve and {point["round"] for point in student.curve} == {1}
    assert student.pruning_plan["num_layers"] == len(student.layer_map)
    assert _same_weights(cpu_state(run.teacher), teacher_before)


def test_the_rounds_continue_from_a_distillation_checkpoint(
    headed_teacher, tiny_splits, tmp_path
) -> None:
    """Stopped mid-distillation and resumed on a fresh run: the same student, with no
    pruning redone."""
    training = {"epochs": 2, "checkpoint_every_steps": 5}
    spec = make_spec(headed_teacher, tiny_splits, tmp_path / "whole", training=training)
    kept = CheckpointingCallback(tmp_path / "kept")
    whole = prune_and_distill(_prepared(spec, kept), FinetunedTeacher(), None)
    copy_at_5 = next(c["copy"] for c in kept.saved if c["step"] == 5)
    resumed, problem = checkpoint.load(copy_at_5, expected_fingerprint=FINGERPRINT)
    assert problem is None and resumed is not None and resumed.distilling is not None
    assert resumed.distilling.round == 0 and resumed.step == 5

    callback = RecordingCallback()
    again = dataclasses.replace(spec, work_dir=tmp_path / "again" / "work")
    run = _prepared(again, callback, resumed=resumed)
    student = prune_and_distill(run, FinetunedTeacher(), resumed)
    assert callback.phases == ["preparing", "distilling"]
    assert _same_weights(cpu_state(student.model), cpu_state(whole.model), atol=1e-5)
    assert student.rounds == whole.rounds and student.pruning_plan == whole.pruning_plan
    assert [p["step"] for p in student.curve] == [p["step"] for p in whole.curve]


# -- evaluating, exporting, reporting ---------------------------------------------------


def _teacher_as_student(run: Run) -> Student:
    return Student.from_teacher(copy.deepcopy(run.teacher), speed=None)


def test_evaluating_scores_a_teacher_fine_tuning_did_not(
    headed_teacher, tiny_splits, tmp_path
) -> None:
    callback = RecordingCallback()
    run = _prepared(make_spec(headed_teacher, tiny_splits, tmp_path), callback)
    metrics = evaluate(run, FinetunedTeacher(), _teacher_as_student(run)).metrics
    assert callback.phases == ["preparing", "evaluating"]
    # The same weights on both sides: the same scores, whatever the timing says.
    assert metrics["teacher"]["accuracy"] == metrics["student"]["accuracy"]
    assert metrics["retention"] == 1.0 and metrics["params_ratio_non_embedding"] == 1.0
    assert metrics["teacher"]["latency_ms_cpu_bs1"] > 0 < metrics["student"]["latency_ms_cpu_bs1"]
    assert isinstance(metrics["warnings"], list)


def test_evaluating_takes_the_scores_fine_tuning_measured(
    headed_teacher, tiny_splits, tmp_path
) -> None:
    run = _prepared(make_spec(headed_teacher, tiny_splits, tmp_path))
    scores = dataclasses.replace(run.quality(run.teacher), accuracy=0.123)
    student = _teacher_as_student(run)
    metrics = evaluate(run, FinetunedTeacher(scores=scores), student).metrics
    assert metrics["teacher"]["accuracy"] == 0.123
    assert metrics["student"]["accuracy"] == run.quality(student.model).accuracy


def test_exporting_writes_a_student_that_reloads_to_the_same_logits(
    headed_teacher, tiny_splits, tmp_path
) -> None:
    callback = RecordingCallback()
    run = _prepared(make_spec(headed_teacher, tiny_splits, tmp_path), callback)
    diff = export(run, run.teacher)
    assert callback.phases == ["preparing", "exporting"] and "exporting" in run.timings
    assert (run.spec.output_dir / "model" / "model.safetensors").is_file()
    assert diff is not None and diff <= 1e-4


def test_reporting_writes_the_report_and_card_and_lists_every_artifact(
    headed_teacher, tiny_splits, tmp_path
) -> None:
    callback = RecordingCallback()
    run = _prepared(make_spec(headed_teacher, tiny_splits, tmp_path), callback)
    student = _teacher_as_student(run)
    student.curve = [{"step": 1, "epoch": 0.1, "loss": 0.7, "round": 1}]
    evaluation: Evaluation = evaluate(run, FinetunedTeacher(), student)
    result = report(run, FinetunedTeacher(), student, evaluation, reload_diff=0.25)
    written: dict[str, Any] = json.loads((run.spec.output_dir / "report.json").read_text())
    assert written["metrics"] == json.loads(json.dumps(evaluation.metrics))
    assert written["training"] == {"teacher_finetune": None, "distilling": student.curve}
    assert written["export"]["reload_max_abs_logit_diff"] == 0.25
    assert set(written["timings_s"]) == {"preparing", "evaluating"}
    assert written["data"]["max_seq_length"] == run.max_len
    artifacts = {a.name: a.path for a in result.artifacts}
    assert artifacts["model"] == run.spec.output_dir / "model"
    assert artifacts["report"].is_file() and artifacts["model-card"].is_file()
    assert result.metrics is evaluation.metrics
    assert callback.progress[-1] == 1.0
