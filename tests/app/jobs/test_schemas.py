"""The request schema's target (app/jobs/schemas.py): the sweep kinds, their fields and
their defaults, as a request is validated before any service check runs."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.jobs.schemas import SweepBudget, Target
from app.jobspec import vocabulary


def test_a_min_retention_target_gets_its_runtime_and_budget():
    target = Target(min_retention=0.99)
    assert target.runtime == vocabulary.DEFAULT_RUNTIME
    assert target.budget == SweepBudget(candidates=6, max_seconds=None)
    # Latency fields are the latency target's alone.
    assert (target.batch_size, target.seq_len) == (None, None)


def test_a_latency_target_measures_at_batch_1_and_the_jobs_length_by_default():
    target = Target(max_latency_ms=5.0, runtime="onnxruntime-int8")
    assert (target.batch_size, target.seq_len, target.runtime) == (1, None, "onnxruntime-int8")
    assert target.budget is not None and target.budget.candidates == 6
    given = Target(max_latency_ms=20, batch_size=8, seq_len=64, budget={"candidates": 16})
    assert (given.batch_size, given.seq_len, given.budget.candidates) == (8, 64, 16)


def test_single_targets_carry_no_sweep_fields():
    target = Target(params_ratio=0.5)
    assert (target.budget, target.batch_size, target.runtime) == (None, None, None)
    assert Target(speedup=2.0).budget is None


@pytest.mark.parametrize(
    "fields",
    [
        {"min_retention": 0},
        {"min_retention": 1.001},
        {"max_latency_ms": -1},
        {"max_latency_ms": 5, "batch_size": 0},
        {"min_retention": 0.99, "budget": {"candidates": 1}},
        {"min_retention": 0.99, "budget": {"candidates": 17}},
        {"min_retention": 0.99, "budget": {"max_seconds": 10}},
        {"min_retention": 0.99, "budget": {"gpus": 2}},
        {"min_retention": 0.99, "max_latency_ms": 5},
        {"min_retention": 0.99, "seq_len": 64},
        {"speedup": 2.0, "budget": {"candidates": 4}},
    ],
)
def test_a_sweep_target_out_of_range_or_out_of_place_is_refused(fields):
    with pytest.raises(ValidationError):
        Target(**fields)
