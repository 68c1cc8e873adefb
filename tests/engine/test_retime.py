"""Students timed again together with their teacher in one pass (a sweep's answer step):
in PyTorch from their folders, in ONNX Runtime int8 from their ``model.onnx``; the
fine-tuned teacher from its cache entry where it is at hand."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from tests.engine.conftest import RecordingCallback, make_spec
from tests.tiny import make_tiny_bert
from workers.engine import onnx_export as ox
from workers.engine.progress import Progress
from workers.engine.retime import retime
from workers.engine.teacher_cache import write_entry
from workers.engine.teacher_key import teacher_cache_key

# Deep against shallow, wide enough that a forward pass is more than Python overhead:
# the 1-layer student must come out faster than the 8-layer teacher in any runtime.
DEEP, SHALLOW, WIDTH = 8, 1, 128


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("retime")
    return {
        "teacher": make_tiny_bert(root / "teacher", num_labels=2, num_layers=DEEP, hidden=WIDTH),
        "shallow": make_tiny_bert(root / "shallow", num_labels=2, num_layers=SHALLOW, hidden=WIDTH),
        "same": make_tiny_bert(root / "same", num_labels=2, num_layers=DEEP, hidden=WIDTH, seed=3),
    }


def _spec(models: dict[str, Path], tiny_splits, tmp_path: Path):
    return make_spec(
        models["teacher"], tiny_splits, tmp_path, latency_budget_s=0.2, latency_threads=1
    )


def test_students_are_timed_beside_the_teacher_in_pytorch(models, tiny_splits, tmp_path):
    spec = _spec(models, tiny_splits, tmp_path)
    students = {"0": models["shallow"], "1": models["same"]}
    found = retime(
        spec, students, runtime="pytorch", batch_size=1, progress=Progress(RecordingCallback())
    )
    assert set(found.latency_ms) == {"0", "1"} and found.batch_size == 1
    assert found.teacher == "architecture" and found.teacher_ms > 0
    assert found.speedup["0"] == pytest.approx(found.teacher_ms / found.latency_ms["0"])
    assert found.speedup["0"] > 2.0 > found.speedup["1"]
    assert found.seq_len == spec.training.max_seq_length and found.threads == 1


def test_onnx_int8_students_are_timed_beside_the_teacher_quantized_the_same_way(
    models, tiny_splits, tmp_path
):
    from transformers import AutoModelForSequenceClassification

    spec = _spec(models, tiny_splits, tmp_path)
    students = {}
    for name in ("shallow",):
        loaded = AutoModelForSequenceClassification.from_pretrained(models[name])
        ids = torch.randint(1, 20, (2, 8))
        example = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
        folder = tmp_path / f"{name}-int8"
        ox.export_onnx(loaded, example, tmp_path / f"{name}-fp32" / ox.ONNX_FILE)
        ox.quantize_int8(tmp_path / f"{name}-fp32" / ox.ONNX_FILE, folder / ox.ONNX_FILE)
        students[name] = folder
    found = retime(
        spec,
        students,
        runtime="onnxruntime-int8",
        batch_size=32,
        progress=Progress(RecordingCallback()),
    )
    assert found.runtime == "onnxruntime-int8" and found.batch_size == 32
    assert set(found.latency_ms) == {"shallow"} and found.speedup["shallow"] > 2.0
    assert (spec.work_dir / "retime" / "teacher" / "model-int8.onnx").is_file()


def test_the_finetuned_teacher_is_read_from_its_cache_entry(models, tiny_splits, tmp_path):
    from transformers import AutoModelForSequenceClassification

    spec = _spec(models, tiny_splits, tmp_path)
    key = teacher_cache_key(spec, teacher_sha256="t" * 64, train_sha256="d" * 64)
    weights = AutoModelForSequenceClassification.from_pretrained(models["same"]).state_dict()
    entry = write_entry(
        tmp_path / "entry.safetensors",
        key=key,
        weights=weights,
        rng={"cpu": torch.get_rng_state()},
        curve=None,
        finetune_s=1.0,
    )
    cached = dataclasses.replace(spec, cached_teacher=entry, teacher_cache_key=key)
    callback = RecordingCallback()
    found = retime(
        cached,
        {"0": models["shallow"]},
        runtime="pytorch",
        batch_size=1,
        progress=Progress(callback),
    )
    assert found.teacher == "finetuned"
    # An entry made under another key is not used; the architecture is timed instead.
    other = dataclasses.replace(cached, teacher_cache_key="0" * 64)
    found = retime(
        other,
        {"0": models["shallow"]},
        runtime="pytorch",
        batch_size=1,
        progress=Progress(callback),
    )
    assert found.teacher == "architecture"
    assert any(level == "warning" and "another key" in msg for msg, level, _ in callback.logs)
