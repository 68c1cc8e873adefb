"""A DistilBERT, a DeBERTa-v3 and a ModernBERT teacher (tiny random base checkpoints
built from configs) through the API, Redis and a real worker: each job prunes layers
and FFN neurons and succeeds, and each student loads with the plain Auto class and
gives its own logits again after a save and reload. What a family cannot do yet is
refused when the job is created."""

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


@pytest.mark.parametrize(
    ("model_type", "change", "refused"),
    [
        ("deberta-v2", {"pruning": {"structured": ["layers", "hidden"]}}, "'hidden'"),
        ("modernbert", {"pruning": {"structured": ["layers", "ffn", "hidden"]}}, "'hidden'"),
        ("distilbert", {"export": {"formats": ["onnx"]}}, "ONNX"),
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
    assert problem["param"] == next(iter(change)) + (
        ".structured" if "pruning" in change else ".formats"
    )
