"""A ``speedup`` target end to end on a tiny BERT: the student has the shape the speed
plan chose on this machine, the report says the target and whether the final timing
met it, and a resumed run prunes to the plan its first run saved."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import AutoModelForSequenceClassification

from tests.engine.conftest import RecordingCallback, make_spec
from workers.engine.compress import compress
from workers.engine.layers import parameter_counts
from workers.engine.plan import Shape
from workers.engine.progress import Progress
from workers.engine.spec import PruningSpec, TargetSpec
from workers.engine.speed_plan import LatencyFit, SpeedPlan
from workers.engine.speed_target import PLAN_FILE, speed_target
from workers.engine.tasks import get_task
from workers.engine.teacher import load_teacher, load_tokenizer


def _speed_spec(teacher: Path, splits, run_dir: Path, **overrides):
    return make_spec(
        teacher,
        splits,
        run_dir,
        params_ratio=None,
        target=TargetSpec(speedup=1.6),
        pruning=PruningSpec(structured=("layers", "ffn")),
        **overrides,
    )


@pytest.fixture(scope="module")
def speed_run(headless_teacher: Path, tiny_splits, tmp_path_factory):
    callback = RecordingCallback()
    spec = _speed_spec(headless_teacher, tiny_splits, tmp_path_factory.mktemp("run-speed"))
    return spec, compress(spec, callback), callback


def test_the_student_has_the_planned_shape_and_reloads(speed_run):
    spec, result, _ = speed_run
    speed = result.metrics["pruning_plan"]["speed_plan"]
    assert speed["target_speedup"] == 1.6 and speed["measured_speedup"] >= 1.6
    student = AutoModelForSequenceClassification.from_pretrained(spec.output_dir / "model")
    assert student.config.num_hidden_layers == speed["shape"]["num_layers"]
    assert student.config.intermediate_size == speed["shape"]["intermediate_size"]
    teacher = result.metrics["teacher"]["non_embedding_parameters"]
    assert parameter_counts(student).non_embedding < teacher
    assert result.metrics["params_ratio_non_embedding"] == pytest.approx(
        parameter_counts(student).non_embedding / teacher
    )


def test_the_report_says_whether_the_final_timing_met_the_target(speed_run):
    _, result, callback = speed_run
    verdict = result.metrics["speedup_target"]
    assert verdict["target"] == 1.6
    assert verdict["measured"] == result.metrics["speedup_cpu_bs1"]
    assert verdict["met"] == (result.metrics["speedup_cpu_bs1"] >= 1.6)
    assert any(m.startswith("speed plan:") for m, _, _ in callback.logs)
    assert callback.phases.count("pruning") == 1  # the plan is part of the pruning phase
    card = (speed_run[0].output_dir / "README.md").read_text()
    assert f"Speed-up target 1.6x at batch 1: {'met' if verdict['met'] else 'NOT met'}" in card


def _saved_plan(shape: Shape) -> dict:
    plan = SpeedPlan(shape, 1.6, 1.7, 1.65, LatencyFit(0.1, 0.2, 0.3), 1, 1, 32)
    return plan.as_dict()


def test_a_resumed_run_prunes_to_the_plan_its_first_run_saved(
    headless_teacher: Path, tiny_splits, tmp_path: Path
):
    spec = _speed_spec(headless_teacher, tiny_splits, tmp_path)
    task = get_task(spec.task)
    teacher = load_teacher(headless_teacher, spec.label_names, task)
    tokenizer = load_tokenizer(headless_teacher, task)
    # A shape no timing on this machine would choose: if it comes back, nothing was timed.
    odd = Shape(num_layers=2, hidden_size=32, intermediate_size=40, num_heads=4, num_kv_heads=4)
    spec.work_dir.mkdir(parents=True)
    (spec.work_dir / PLAN_FILE).write_text(
        json.dumps({"fingerprint": "abc", "plan": _saved_plan(odd)})
    )

    def plan(fingerprint: str, resumed: bool):
        speed, fixed = speed_target(
            spec,
            teacher,
            tokenizer,
            ["a b c"],
            seq_len=32,
            fingerprint=fingerprint,
            resumed=resumed,
            progress=Progress(RecordingCallback()),
        )
        return speed, fixed

    speed, fixed = plan("abc", resumed=True)
    assert speed.shape == odd and fixed.shape == odd
    assert fixed.depth_ratio > fixed.ratio  # two full-width layers hold more
    # Another spec's plan, or a fresh run, is measured again (and saved for its resume).
    for fingerprint, resumed in (("other", True), ("abc", False)):
        speed, _ = plan(fingerprint, resumed)
        assert speed.shape != odd and speed.measured_speedup >= 1.6
        saved = json.loads((spec.work_dir / PLAN_FILE).read_text())
        assert saved == {"fingerprint": fingerprint, "plan": speed.as_dict()}


def test_distill_then_prune_ends_in_the_planned_shape(
    headless_teacher: Path, tiny_splits, tmp_path: Path
):
    spec = _speed_spec(headless_teacher, tiny_splits, tmp_path, strategy="distill_then_prune")
    metrics = compress(spec, RecordingCallback()).metrics
    shape = metrics["pruning_plan"]["speed_plan"]["shape"]
    first, second = metrics["pruning_plan"]["rounds"]
    assert first["structured"] == ["layers"] and len(first["layer_map"]) >= shape["num_layers"]
    assert len(second["layer_map"]) == shape["num_layers"]
    assert metrics["student"]["num_layers"] == shape["num_layers"]
    assert metrics["student"]["intermediate_size"] == shape["intermediate_size"]
