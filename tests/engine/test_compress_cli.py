"""``modelpress compress SPEC.yaml --out DIR``: the spec file's checks in process, and the
command end to end on a tiny model in a subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from tests.engine.conftest import LABELS
from tests.tiny import make_tiny_bert, make_tiny_dataset
from workers.compress_cli import (
    EXIT_INPUT,
    EXIT_STOPPED,
    SpecFileError,
    TerminalCallback,
    build_local_spec,
    results_table,
)
from workers.engine.plots import COMPARISON_PNG, TRAINING_CURVES_PNG

MODELPRESS = Path(sys.executable).with_name("modelpress")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ROWS = 100
SPEC = """\
task: sequence-classification
teacher: teacher
dataset: {path: data.jsonl}
target: {params_ratio: 0.5}
distillation: {hidden_states: false}
training: {epochs: 1, batch_size: 16, learning_rate: 0.002, max_seq_length: 24}
"""


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli")
    # A headed teacher: no fine-tuning stage, so the run stays short.
    make_tiny_bert(root / "teacher", num_labels=2, num_layers=4, seed=1)
    make_tiny_dataset(root / "data.jsonl", n=ROWS, seed=0, label_names=LABELS)
    (root / "spec.yaml").write_text(SPEC, encoding="utf-8")
    return root


def _modelpress(workspace: Path, *args: str) -> list[str]:
    assert MODELPRESS.exists(), f"{MODELPRESS} missing: pip install -e . to create it"
    return [str(MODELPRESS), "compress", *args]


def _env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


@pytest.fixture(scope="module")
def cli_run(workspace: Path) -> subprocess.CompletedProcess[str]:
    # Relative paths throughout: the spec's are resolved against the spec file.
    command = _modelpress(
        workspace, "spec.yaml", "--out", "out", "--device", "cpu", "--latency-threads", "1"
    )
    return subprocess.run(
        command, cwd=workspace, env=_env(), capture_output=True, text=True, timeout=300
    )


def test_cli_compresses_end_to_end(
    workspace: Path, cli_run: subprocess.CompletedProcess[str]
) -> None:
    assert cli_run.returncode == 0, cli_run.stderr[-3000:]
    out = workspace / "out"
    metrics = json.loads((out / "report.json").read_text(encoding="utf-8"))["metrics"]
    table = cli_run.stdout
    for label in ("Accuracy", "Macro-F1", "Parameters", "Size on disk", "CPU latency bs1"):
        assert label in table
    assert "CPU latency bs32" in table and "CPU speed-up" in table and "Retention" in table
    # The table shows the report's numbers, teacher and student.
    assert f"{metrics['teacher']['num_parameters']:,}" in table
    assert f"{metrics['student']['num_parameters']:,}" in table
    assert f"{metrics['speedup_cpu_bs1']:.2f}x at batch 1" in table

    model = AutoModelForSequenceClassification.from_pretrained(
        out / "model", use_safetensors=True, trust_remote_code=False
    )
    assert model.config.num_hidden_layers < 4
    assert model.config.id2label == dict(enumerate(LABELS))
    with torch.inference_mode():
        assert model(input_ids=torch.tensor([[2, 10, 3]])).logits.shape == (1, 2)

    assert (out / "README.md").is_file()
    for name in (TRAINING_CURVES_PNG, COMPARISON_PNG):
        assert (out / name).read_bytes()[:8] == PNG_MAGIC
    # The upload's split: a seeded 10% held out, every row in one split or the other.
    train = (out / "data" / "train.jsonl").read_text(encoding="utf-8").splitlines()
    held_out = (out / "data" / "validation.jsonl").read_text(encoding="utf-8").splitlines()
    assert (len(train), len(held_out)) == (ROWS - ROWS // 10, ROWS // 10)
    assert not (out / "work").exists()
    # The progress bar and the engine's log lines go to stderr, not into the table.
    assert "distilling" in cli_run.stderr
    assert "distilling" not in table


def test_a_bad_key_exits_2_naming_it(workspace: Path) -> None:
    bad = workspace / "bad.yaml"
    bad.write_text(SPEC.replace("epochs: 1", "epoch: 1"), encoding="utf-8")
    result = subprocess.run(
        _modelpress(workspace, str(bad), "--out", str(workspace / "bad-out")),
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == EXIT_INPUT
    assert "training.epoch: unknown key; allowed here: epochs" in result.stderr
    assert not (workspace / "bad-out").exists()


def test_ctrl_c_stops_the_run(workspace: Path) -> None:
    process = subprocess.Popen(
        _modelpress(workspace, "spec.yaml", "--out", "stopped", "--device", "cpu"),
        cwd=workspace,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        # The engine's first log line: the run is under way with our handler installed.
        deadline = time.monotonic() + 120
        seen = ""
        while "loaded bert teacher" not in seen and time.monotonic() < deadline:
            line = process.stderr.readline()
            if not line:
                break
            seen += line
        assert "loaded bert teacher" in seen
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == EXIT_STOPPED
    assert "stopped: stopped on request" in stderr
    assert not (workspace / "stopped" / "report.json").exists()


def test_second_interrupt_aborts() -> None:
    callback = TerminalCallback()
    try:
        assert not callback.should_stop()
        callback.interrupt(signal.SIGINT, None)
        assert callback.should_stop()
        with pytest.raises(KeyboardInterrupt):
            callback.interrupt(signal.SIGINT, None)
    finally:
        callback.close()


def _spec_errors(workspace: Path, tmp_path: Path, text: str) -> list[str]:
    spec = workspace / f"case-{tmp_path.name}.yaml"
    spec.write_text(text, encoding="utf-8")
    with pytest.raises(SpecFileError) as caught:
        build_local_spec(spec, tmp_path / "out", device="cpu")
    return caught.value.messages


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("target: {params_ratio: 0.5}", "target: {params_ratio: 0.5, sparsity: 0.5}"),
         "target: give exactly one of params_ratio, sparsity, speedup, min_retention or "
         "max_latency_ms"),
        (("training: {", "accelerator: gpu\ntraining: {"),
         "accelerator: unknown key; allowed here: teacher, dataset"),
        (("{path: data.jsonl}", "{path: data.jsonl, eval: x.jsonl}"),
         "dataset: give either path, or train and eval, not both"),
        (("{path: data.jsonl}", "{path: data.jsonl, eval_split: test}"),
         "dataset.eval_split: the file has no split 'test'; it has ['train', 'validation']"),
        (("{path: data.jsonl}", "{path: nowhere.jsonl}"), "dataset.path: no such file"),
        (("{path: data.jsonl}", "{path: spec.yaml}"), "dataset.format: cannot tell the format"),
        (("teacher: teacher", "teacher: ."), "teacher: "),
        (("task: sequence-classification", "task: causal-lm"),
         "task: Input should be 'sequence-classification' or 'token-classification'"),
        (("training: {", "label_names: [good, bad]\ntraining: {"),
         "(the label names are those of label_names)"),
    ],
)  # fmt: skip
def test_spec_file_errors_name_the_key(
    workspace: Path, tmp_path: Path, change: tuple[str, str], expected: str
) -> None:
    assert change[0] in SPEC
    messages = _spec_errors(workspace, tmp_path, SPEC.replace(*change))
    assert any(expected in m for m in messages), messages
    if "label_names" in change[1]:
        assert messages[0].startswith("dataset.path: data.jsonl: ") and "'negative'" in messages[0]


def test_separate_train_and_eval_files_keep_every_row(workspace: Path, tmp_path: Path) -> None:
    make_tiny_dataset(workspace / "a.jsonl", n=40, seed=1, label_names=LABELS)
    make_tiny_dataset(workspace / "b.jsonl", n=7, seed=2, label_names=LABELS)
    text = SPEC.replace("{path: data.jsonl}", "{train: a.jsonl, eval: b.jsonl}")
    spec_file = workspace / "pair.yaml"
    spec_file.write_text(text, encoding="utf-8")
    spec = build_local_spec(spec_file, tmp_path / "out", device="cpu", latency_threads=1)
    assert len(spec.train_file.read_text(encoding="utf-8").splitlines()) == 40
    assert len(spec.eval_file.read_text(encoding="utf-8").splitlines()) == 7
    assert spec.label_names == LABELS
    assert spec.training.epochs == 1 and spec.distillation.hidden_states is False
    assert spec.target.params_ratio == 0.5 and spec.latency_threads == 1
    # An eval label the train file never had is named against the train file's labels.
    (workspace / "c.jsonl").write_text('{"text": "so so", "label": "neutral"}\n' * 2)
    messages = _spec_errors(workspace, tmp_path, text.replace("b.jsonl", "c.jsonl"))
    assert "the label names are those of dataset.train" in messages[0]


def test_results_table_survives_missing_numbers() -> None:
    table = results_table(
        {"teacher": {"accuracy": 0.9, "num_parameters": 1000}, "student": {"accuracy": 0.8}}
    )
    assert "90.00%" in table and "80.00%" in table and "n/a" in table
    assert "Retention (Accuracy): 88.89% of the teacher" in table


def test_results_table_for_token_metrics() -> None:
    parts = {"f1": 0.8, "precision": 0.75, "recall": 0.85, "token_accuracy": 0.95}
    metrics = {
        "main_metric": "f1",
        "teacher": parts,
        "student": {k: v / 2 for k, v in parts.items()},
        "speedup_cpu_bs1": 2.0,
    }
    table = results_table(metrics)
    assert "Entity F1" in table and "Token accuracy" in table and "Accuracy " not in table
    assert "Retention (Entity F1): 50.00% of the teacher" in table
    assert "CPU speed-up: 2.00x at batch 1, n/a at batch 32" in table
