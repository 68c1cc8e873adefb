"""An int8 ONNX student through the API, the real broker and a real Celery worker
(issue #20): the artifact runs in plain ONNX Runtime, and scores on rows held out from
training what the job's report says it scores."""

from __future__ import annotations

import io
import json
import random
import tarfile
from pathlib import Path

import numpy as np
import pytest

from tests.apiclient import job_body, upload_dataset
from tests.e2e.conftest import wait_for
from tests.tiny import tiny_sentence

pytestmark = pytest.mark.e2e

# Learning rates the tiny task is learnt with in a few epochs: a model that has learnt
# it predicts with margins, which int8 does not flip.
TRAINING = {
    "epochs": 2,
    "teacher_epochs": 8,
    "batch_size": 16,
    "max_seq_length": 32,
    "learning_rate": 2e-3,
    "teacher_learning_rate": 5e-3,
}
HELD_OUT = 200


def _rows(n: int, seed: int, split: str) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        positive = rng.random() < 0.5
        label = "positive" if positive else "negative"
        rows.append({"text": tiny_sentence(rng, positive), "label": label, "split": split})
    return rows


def test_an_int8_onnx_job_scores_in_onnxruntime_as_reported(
    client, model_id, celery_worker, tmp_path: Path
):
    held_out = _rows(HELD_OUT, seed=11, split="validation")
    data = tmp_path / "sentiment.jsonl"
    rows = _rows(300, seed=10, split="train") + held_out
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    r = upload_dataset(client, data, name="held-out")
    assert r.status_code == 201, r.text
    dataset = r.json()

    body = job_body(model_id, dataset["id"], training=TRAINING, export={"formats": ["onnx-int8"]})
    r = client.post("/v1/jobs", json=body)
    assert r.status_code == 202, r.text
    jid = r.json()["id"]

    def finished():
        job = client.get(f"/v1/jobs/{jid}").json()
        return job if job["status"] in ("succeeded", "failed", "cancelled") else None

    job = wait_for(finished, 420, f"job {jid} to finish")
    assert job["status"] == "succeeded", (job, celery_worker.text()[-3000:])
    row = job["metrics"]["formats"]["onnx-int8"]
    assert row["runtime"] == "onnxruntime-int8" and row["parity"]["passed"]
    assert set(job["metrics"]["teacher_runtimes"]) == {"pytorch", "onnxruntime", "onnxruntime-int8"}

    arts = {a["name"]: a for a in client.get(f"/v1/jobs/{jid}/artifacts").json()["data"]}
    assert "model-onnx-int8" in arts and "model" not in arts
    r = client.get(f"/v1/jobs/{jid}/artifacts/model-onnx-int8")
    assert r.status_code == 200 and len(r.content) == arts["model-onnx-int8"]["size_bytes"]
    folder = tmp_path / "int8"
    with tarfile.open(fileobj=io.BytesIO(r.content), mode="r:gz") as tf:
        tf.extractall(folder, filter="data")

    # What a user does with it: plain ONNX Runtime and the tokenizer beside the model.
    import onnxruntime
    from transformers import AutoConfig, AutoTokenizer

    session = onnxruntime.InferenceSession(str(folder / "model.onnx"))
    tokenizer = AutoTokenizer.from_pretrained(folder)
    id2label = AutoConfig.from_pretrained(folder).id2label
    correct = 0
    for row_ in held_out:
        encoded = tokenizer(row_["text"], truncation=True, max_length=32, return_tensors="np")
        (logits,) = session.run(["logits"], dict(encoded))
        correct += id2label[int(np.argmax(logits[0]))] == row_["label"]
    accuracy = correct / HELD_OUT
    assert abs(accuracy - row["accuracy"]) <= 0.005 + 1e-9, (accuracy, row["accuracy"])
    assert accuracy > 0.8, accuracy  # the task was learnt, so the comparison means something
