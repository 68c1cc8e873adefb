"""A DistilBERT, a DeBERTa-v3 and a ModernBERT teacher (tiny random base checkpoints
built from configs) through the API, Redis and a real worker: each job prunes layers
and FFN neurons and succeeds, and each student loads with the plain Auto class and
gives its own logits again after a save and reload. The ModernBERT job asks for int8
ONNX too, and its artifact runs in plain ONNX Runtime (every family's export is checked
in tests/engine/families/test_onnx.py; this is the job path). What a family cannot do
yet is refused when the job is created."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.apiclient import fetch_artifact, finished_job, job_body, upload_model
from tests.conftest import pack_tar
from tests.engine.families.tiny_families import save_teacher

pytestmark = pytest.mark.e2e

TRAINING = {
    "epochs": 1,
    "teacher_epochs": 1,
    "batch_size": 16,
    "max_seq_length": 32,
    "learning_rate": 2e-3,
    "teacher_learning_rate": 5e-3,
}
PRUNING = {"structured": ["layers", "ffn"]}
# One family's job adds an int8 ONNX student: the export, quantization, parity check and
# ONNX timing pass cost a job seconds on these tiny models, three times that for all.
FORMATS = {"modernbert": ["safetensors", "onnx-int8"]}


def _teacher(client, model_type: str, tmp_path: Path) -> str:
    folder = save_teacher(tmp_path / model_type, model_type)
    r = upload_model(client, pack_tar(folder, tmp_path / f"{model_type}.tar.gz"), name=model_type)
    assert r.status_code == 201, r.text
    assert r.json()["model_type"] == model_type
    return r.json()["id"]


@pytest.mark.parametrize("model_type", ["distilbert", "deberta-v2", "modernbert"])
def test_a_job_on_each_new_family_succeeds_and_its_student_reloads(
    client, dataset_id, celery_worker, model_type: str, tmp_path: Path
):
    model_id = _teacher(client, model_type, tmp_path)
    body = job_body(model_id, dataset_id, training=TRAINING, pruning=PRUNING)
    if model_type in FORMATS:
        body["export"] = {"formats": FORMATS[model_type]}
    r = client.post("/v1/jobs", json=body)
    assert r.status_code == 202, r.text
    jid = r.json()["id"]

    job = finished_job(client, jid, 420)
    assert job["status"] == "succeeded", (job, celery_worker.text()[-3000:])
    student, teacher = job["metrics"]["student"], job["metrics"]["teacher"]
    assert student["non_embedding_parameters"] < teacher["non_embedding_parameters"]

    folder = fetch_artifact(client, jid, "model", tmp_path / "student")

    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    assert model.config.model_type == model_type
    assert model.config.num_hidden_layers == student["num_layers"]
    encoded = AutoTokenizer.from_pretrained(folder)(
        ["a good movie .", "the plot was really awful and boring ."],
        padding=True,
        return_tensors="pt",
    )
    with torch.no_grad():
        before = model(**encoded).logits
    model.save_pretrained(tmp_path / "again")
    again = AutoModelForSequenceClassification.from_pretrained(tmp_path / "again").eval()
    with torch.no_grad():
        after = again(**encoded).logits
    assert before.shape == (2, 2)
    torch.testing.assert_close(after, before, atol=1e-5, rtol=0)
    if "onnx-int8" in FORMATS.get(model_type, ()):
        _int8_runs_in_onnxruntime(client, jid, job, dict(encoded), before, tmp_path)


def _int8_runs_in_onnxruntime(client, jid: str, job: dict, encoded: dict, fp32, tmp_path: Path):
    """The int8 artifact, as a user runs it: plain InferenceSession, the tokenizer's
    output fed as it is, logits of the PyTorch student's shape and close to them."""
    import numpy as np
    import onnxruntime

    row = job["metrics"]["formats"]["onnx-int8"]
    assert row["runtime"] == "onnxruntime-int8" and row["parity"]["passed"], row
    folder = fetch_artifact(client, jid, "model-onnx-int8", tmp_path / "int8")
    session = onnxruntime.InferenceSession(str(folder / "model.onnx"))
    feeds = {name: tensor.numpy() for name, tensor in encoded.items()}
    (logits,) = session.run(["logits"], feeds)
    assert logits.shape == tuple(fp32.shape)
    # Measured: int8 moved these two rows' logits by 0.002, the job's 20 eval rows' by
    # 0.01 at most; the logits themselves are about 1 apart.
    assert np.abs(logits - fp32.numpy()).max() < 0.25, (logits, fp32)


@pytest.mark.parametrize(
    ("model_type", "change", "refused"),
    [
        ("deberta-v2", {"pruning": {"structured": ["layers", "hidden"]}}, "'hidden'"),
        ("modernbert", {"pruning": {"structured": ["layers", "ffn", "hidden"]}}, "'hidden'"),
    ],
)
def test_what_a_family_cannot_do_yet_is_refused_at_creation(
    client, dataset_id, model_type: str, change: dict, refused: str, tmp_path: Path
):
    model_id = _teacher(client, model_type, tmp_path)
    r = client.post("/v1/jobs", json=job_body(model_id, dataset_id, training=TRAINING, **change))
    assert r.status_code == 422, r.text
    problem = r.json()
    assert problem["code"] == "not_supported_yet"
    assert refused in problem["detail"] and model_type in problem["detail"]
    assert problem["param"] == "pruning.structured"
