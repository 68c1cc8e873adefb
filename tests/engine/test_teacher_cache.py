"""A fine-tuned teacher kept under its key (teacher_key.py, teacher_cache.py) and taken by
a later run with the same key instead of fine-tuning again, on a tiny BERT on CPU."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from tests.engine.conftest import RecordingCallback, make_spec
from tests.engine.test_checkpoint_resume import CheckpointingCallback
from workers.engine.checkpoint import rng_state
from workers.engine.compress import compress
from workers.engine.spec import (
    CompressionResult,
    CompressionSpec,
    DistillationSpec,
    EngineStopped,
    PruningSpec,
    TargetSpec,
)
from workers.engine.teacher import load_teacher
from workers.engine.teacher_cache import UnusableEntry, load_weights, read_entry, write_entry
from workers.engine.teacher_key import teacher_cache_key

DIGESTS = {"teacher_sha256": "a" * 64, "train_sha256": "b" * 64}


class KeepingCallback(RecordingCallback):
    """Keeps the entry a run offers, as the worker's callback uploads it."""

    def __init__(self, keep_in: Path) -> None:
        super().__init__()
        self.keep_in = keep_in
        self.offered: list[dict[str, Any]] = []

    def on_teacher_finetuned(self, path: Path, info: dict[str, Any]) -> None:
        self.offered.append(info)
        shutil.copyfile(path, self.keep_in)


def _spec(folder: Path, splits, run_dir: Path, **overrides: Any) -> CompressionSpec:
    spec = make_spec(folder, splits, run_dir, pruning=PruningSpec(structured=("layers",)))
    key = teacher_cache_key(spec, **DIGESTS)
    return dataclasses.replace(spec, teacher_cache_key=key, **overrides)


# -- the key ----------------------------------------------------------------------------


def _key(spec: CompressionSpec, **digests: str) -> str:
    return teacher_cache_key(spec, **{**DIGESTS, **digests})


@pytest.mark.parametrize(
    "change",
    [
        {"teacher_sha256": "c" * 64},
        {"train_sha256": "d" * 64},
        {"task": "token-classification"},
        {"label_names": ("positive", "negative")},
        {"label_names": ("negative", "positive", "neutral")},
        {"training.max_seq_length": 64},
        {"training.teacher_epochs": 9},
        {"training.teacher_learning_rate": 1e-4},
        {"training.batch_size": 8},
        {"training.seed": 1},
        {"device": "cuda"},
    ],
    ids=lambda change: next(iter(change)),
)
def test_each_setting_that_changes_the_teachers_weights_changes_the_key(change, tmp_path):
    spec = make_spec(Path("t"), (Path("a"), Path("b")), tmp_path)
    name, value = next(iter(change.items()))
    if name.endswith("sha256"):
        assert _key(spec, **change) != _key(spec)
        return
    if name.startswith("training."):
        changed = dataclasses.replace(
            spec, training=dataclasses.replace(spec.training, **{name[9:]: value})
        )
    else:
        changed = dataclasses.replace(spec, **{name: value})
    assert _key(changed) != _key(spec)


@pytest.mark.parametrize(
    "change",
    [
        {"target": TargetSpec(params_ratio=0.25)},
        {"target": TargetSpec(speedup=2.0)},
        {"strategy": "joint"},
        {"pruning": PruningSpec(structured=("layers", "ffn"), importance="magnitude")},
        {"distillation": DistillationSpec(alpha=0.9, temperature=4.0)},
        {"training.epochs": 7},
        {"training.student_seed": 3},
        {"training.learning_rate": 1e-3},
        {"training.checkpoint_every_steps": 5},
        {"training.devices": 2},
        {"training.gradient_accumulation_steps": 2},
        {"training.cache_teacher_logits": True},
        {"latency_threads": 4},
        {"eval_file": Path("other-eval.jsonl")},
        {"teacher_dir": Path("elsewhere")},
    ],
    ids=lambda change: next(iter(change)),
)
def test_what_only_the_student_depends_on_keeps_the_key(change, tmp_path):
    spec = make_spec(Path("t"), (Path("a"), Path("b")), tmp_path)
    name, value = next(iter(change.items()))
    if name.startswith("training."):
        changed = dataclasses.replace(
            spec, training=dataclasses.replace(spec.training, **{name[9:]: value})
        )
    else:
        changed = dataclasses.replace(spec, **{name: value})
    assert _key(changed) == _key(spec)


# -- the entry --------------------------------------------------------------------------


def test_an_entry_reads_back_as_written_and_only_under_its_key(headless_teacher, tmp_path):
    weights = {
        k: v.clone() for k, v in load_teacher(headless_teacher, ("a", "b")).state_dict().items()
    }
    rng = rng_state()
    path = write_entry(
        tmp_path / "e.safetensors",
        key="k1",
        weights=weights,
        rng=rng,
        curve=[{"step": 1.0, "loss": 0.5}],
        finetune_s=3.25,
    )
    entry = read_entry(path, key="k1")
    assert entry.weights.keys() == weights.keys()
    assert all(torch.equal(entry.weights[k], weights[k]) for k in weights)
    assert torch.equal(entry.rng["cpu"], rng["cpu"])
    assert (entry.curve, entry.finetune_s) == ([{"step": 1.0, "loss": 0.5}], 3.25)
    with pytest.raises(UnusableEntry, match="another key"):
        read_entry(path, key="k2")
    (tmp_path / "junk").write_bytes(b"not a safetensors file")
    with pytest.raises(UnusableEntry, match="could not be read"):
        read_entry(tmp_path / "junk", key="k1")


def test_an_entry_of_another_teacher_is_refused_before_anything_is_loaded(headless_teacher):
    teacher = load_teacher(headless_teacher, ("a", "b"))
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    other = {k: torch.zeros_like(v) for k, v in before.items()}
    other["classifier.weight"] = torch.zeros(3, before["classifier.weight"].shape[1])
    with pytest.raises(UnusableEntry, match="does not fit"):
        load_weights(teacher, other)
    assert all(torch.equal(teacher.state_dict()[k], v) for k, v in before.items())


# -- a run that keeps its teacher, then one that takes it -------------------------------


@pytest.fixture(scope="module")
def kept(headless_teacher, tiny_splits, tmp_path_factory) -> tuple[CompressionResult, Path, Path]:
    root = tmp_path_factory.mktemp("kept")
    callback = KeepingCallback(root / "entry.safetensors")
    spec = _spec(headless_teacher, tiny_splits, root / "run")
    result = compress(spec, callback)
    assert len(callback.offered) == 1 and callback.offered[0]["key"] == spec.teacher_cache_key
    assert len(_finetune_epochs(callback)) == spec.training.teacher_epochs
    return result, root / "entry.safetensors", spec.output_dir


def _finetune_epochs(callback: RecordingCallback) -> list[dict[str, Any]]:
    return [
        d for *_, d in callback.logs if d and d.get("stage") == "teacher_finetune" and "epoch" in d
    ]


def _timings(output_dir: Path) -> dict[str, float]:
    return json.loads((output_dir / "report.json").read_text())["timings_s"]


def test_a_run_with_the_kept_teacher_skips_fine_tuning_and_trains_the_same_student(
    kept, headless_teacher, tiny_splits, tmp_path
):
    first, entry, first_out = kept
    callback = KeepingCallback(tmp_path / "not-offered")
    spec = _spec(headless_teacher, tiny_splits, tmp_path / "run", cached_teacher=entry)
    second = compress(spec, callback)

    assert callback.offered == []  # nothing new to keep
    assert (first.metrics["teacher_cached"], second.metrics["teacher_cached"]) == (False, True)
    assert second.metrics["teacher_finetuned"] is True
    # What the cache saved: the first run's fine-tuning time, reported by the second.
    assert second.metrics["teacher_finetune_s"] == first.metrics["teacher_finetune_s"] > 0
    assert _timings(spec.output_dir)["teacher_finetune"] < _timings(first_out)["teacher_finetune"]
    reused = [d for _, _, d in callback.logs if d and d.get("teacher_cached") is True]
    assert len(reused) == 1 and reused[0]["teacher_cache_key"] == spec.teacher_cache_key
    assert _finetune_epochs(callback) == []
    # The same teacher, the same generators after it: the same student, weight for weight.
    assert second.metrics["teacher"]["accuracy"] == first.metrics["teacher"]["accuracy"]
    assert second.metrics["student"]["accuracy"] == first.metrics["student"]["accuracy"]
    a = load_file(str(first_out / "model" / "model.safetensors"))
    b = load_file(str(spec.output_dir / "model" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_another_student_seed_keeps_the_teacher_and_trains_another_student(
    kept, headless_teacher, tiny_splits, tmp_path
):
    # What a sweep's repeat of a candidate is (app/sweeps/repeats.py): the kept teacher,
    # the student trained on other draws.
    first, entry, first_out = kept
    spec = _spec(headless_teacher, tiny_splits, tmp_path / "run", cached_teacher=entry)
    spec = dataclasses.replace(spec, training=dataclasses.replace(spec.training, student_seed=1))
    assert _key(spec) == spec.teacher_cache_key  # the key the entry was kept under
    callback = KeepingCallback(tmp_path / "not-offered")
    second = compress(spec, callback)

    assert second.metrics["teacher_cached"] is True and _finetune_epochs(callback) == []
    assert second.metrics["teacher"]["accuracy"] == first.metrics["teacher"]["accuracy"]
    a = load_file(str(first_out / "model" / "model.safetensors"))
    b = load_file(str(spec.output_dir / "model" / "model.safetensors"))
    assert a.keys() == b.keys()
    assert any(not torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_an_entry_of_another_key_is_ignored_with_a_warning_and_the_teacher_fine_tuned(
    kept, headless_teacher, tiny_splits, tmp_path
):
    _, entry, _ = kept
    callback = KeepingCallback(tmp_path / "offered")
    spec = _spec(headless_teacher, tiny_splits, tmp_path / "run", cached_teacher=entry)
    spec = dataclasses.replace(
        spec, teacher_cache_key="0" * 64, target=TargetSpec(params_ratio=0.25)
    )
    result = compress(spec, callback)
    assert result.metrics["teacher_cached"] is False
    assert any(level == "warning" and "another key" in m for m, level, _ in callback.logs)
    assert [o["key"] for o in callback.offered] == ["0" * 64]


def test_teacher_cache_false_neither_takes_nor_offers(
    kept, headless_teacher, tiny_splits, tmp_path
):
    _, entry, _ = kept
    callback = KeepingCallback(tmp_path / "offered")
    spec = _spec(headless_teacher, tiny_splits, tmp_path / "run", cached_teacher=entry)
    spec = dataclasses.replace(
        spec, training=dataclasses.replace(spec.training, teacher_cache=False, epochs=1)
    )
    result = compress(spec, callback)
    assert result.metrics["teacher_cached"] is False and callback.offered == []


def test_a_run_stopped_in_fine_tuning_resumes_from_the_kept_teacher(
    kept, headless_teacher, tiny_splits, tmp_path
):
    """Killed while fine-tuning, before another job kept the same teacher: the next
    attempt takes the kept teacher instead of finishing the fine-tuning."""
    _, entry, first_out = kept
    stopped = CheckpointingCallback(tmp_path / "kept", stop_at=("teacher_finetune", 5))
    spec = _spec(headless_teacher, tiny_splits, tmp_path / "a")
    spec = dataclasses.replace(
        spec, training=dataclasses.replace(spec.training, checkpoint_every_steps=5)
    )
    with pytest.raises(EngineStopped):
        compress(spec, stopped)
    callback = KeepingCallback(tmp_path / "not-offered")
    resumed = dataclasses.replace(
        spec,
        work_dir=tmp_path / "b" / "work",
        output_dir=tmp_path / "b" / "out",
        resume_from=stopped.saved[-1]["copy"],
        cached_teacher=entry,
    )
    result = compress(resumed, callback)
    assert result.metrics["teacher_cached"] is True and callback.offered == []
    assert any(m.startswith("resuming from") for m, _, _ in callback.logs)
    assert _finetune_epochs(callback) == []
    a = load_file(str(first_out / "model" / "model.safetensors"))
    b = load_file(str(resumed.output_dir / "model" / "model.safetensors"))
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
