"""A ``speedup`` target end to end on a tiny BERT: the student has the shape the speed
plan chose on this machine, the report says the target and whether the final timing
met it, and a resumed run prunes to the plan its checkpoint carries."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from app.jobspec.plan import shapes_allowed
from tests.engine.conftest import RecordingCallback, make_spec
from tests.engine.test_checkpoint_resume import CheckpointingCallback
from tests.engine.tiny_models import tiny_encoder, tiny_llama
from workers.engine.compress import compress
from workers.engine.layers import parameter_counts
from workers.engine.prune_layers import sizes_from_model
from workers.engine.spec import EngineStopped, LatencyPoint, PruningSpec, TargetSpec
from workers.engine.speed_target import shape_model


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
    run_dir = tmp_path_factory.mktemp("run-speed")
    spec = _speed_spec(
        headless_teacher,
        tiny_splits,
        run_dir,
        # Where a max_latency_ms sweep of 3 rows of 12 tokens reads its candidates.
        latency_point=LatencyPoint(batch_size=3, seq_len=12),
        # Its timings and steps through the host's lock, as a worker's are: one process
        # that times between its steps never waits for itself.
        host_lock=run_dir / "host.lock",
    )
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


def test_a_latency_point_times_both_models_there_in_the_targets_runtime(speed_run):
    _, result, _ = speed_run
    point = result.metrics["latency_point"]
    assert (point["runtime"], point["batch_size"], point["seq_len"]) == ("pytorch", 3, 12)
    assert point["speedup"] == pytest.approx(point["teacher_latency_ms"] / point["latency_ms"])
    # Three rows of 12 tokens, not the report's batch 1 or 32 of 32 tokens.
    assert point["latency_ms"] < result.metrics["student"]["latency_ms_cpu_bs32"]


def test_a_resumed_run_prunes_to_the_plan_its_checkpoint_carries(
    headless_teacher: Path, tiny_splits, tmp_path: Path
):
    """distill_then_prune stopped in its first round resumes, on a fresh work folder as
    on another worker, and prunes in its second round to the plan saved in the
    checkpoint: no timing of its own. The saved plan is edited to a shape this machine
    would not choose, so a plan made again could not pass for it."""
    first = CheckpointingCallback(
        tmp_path / "kept",
        stop_at=lambda info: info["stage"] == "distilling" and info.get("round") == 1,
    )
    training = {"epochs": 2, "checkpoint_every_steps": 4}
    spec = _speed_spec(
        headless_teacher,
        tiny_splits,
        tmp_path / "first",
        strategy="distill_then_prune",
        training=training,
    )
    with pytest.raises(EngineStopped):
        compress(spec, first)
    path = first.saved[-1]["copy"]
    saved = torch.load(path, weights_only=True)
    planned = saved["speed_plan"]
    assert planned is not None and planned["measured_speedup"] >= 1.6
    odd = {**planned, "shape": {**planned["shape"], "intermediate_size": 40}}
    torch.save({**saved, "speed_plan": odd}, path)

    callback = RecordingCallback()
    resumed = _speed_spec(
        headless_teacher,
        tiny_splits,
        tmp_path / "second",
        strategy="distill_then_prune",
        training=training,
        resume_from=path,
    )
    metrics = compress(resumed, callback).metrics
    assert metrics["student"]["intermediate_size"] == 40
    assert metrics["pruning_plan"]["speed_plan"]["shape"] == odd["shape"]
    assert any(m.startswith("speed plan (from the checkpoint)") for m, _, _ in callback.logs)


def test_a_given_speed_plan_is_trained_as_it_is_without_timing_shapes(
    speed_run, headless_teacher: Path, tiny_splits, tmp_path: Path
):
    """A sweep's repeat (app/sweeps/repeats.py): the shape its candidate's first
    training had, edited here to one this machine would not choose."""
    _, first, _ = speed_run
    planned = first.metrics["pruning_plan"]["speed_plan"]
    odd = {**planned, "shape": {**planned["shape"], "intermediate_size": 40}}
    callback = RecordingCallback()
    spec = _speed_spec(headless_teacher, tiny_splits, tmp_path / "again", speed_plan=odd)
    metrics = compress(spec, callback).metrics
    assert metrics["student"]["intermediate_size"] == 40
    assert metrics["pruning_plan"]["speed_plan"]["shape"] == odd["shape"]
    assert any(m.startswith("speed plan (from the job") for m, _, _ in callback.logs)


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


@pytest.mark.parametrize("family", ["bert", "llama"])
def test_each_timed_shape_is_the_model_a_plan_of_that_shape_builds(family):
    """What the planner times must be the student it would get: every allowed shape's
    random-weight model holds exactly the plan's non-embedding parameter count."""
    teacher = tiny_llama() if family == "llama" else tiny_encoder()
    sizes = sizes_from_model(teacher, parameter_counts(teacher).non_embedding)
    structured = ("layers", "ffn", "hidden") + (("heads",) if family == "llama" else ())
    shapes = shapes_allowed(sizes, structured)
    for shape in shapes[:: max(1, len(shapes) // 12)]:  # a spread, small to large
        model = shape_model(teacher, sizes, shape)
        assert parameter_counts(model).non_embedding == sizes.shape_params(shape), shape
