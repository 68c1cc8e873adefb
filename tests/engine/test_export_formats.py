"""Output formats (issue #20): ONNX fp32 and int8 students for both tasks, checked against
PyTorch, each scored and timed in ONNX Runtime beside the teacher in every runtime."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

from tests.engine.conftest import LABELS, RecordingCallback, make_spec
from tests.tiny import NER_LABELS, make_tiny_ner_bert, make_tiny_ner_dataset
from workers.engine import formats, onnx_export
from workers.engine.compress import compress
from workers.engine.spec import (
    CompressionResult,
    CompressionSpec,
    ExportCheckFailed,
    ExportSpec,
    PruningSpec,
)
from workers.engine.tasks import TOKEN_CLASSIFICATION

ALL = ("safetensors", "onnx", "onnx-int8")


@pytest.fixture(scope="module")
def seq_run(
    headless_teacher: Path, tiny_splits: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> tuple[CompressionSpec, CompressionResult]:
    spec = make_spec(
        headless_teacher,
        tiny_splits,
        tmp_path_factory.mktemp("formats-run"),
        export=ExportSpec(ALL),
    )
    return spec, compress(spec)


def _report(spec: CompressionSpec) -> dict:
    return json.loads((spec.output_dir / "report.json").read_text(encoding="utf-8"))


def test_every_format_is_its_own_artifact_with_tokenizer_and_config(seq_run) -> None:
    _, result = seq_run
    models = {a.name: a.path for a in result.artifacts if a.kind == "model"}
    assert list(models) == ["model", "model-onnx", "model-onnx-int8"]
    for name in ("model-onnx", "model-onnx-int8"):
        files = {p.name for p in models[name].iterdir()}
        assert {"model.onnx", "config.json", "tokenizer.json"} <= files, files
        assert not any(f.endswith(".pre.onnx") for f in files)
    # int8 weights: a fraction of the fp32 file.
    sizes = result.metrics["formats"]
    assert sizes["onnx-int8"]["size_bytes"] < 0.6 * sizes["onnx"]["size_bytes"]


def test_parity_is_recorded_and_within_bounds(seq_run) -> None:
    spec, result = seq_run
    parity = _report(spec)["export"]["parity"]
    assert parity["onnx"]["max_abs_logit_diff"] <= formats.FP32_MAX_LOGIT_DIFF
    assert parity["onnx"]["argmax_agreement"] == 1.0
    assert parity["onnx-int8"]["argmax_agreement"] >= formats.INT8_MIN_AGREEMENT
    assert parity["onnx"]["rows"] == 50  # every eval row of the tiny split
    assert result.metrics["formats"]["onnx"]["parity"] == parity["onnx"]


def test_formats_are_timed_against_the_teacher_in_each_runtime(seq_run) -> None:
    _, result = seq_run
    m = result.metrics
    teacher = m["teacher_runtimes"]
    assert set(teacher) == {"pytorch", "onnxruntime", "onnxruntime-int8"}
    assert teacher["pytorch"]["latency_ms_cpu_bs1"] == m["teacher"]["latency_ms_cpu_bs1"]
    for fmt, row in m["formats"].items():
        runtime = formats.RUNTIME[fmt]
        assert row["runtime"] == runtime
        for bs in (1, 32):
            mine = row[f"latency_ms_cpu_bs{bs}"]
            assert mine > 0
            assert row[f"speedup_cpu_bs{bs}"] == pytest.approx(
                teacher[runtime][f"latency_ms_cpu_bs{bs}"] / mine
            )
            assert row[f"speedup_vs_teacher_pytorch_cpu_bs{bs}"] == pytest.approx(
                teacher["pytorch"][f"latency_ms_cpu_bs{bs}"] / mine
            )
        assert row["retention"] == pytest.approx(row["accuracy"] / teacher["pytorch"]["accuracy"])
    # The PyTorch format is the report's student, timed in the same pass.
    assert m["formats"]["safetensors"]["latency_ms_cpu_bs1"] == m["student"]["latency_ms_cpu_bs1"]


def test_int8_artifact_runs_in_plain_onnxruntime_and_scores_as_reported(seq_run) -> None:
    spec, result = seq_run
    folder = next(a.path for a in result.artifacts if a.name == "model-onnx-int8")
    session = onnxruntime.InferenceSession(str(folder / "model.onnx"))
    tokenizer = AutoTokenizer.from_pretrained(folder)
    config = AutoConfig.from_pretrained(folder)
    rows = [json.loads(line) for line in spec.eval_file.read_text().splitlines()]
    correct = 0
    for row in rows:
        encoded = tokenizer(row["text"], truncation=True, max_length=32, return_tensors="np")
        (logits,) = session.run(["logits"], dict(encoded))
        correct += int(np.argmax(logits[0]) == row["label"])
        assert config.id2label[int(np.argmax(logits[0]))] in LABELS
    reported = result.metrics["formats"]["onnx-int8"]["accuracy"]
    # One row at a time quantizes activations per row, the report per batch: a row may
    # flip, no more.
    assert abs(correct / len(rows) - reported) <= 1 / len(rows) + 1e-9
    assert reported > 0.8  # the tiny task is learnt


def test_card_has_a_row_per_format(seq_run) -> None:
    spec, _ = seq_run
    card = (spec.output_dir / "README.md").read_text(encoding="utf-8")
    for fmt in ALL:
        assert f"| {fmt} |" in card
    assert "onnxruntime.InferenceSession" in card
    assert "![Formats: quality against latency](formats.png)" in card
    assert (spec.output_dir / "formats.png").stat().st_size > 1000


def test_export_without_safetensors_ships_no_pytorch_folder(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Token classification, int8 only."""
    root = tmp_path_factory.mktemp("ner-formats")
    teacher = make_tiny_ner_bert(root / "teacher", num_labels=None)
    splits = (
        make_tiny_ner_dataset(root / "train.jsonl", n=240, seed=0),
        make_tiny_ner_dataset(root / "eval.jsonl", n=60, seed=1),
    )
    spec = make_spec(
        teacher,
        splits,
        tmp_path,
        task=TOKEN_CLASSIFICATION,
        label_names=NER_LABELS,
        pruning=PruningSpec(structured=("layers", "ffn")),
        export=ExportSpec(("onnx-int8",)),
    )
    result = compress(spec)
    names = [a.name for a in result.artifacts]
    assert "model-onnx-int8" in names and "model" not in names and "model-onnx" not in names
    assert not (spec.output_dir / "model").exists()
    row = result.metrics["formats"]["onnx-int8"]
    assert set(result.metrics["formats"]) == {"onnx-int8"}
    assert 0.0 <= row["f1"] <= 1.0 and row["runtime"] == "onnxruntime-int8"
    report = _report(spec)
    assert report["export"]["parity"]["onnx-int8"]["argmax_agreement"] >= 0.9
    assert report["export"]["reload_max_abs_logit_diff"] is None
    session = onnxruntime.InferenceSession(str(spec.output_dir / "model-onnx-int8/model.onnx"))
    tokenizer = AutoTokenizer.from_pretrained(spec.output_dir / "model-onnx-int8")
    (logits,) = session.run(
        ["logits"], dict(tokenizer("alice visited paris .", return_tensors="np"))
    )
    assert logits.shape[-1] == len(NER_LABELS)


def test_parity_catches_a_model_that_is_not_the_one_exported(seq_run) -> None:
    spec, result = seq_run
    folder = {a.name: a.path for a in result.artifacts}
    trained = AutoModelForSequenceClassification.from_pretrained(folder["model"])
    session = onnx_export.session(folder["model-onnx"] / "model.onnx", threads=1)
    tokenizer = AutoTokenizer.from_pretrained(folder["model"])
    texts = [json.loads(line)["text"] for line in spec.eval_file.read_text().splitlines()]
    batch = dict(tokenizer(texts[:16], padding=True, return_tensors="pt"))
    # Dynamic axes: a padded batch of 16 and one row alone, neither the example's shape.
    assert [i.shape for i in session.get_inputs()] == [["batch", "seq"]] * 3
    alone = dict(tokenizer(texts[:1], return_tensors="pt"))
    assert onnx_export.parity(trained, session, [batch, alone]).max_abs_logit_diff < 1e-4
    with torch.no_grad():
        trained.classifier.weight.mul_(-1.0)
    found = onnx_export.parity(trained, session, [batch])
    assert found.max_abs_logit_diff > 0.1 and found.argmax_agreement < 0.9
    with pytest.raises(ExportCheckFailed) as caught:
        formats.check_parity("onnx", found)
    assert caught.value.code == "export_parity_failed"
    assert formats.check_parity("onnx-int8", dataclasses.replace(found, argmax_agreement=0.95))


def test_a_failed_parity_check_fails_the_job_naming_the_numbers(
    headless_teacher: Path,
    tiny_splits: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_export = onnx_export.export_onnx

    def broken_export(model, example, path):  # an exporter that gets the head wrong
        wrong = copy.deepcopy(model)
        with torch.no_grad():
            wrong.classifier.weight.mul_(-3.0)
        real_export(wrong, example, path)

    monkeypatch.setattr(onnx_export, "export_onnx", broken_export)
    spec = make_spec(
        headless_teacher,
        tiny_splits,
        tmp_path,
        training={"epochs": 1, "teacher_epochs": 3},
        export=ExportSpec(("safetensors", "onnx")),
    )
    with pytest.raises(ExportCheckFailed) as caught:
        compress(spec)
    error = caught.value
    assert error.code == "export_parity_failed"
    assert "onnx export" in error.message and "max |logit difference|" in error.message
    assert "argmax agreement" in error.message and "<= 0.001" in error.message


# ------------------------------------------------------- speed targets name the runtime


def test_the_planner_times_shapes_in_the_targets_runtime(
    headed_teacher: Path, tmp_path: Path
) -> None:
    """Shapes exported, quantized and run in ONNX Runtime int8: one layer of four is
    faster there, and a shape timed again is not exported again."""
    from workers.engine.layers import parameter_counts
    from workers.engine.progress import Progress
    from workers.engine.prune_layers import sizes_from_model
    from workers.engine.spec import NullCallback
    from workers.engine.speed_target import shape_timer
    from workers.engine.teacher import load_teacher, load_tokenizer

    teacher = load_teacher(headed_teacher, LABELS)
    sizes = sizes_from_model(teacher, parameter_counts(teacher).non_embedding)
    tokenizer = load_tokenizer(headed_teacher)
    measure = shape_timer(
        teacher,
        sizes,
        tokenizer,
        ["a good movie .", "the plot was dull and the acting bad ."],
        seq_len=32,
        threads=1,
        progress=Progress(NullCallback()),
        runtime="onnxruntime-int8",
        work_dir=tmp_path / "plan",
    )
    full = sizes.teacher_shape
    one_layer = dataclasses.replace(full, num_layers=1)
    ms_full, ms_one = measure([full, one_layer])
    assert 0 < ms_one < ms_full
    two_layers = dataclasses.replace(full, num_layers=2)
    assert len(measure([full, two_layers])) == 2
    exported = sorted(p.relative_to(tmp_path / "plan") for p in (tmp_path / "plan").rglob("*"))
    assert [str(p) for p in exported if p.suffix == ".onnx"] == [
        "shape0/int8.onnx",
        "shape1/int8.onnx",
        "shape2/int8.onnx",
    ]


def test_a_speedup_in_an_onnx_runtime_needs_that_format(headless_teacher, tiny_splits, tmp_path):
    from workers.engine.spec import EngineInputError, TargetSpec

    spec = make_spec(
        headless_teacher,
        tiny_splits,
        tmp_path,
        target=TargetSpec(speedup=1.5, runtime="onnxruntime-int8"),
        export=ExportSpec(("safetensors", "onnx")),
    )
    with pytest.raises(EngineInputError) as caught:
        compress(spec)
    assert caught.value.code == "speedup_runtime_not_exported"
    assert "'onnx-int8'" in caught.value.message


def test_a_speedup_target_in_int8_is_planned_and_judged_in_int8(
    headless_teacher, tiny_splits, tmp_path
):
    from workers.engine.spec import LatencyPoint, TargetSpec

    callback = RecordingCallback()
    spec = make_spec(
        headless_teacher,
        tiny_splits,
        tmp_path,
        target=TargetSpec(speedup=1.3, runtime="onnxruntime-int8"),
        # Layers alone: four shapes to export and time, not the dozens widths add.
        pruning=PruningSpec(structured=("layers",)),
        training={"epochs": 1},
        export=ExportSpec(("onnx-int8",)),
        latency_point=LatencyPoint(batch_size=2, seq_len=16),
    )
    result = compress(spec, callback)
    # Timed where a max_latency_ms sweep would read it: the int8 sessions, 2 x 16 tokens.
    point = result.metrics["latency_point"]
    assert (point["runtime"], point["batch_size"], point["seq_len"]) == ("onnxruntime-int8", 2, 16)
    assert point["latency_ms"] > 0 and point["teacher_latency_ms"] > 0
    verdict = result.metrics["speedup_target"]
    row = result.metrics["formats"]["onnx-int8"]
    assert verdict["runtime"] == "onnxruntime-int8"
    assert verdict["measured"] == row["speedup_cpu_bs1"]  # int8 student over int8 teacher
    assert verdict["met"] == (row["speedup_cpu_bs1"] >= 1.3)
    assert any(m.startswith("speed plan in onnxruntime-int8:") for m, _, _ in callback.logs)
    assert not (spec.work_dir / "speed-plan").exists()
    report = _report(spec)
    assert report["spec"]["target"]["runtime"] == "onnxruntime-int8"
    card = (spec.output_dir / "README.md").read_text(encoding="utf-8")
    assert "Speed-up target 1.3x at batch 1 in onnxruntime-int8" in card


# ------------------------------------------------------------- modelpress compress YAML


def test_a_spec_file_asks_for_formats_as_a_job_does(headed_teacher, tmp_path: Path) -> None:
    from tests.tiny import make_tiny_dataset
    from workers.compress_cli import SpecFileError, build_local_spec

    make_tiny_dataset(tmp_path / "data.jsonl", n=40, seed=0, label_names=LABELS)
    text = (
        f"task: sequence-classification\nteacher: {headed_teacher}\n"
        "dataset: {path: data.jsonl}\ntarget: {speedup: 1.5, runtime: onnxruntime-int8}\n"
        "export: {formats: [safetensors, onnx-int8]}\n"
    )
    (tmp_path / "spec.yaml").write_text(text, encoding="utf-8")
    spec = build_local_spec(tmp_path / "spec.yaml", tmp_path / "out", device="cpu")
    assert spec.export == ExportSpec(("safetensors", "onnx-int8"))
    assert spec.target.runtime == "onnxruntime-int8"

    (tmp_path / "bad.yaml").write_text(text.replace("onnx-int8]", "tflite]"), encoding="utf-8")
    with pytest.raises(SpecFileError) as caught:
        build_local_spec(tmp_path / "bad.yaml", tmp_path / "out2", device="cpu")
    assert any(m.startswith("export.formats[1]: ") for m in caught.value.messages)


@pytest.mark.parametrize("family", ["roberta", "electra", "llama"])
def test_each_listed_family_exports_with_dynamic_axes(family: str, tmp_path: Path) -> None:
    """vocabulary.ONNX_MODEL_TYPES lists these on the strength of this (BERT is the
    runs above): fp32 and int8 right at other batch sizes and lengths than the example's,
    batch 1 included (Llama pools the last real token, found from the pad id)."""
    from app.jobspec import vocabulary
    from tests.engine.int8_parity import assert_int8_close
    from tests.engine.tiny_models import random_batches, tiny_encoder, tiny_llama

    assert family in vocabulary.ONNX_MODEL_TYPES
    model = tiny_llama() if family == "llama" else tiny_encoder(family)
    onnx_export.export_onnx(model, random_batches(1, batch=4, length=10)[0], tmp_path / "m.onnx")
    onnx_export.quantize_int8(tmp_path / "m.onnx", tmp_path / "int8.onnx")
    others = [*random_batches(1, seed=1, batch=1, length=5), *random_batches(1, batch=7, length=23)]
    fp32 = onnx_export.parity(model, onnx_export.session(tmp_path / "m.onnx", threads=1), others)
    assert fp32.max_abs_logit_diff < 1e-4 and fp32.argmax_agreement == 1.0
    # Random logits tie closer than int8 rounding moves them: tests/engine/int8_parity.py.
    assert_int8_close(model, onnx_export.session(tmp_path / "int8.onnx", threads=1), others)


def test_a_model_past_the_inline_limit_keeps_its_weights_beside_the_onnx_file(
    monkeypatch, tmp_path: Path
) -> None:
    """Past INLINE_MAX_BYTES (1 GiB; 1 kB here) the weights go to model.onnx.data, in
    fp32 and in int8, and the folder still runs wherever it is moved (as a downloaded
    artifact is): ONNX Runtime finds the file by its name beside the model."""
    import shutil

    from tests.engine.int8_parity import assert_int8_close
    from tests.engine.tiny_models import random_batches, tiny_encoder

    monkeypatch.setattr(onnx_export, "INLINE_MAX_BYTES", 1000)
    model = tiny_encoder()
    made = tmp_path / "made"
    onnx_export.export_onnx(model, random_batches(1, batch=4, length=10)[0], made / "m.onnx")
    onnx_export.quantize_int8(made / "m.onnx", made / "int8.onnx")
    assert sorted(p.name for p in made.iterdir()) == [
        "int8.onnx",
        "int8.onnx.data",
        "m.onnx",
        "m.onnx.data",
    ]  # and no pre-processed copy left behind
    weights = sum(p.numel() * 4 for p in model.parameters())
    outside = (made / "m.onnx.data").stat().st_size
    assert outside > 0.9 * weights  # the few tensors of under 1 kB stay inline
    assert onnx_export.file_bytes(made / "m.onnx") == outside + (made / "m.onnx").stat().st_size

    moved = tmp_path / "elsewhere"
    shutil.copytree(made, moved)
    shutil.rmtree(made)
    others = [*random_batches(1, seed=1, batch=1, length=5), *random_batches(1, batch=7, length=23)]
    fp32 = onnx_export.parity(model, onnx_export.session(moved / "m.onnx", threads=1), others)
    assert fp32.max_abs_logit_diff < 1e-4 and fp32.argmax_agreement == 1.0
    assert_int8_close(model, onnx_export.session(moved / "int8.onnx", threads=1), others)


def test_a_job_past_the_inline_limit_ships_the_weights_file_in_its_artifact(
    headless_teacher: Path, tiny_splits: tuple[Path, Path], monkeypatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(onnx_export, "INLINE_MAX_BYTES", 1000)
    spec = make_spec(
        headless_teacher, tiny_splits, tmp_path / "run", export=ExportSpec(("onnx-int8",))
    )
    result = compress(spec)
    models = {a.name: a.path for a in result.artifacts if a.kind == "model"}
    assert (models["model-onnx-int8"] / "model.onnx.data").is_file()
    row = result.metrics["formats"]["onnx-int8"]
    assert row["parity"]["passed"]
    assert row["size_bytes"] == onnx_export.file_bytes(models["model-onnx-int8"] / "model.onnx")


def test_quantization_aware_distillation_trains_the_end_of_the_last_round_through_int8(
    seq_run, headless_teacher: Path, tiny_splits: tuple[Path, Path], tmp_path: Path
) -> None:
    """export.quantization_aware: the last half of the steps see int8 rounding; the job
    says from which step, ships plain fp32 modules, and its int8 artifact is the network
    the student trained as (the simulation equals the export: test_fake_quant.py).
    Compared with seq_run: the same spec but for the formats, without it."""
    from workers.engine.fake_quant import simulate

    spec = make_spec(
        headless_teacher,
        tiny_splits,
        tmp_path / "qat",
        export=ExportSpec(("safetensors", "onnx-int8"), quantization_aware=0.5),
    )
    callback = RecordingCallback()
    result = compress(spec, callback)
    qat = result.metrics["pruning_plan"]["quantization_aware"]
    steps = qat["steps"]
    assert qat["from_step"] == steps - round(0.5 * steps) + 1
    logged = [d for m, _, d in callback.logs if m.startswith("quantization-aware")]
    assert logged == [{"stage": "distilling", "quantization_aware_from_step": qat["from_step"]}]
    plain_spec, plain_result = seq_run
    assert plain_spec.export.quantization_aware == 0
    assert "quantization_aware" not in plain_result.metrics["pruning_plan"]
    student = AutoModelForSequenceClassification.from_pretrained(spec.output_dir / "model")
    plain = AutoModelForSequenceClassification.from_pretrained(plain_spec.output_dir / "model")
    # Same seed, same shape: only the int8 steps made the weights differ.
    assert any(
        not torch.equal(a, b)
        for a, b in zip(student.state_dict().values(), plain.state_dict().values(), strict=True)
    )
    session = onnx_export.session(
        spec.output_dir / "model-onnx-int8" / onnx_export.ONNX_FILE, threads=1
    )
    tokenizer = AutoTokenizer.from_pretrained(spec.output_dir / "model")
    batch = dict(tokenizer(["a good film", "not good at all"], return_tensors="pt", padding=True))
    simulate(student.eval())
    for row in range(2):
        one = {k: v[row : row + 1] for k, v in batch.items()}
        with torch.no_grad():
            expected = student(**one).logits
        assert (onnx_export.ort_logits(session, one) - expected).abs().max() < 1e-4


def test_quantization_aware_needs_the_int8_export(
    headless_teacher: Path, tiny_splits: tuple[Path, Path], tmp_path: Path
) -> None:
    from workers.engine.spec import EngineInputError
    from workers.engine.validate import validate_spec

    spec = make_spec(
        headless_teacher,
        tiny_splits,
        tmp_path,
        export=ExportSpec(("safetensors", "onnx"), quantization_aware=0.2),
    )
    with pytest.raises(EngineInputError) as info:
        validate_spec(spec)
    assert info.value.code == "quantization_aware_without_int8"
