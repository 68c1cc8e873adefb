"""compress() with a sparsity target: the student keeps the teacher's shape, the asked
fraction of its encoder weights is zero after export, and the report says so."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from tests.engine.conftest import RecordingCallback, make_spec
from workers.engine.compress import compress
from workers.engine.sparsity import sparsity_report
from workers.engine.spec import PruningSpec, TargetSpec


@pytest.mark.parametrize(
    ("sparsity", "pattern", "importance", "criterion", "scope"),
    [
        (0.8, "unstructured", "taylor", "taylor", "global"),
        (0.8, "unstructured", "magnitude", "magnitude", "per_matrix"),
        (0.8, "unstructured", "activation", "activation", "per_matrix"),
        (0.5, "2:4", "taylor", "taylor", "global"),
    ],
)
def test_sparsity_target_is_met_exactly_and_reported(
    sparsity: float,
    pattern: str,
    importance: str,
    criterion: str,
    scope: str,
    headless_teacher: Path,
    tiny_splits,
    tmp_path: Path,
) -> None:
    spec = make_spec(
        headless_teacher,
        tiny_splits,
        tmp_path,
        params_ratio=None,
        target=TargetSpec(sparsity=sparsity, pattern=pattern),
        pruning=PruningSpec(importance=importance),
        training={"epochs": 3},
    )
    result = compress(spec, RecordingCallback())
    model_dir = next(a.path for a in result.artifacts if a.name == "model")
    student = AutoModelForSequenceClassification.from_pretrained(model_dir, use_safetensors=True)
    measured = sparsity_report(student)
    assert abs(measured["sparsity"] - sparsity) <= 1 / measured["encoder_parameters"] * 24
    if pattern == "2:4":
        assert measured["groups_2_4"] == 1.0
    metrics = result.metrics
    report = metrics["sparsity"]
    assert report["pattern"] == pattern and report["target"] == sparsity
    assert (report["criterion"], report["scope"]) == (criterion, scope)
    assert report["student"]["encoder_nonzero"] == measured["encoder_nonzero"]
    teacher = report["teacher"]
    assert teacher["sparsity"] < 0.01  # a dense teacher, measured the same way
    assert report["student"]["gzip_size_bytes"] < teacher["gzip_size_bytes"]
    # Same shapes as the teacher: zeros, not removed parameters.
    assert metrics["student"]["num_parameters"] == metrics["teacher"]["num_parameters"]
    # Still a classifier that does the task (the tiny task is easy).
    assert metrics["teacher"]["accuracy"] >= 0.9
    assert metrics["student"]["accuracy"] >= 0.9 * metrics["teacher"]["accuracy"]
    with torch.no_grad():
        assert all(p.isfinite().all() for p in student.parameters())
