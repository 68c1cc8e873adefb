"""Strategies as rounds of pruning and distillation: the round plans, and each strategy
end to end on a tiny teacher (resumable in any round)."""

from __future__ import annotations

import dataclasses
import itertools
import math
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, AutoModelForSequenceClassification

from app.jobspec.plan import Shape, ffn_floor
from tests.engine.conftest import RecordingCallback, make_spec
from tests.engine.test_checkpoint_resume import CheckpointingCallback, _max_diff, _weights
from workers.engine.compress import compress
from workers.engine.report import spec_summary
from workers.engine.spec import EngineInputError, EngineStopped, PruningSpec, TargetSpec
from workers.engine.strategies import FixedShape, plan_rounds


def _spec(strategy: str, epochs: int = 4, **overrides):
    return make_spec(
        Path("/nonexistent"),
        (Path("a"), Path("b")),
        Path("/tmp/x"),
        strategy=strategy,
        training={"epochs": epochs},
        **overrides,
    )


def test_prune_then_distill_is_one_round_with_the_whole_budget():
    (only,) = plan_rounds(_spec("prune_then_distill"))
    assert (only.ratio, only.epochs, only.zeroing) == (0.5, 4, None)


def test_distill_then_prune_is_layers_first_then_the_rest():
    first, second = plan_rounds(_spec("distill_then_prune", epochs=5))
    assert first.structured == ("layers",) and first.ratio == pytest.approx(math.sqrt(0.5))
    assert (first.epochs, second.epochs) == (3, 2)
    assert second.ratio == 0.5


def test_joint_removes_at_most_about_30_percent_per_round():
    rounds = plan_rounds(_spec("joint", epochs=6, params_ratio=0.25))
    assert len(rounds) == 4  # 0.7 ** 4 < 0.25 < 0.7 ** 3
    ratios = [1.0] + [r.ratio for r in rounds]
    assert all(b / a >= 0.7 - 1e-9 for a, b in itertools.pairwise(ratios))
    assert ratios[-1] == pytest.approx(0.25)
    assert sum(r.epochs for r in rounds) == 6


FIXED = FixedShape(Shape(6, 384, 384, 12, 12), ratio=0.5, depth_ratio=1.0)


def test_a_speed_plans_shape_is_the_last_rounds_target():
    (only,) = plan_rounds(_spec("prune_then_distill"), FIXED)
    assert (only.shape, only.ratio) == (FIXED.shape, 0.5)
    first, second = plan_rounds(_spec("distill_then_prune"), FIXED)
    # Six narrow layers cannot be cut from sqrt(0.5) of the teacher in whole layers (5).
    assert first.shape is None and first.ratio == 1.0 and first.structured == ("layers",)
    assert (second.shape, second.ratio) == (FIXED.shape, 0.5)
    with pytest.raises(EngineInputError):
        plan_rounds(_spec("joint"), FIXED)


def test_joint_has_no_more_rounds_than_epochs():
    assert len(plan_rounds(_spec("joint", epochs=2, params_ratio=0.25))) == 2


@pytest.mark.parametrize(
    ("strategy", "schedules"),
    [
        ("prune_then_distill", [("gradual", 0.5)]),
        ("distill_then_prune", [None, ("oneshot", 0.5)]),
        ("joint", [("gradual_full", 0.5)]),
    ],
)
def test_sparsity_targets_differ_in_when_weights_are_zeroed(strategy, schedules):
    rounds = plan_rounds(_spec(strategy, params_ratio=None, target=TargetSpec(sparsity=0.5)))
    got = [(r.zeroing.schedule, r.zeroing.target) if r.zeroing else None for r in rounds]
    assert got == schedules
    assert all(r.ratio == 1.0 for r in rounds)  # shapes kept: zeros, not removals
    last = rounds[-1].zeroing.config(90)
    if strategy == "distill_then_prune":
        assert (last.begin_step, last.end_step) == (0, 0)  # at once, then recovery
    elif strategy == "joint":
        assert last.end_step == 90
    else:
        assert last.end_step == 60


def test_how_single_weights_are_ranked_is_part_of_the_checkpoint_fingerprint():
    sparse = _spec("prune_then_distill", target=TargetSpec(sparsity=0.5), params_ratio=None)
    summary = spec_summary(sparse, {"model_type": "bert"})
    assert summary["pruning"]["weight_criterion"] == {"criterion": "taylor", "scope": "global"}
    by_magnitude = dataclasses.replace(sparse, pruning=PruningSpec(importance="magnitude"))
    assert spec_summary(by_magnitude, {})["pruning"]["weight_criterion"] == {
        "criterion": "magnitude",
        "scope": "per_matrix",
    }
    # Runs that zero no single weights keep the fingerprints they had.
    assert "weight_criterion" not in spec_summary(_spec("joint"), {})["pruning"]


def test_joint_round_floors_are_part_of_the_checkpoint_fingerprint():
    # A joint checkpoint from before later rounds kept the teacher's floors must not be
    # resumed into rounds planned by the new rule; other runs keep their fingerprints.
    assert spec_summary(_spec("joint"), {})["pruning"]["round_floors"] == "teacher"
    for strategy in ("prune_then_distill", "distill_then_prune"):
        assert "round_floors" not in spec_summary(_spec(strategy), {})["pruning"]


@pytest.mark.parametrize("strategy", ["distill_then_prune", "joint"])
def test_strategy_end_to_end(strategy, headless_teacher, tiny_splits, tmp_path):
    callback = RecordingCallback()
    spec = make_spec(
        headless_teacher,
        tiny_splits,
        tmp_path,
        strategy=strategy,
        params_ratio=0.3,
        pruning=PruningSpec(structured=("layers", "ffn")),
        training={"epochs": 4},
    )
    result = compress(spec, callback)
    metrics = result.metrics
    rounds = metrics["pruning_plan"]["rounds"]
    assert len(rounds) == len(plan_rounds(spec)) >= 2
    # Each round went further; the last reached the target (whole neurons: close to it).
    reached = [r["params_ratio"] for r in rounds]
    assert reached == sorted(reached, reverse=True)
    assert metrics["params_ratio_non_embedding"] == reached[-1]
    assert abs(reached[-1] - 0.3) < 0.05
    assert callback.phases.count("pruning") == len(rounds)
    assert callback.phases.count("distilling") == len(rounds)
    assert callback.progress == sorted(callback.progress) and callback.progress[-1] == 1.0
    model_dir = next(a.path for a in result.artifacts if a.name == "model")
    student = AutoModelForSequenceClassification.from_pretrained(model_dir, use_safetensors=True)
    assert student.config.num_hidden_layers == len(metrics["layer_map"])
    assert metrics["student"]["accuracy"] >= 0.9 * metrics["teacher"]["accuracy"]
    with torch.no_grad():
        assert all(p.isfinite().all() for p in student.parameters())
    # Rounds after the first plan against a student, with the teacher's floors.
    teacher_config = AutoConfig.from_pretrained(headless_teacher)
    assert student.config.intermediate_size >= ffn_floor(teacher_config.intermediate_size)
    narrowed = [r for r in rounds if "ffn_gradual_to" in r]
    if strategy == "joint":
        # joint narrows the FFN while it distils, then cuts the masked neurons away.
        assert narrowed
        assert student.config.intermediate_size == narrowed[-1]["ffn_gradual_to"]
        cut = [data for message, _, data in callback.logs if message.startswith("FFN narrowed")]
        assert [d["intermediate_size"] for d in cut] == [r["ffn_gradual_to"] for r in narrowed]
    else:
        assert not narrowed


@pytest.mark.parametrize("at_round", [1, 2])
def test_joint_resumed_in_any_round_ends_like_the_uninterrupted_run(
    at_round, headed_teacher, tiny_splits, tmp_path
):
    """A later round's student came from pruning a distilled one: the checkpoint must
    carry its shape, not redo the pruning. Mid-round, the FFN is half narrowed: the
    checkpoint carries the neuron masks (round 1, step 4 is inside its schedule)."""
    kwargs = {
        "strategy": "joint",
        "params_ratio": 0.3,
        "pruning": PruningSpec(structured=("layers", "ffn")),
        "training": {"epochs": 3, "checkpoint_every_steps": 4},
    }
    whole = compress(
        make_spec(headed_teacher, tiny_splits, tmp_path / "whole", **kwargs),
        CheckpointingCallback(tmp_path / "kept-whole"),
    )

    step = 4 if at_round == 1 else 8

    def stop_here(info: dict) -> bool:
        in_round = info["stage"] == "distilling" and info.get("round") == at_round
        return in_round and info["step"] == step

    first = CheckpointingCallback(tmp_path / "kept", stop_at=stop_here)
    with pytest.raises(EngineStopped):
        compress(make_spec(headed_teacher, tiny_splits, tmp_path / "first", **kwargs), first)
    saved = torch.load(first.saved[-1]["copy"], weights_only=True)
    assert saved["round"] == at_round - 1  # counted from 0 in the file
    if at_round == 1:
        masks = saved["neurons"]["masks"]
        width = int(masks[0].sum())
        assert 0 < width < masks[0].numel() and not saved["neurons"]["frozen"]
    resumed = compress(
        make_spec(
            headed_teacher,
            tiny_splits,
            tmp_path / "second",
            resume_from=first.saved[-1]["copy"],
            **kwargs,
        ),
        CheckpointingCallback(tmp_path / "kept-2"),
    )
    assert _max_diff(_weights(resumed), _weights(whole)) <= 1e-5
    assert resumed.metrics["pruning_plan"] == whole.metrics["pruning_plan"]
