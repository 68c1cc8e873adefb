"""Labels across splits: counted per split at upload, a warning when an eval split has a
label the training split lacks, and a job on it refused unless it allows that."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import null, update

from tests.apiclient import assert_problem, job_body, upload_dataset
from tests.tiny import tiny_sentence


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _rows(split: str, labels: list[str]) -> list[dict]:
    import random

    rng = random.Random(len(labels))
    return [
        {"text": tiny_sentence(rng, label == "positive"), "label": label, "split": split}
        for label in labels
    ]


def _typo_dataset(tmp_path: Path) -> Path:
    """As the issue tried it: five validation rows relabelled with a new name."""
    train = _rows("train", ["negative", "positive"] * 20)
    validation = _rows("validation", ["negative", "positive"] * 5 + ["postive"] * 5)
    return _write(tmp_path / "typo.jsonl", train + validation)


def test_counts_and_a_warning_at_upload_and_on_read(client, tmp_path):
    r = upload_dataset(client, _typo_dataset(tmp_path))
    assert r.status_code == 201, r.text
    ds = r.json()
    assert ds["label_names"] == ["negative", "positive", "postive"]
    assert ds["label_counts"] == {
        "train": {"negative": 20, "positive": 20, "postive": 0},
        "validation": {"negative": 5, "positive": 5, "postive": 5},
    }
    [warning] = ds["warnings"]
    assert warning["code"] == "labels_missing_from_train"
    assert warning["split"] == "validation" and warning["labels"] == ["postive"]
    assert "'postive' (5)" in warning["message"]
    # Stored: a later read says the same.
    read = client.get(f"/v1/datasets/{ds['id']}").json()
    assert read["label_counts"] == ds["label_counts"]
    assert read["warnings"] == ds["warnings"]
    listed = client.get("/v1/datasets").json()["data"]
    assert next(d for d in listed if d["id"] == ds["id"])["warnings"] == ds["warnings"]


def test_a_job_on_it_is_refused_naming_the_labels_unless_allowed(client, model_id, tmp_path):
    dataset_id = upload_dataset(client, _typo_dataset(tmp_path)).json()["id"]
    r = client.post("/v1/jobs", json=job_body(model_id, dataset_id))
    problem = assert_problem(r, 422, "labels_missing_from_train", "dataset.eval_split")
    assert "'postive' (5)" in problem["detail"]
    assert "allow_unseen_labels" in problem["detail"]
    assert client.get("/v1/jobs").json()["data"] == []

    allowed = job_body(
        model_id, dataset_id, dataset={"dataset_id": dataset_id, "allow_unseen_labels": True}
    )
    r = client.post("/v1/jobs", json=allowed)
    assert r.status_code == 202, r.text
    assert r.json()["request"]["dataset"]["allow_unseen_labels"] is True
    client.post(f"/v1/jobs/{r.json()['id']}/cancel")  # no worker here


def test_the_check_follows_the_splits_the_job_names(client, model_id, tmp_path):
    # train lacks "postive"; "extra" holds it too; "validation" is clean.
    rows = (
        _rows("train", ["negative", "positive"] * 10)
        + _rows("validation", ["negative", "positive"] * 3)
        + _rows("extra", ["negative", "positive", "postive"])
    )
    ds = upload_dataset(client, _write(tmp_path / "three.jsonl", rows)).json()
    assert [w["split"] for w in ds["warnings"]] == ["extra"]
    clean = client.post("/v1/jobs", json=job_body(model_id, ds["id"]))
    assert clean.status_code == 202, clean.text
    client.post(f"/v1/jobs/{clean.json()['id']}/cancel")
    ref = {"dataset_id": ds["id"], "eval_split": "extra"}
    r = client.post("/v1/jobs", json=job_body(model_id, ds["id"], dataset=ref))
    assert_problem(r, 422, "labels_missing_from_train", "dataset.eval_split")
    # Training on "extra" and evaluating on "validation" lacks nothing.
    ref = {"dataset_id": ds["id"], "train_split": "extra", "eval_split": "validation"}
    r = client.post("/v1/jobs", json=job_body(model_id, ds["id"], dataset=ref))
    assert r.status_code == 202, r.text
    client.post(f"/v1/jobs/{r.json()['id']}/cancel")


def test_a_clean_dataset_has_no_warnings(client, dataset_id):
    ds = client.get(f"/v1/datasets/{dataset_id}").json()
    assert ds["warnings"] == []
    counts = ds["label_counts"]
    assert set(counts) == set(ds["splits"])
    assert {s: sum(c.values()) for s, c in counts.items()} == ds["splits"]


def test_tags_are_counted_per_split_for_token_classification(client, tmp_path):
    rows = [
        {"tokens": ["EU", "rejects", "it"], "tags": ["B-ORG", "O", "O"], "split": "train"},
        {"tokens": ["Peter", "Blackburn"], "tags": ["B-PER", "I-PER"], "split": "train"},
        {"tokens": ["Bonn", "said"], "tags": ["B-LOC", "O"], "split": "validation"},
    ]
    r = upload_dataset(client, _write(tmp_path / "ner.jsonl", rows))
    assert r.status_code == 201, r.text
    ds = r.json()
    assert ds["label_counts"]["validation"]["B-LOC"] == 1
    assert ds["label_counts"]["train"]["O"] == 2
    [warning] = ds["warnings"]
    assert warning["labels"] == ["B-LOC"]


def test_datasets_from_before_the_counts_are_read_and_used_as_before(client, model_id, tmp_path):
    from app.datasets.tables import Dataset
    from app.db import session_scope

    dataset_id = upload_dataset(client, _typo_dataset(tmp_path)).json()["id"]
    with session_scope() as s:  # as revision 0006 leaves a dataset uploaded before it
        s.execute(
            update(Dataset)
            .where(Dataset.id == dataset_id)
            .values(label_counts=null(), warnings=null())
        )
        s.commit()
    ds = client.get(f"/v1/datasets/{dataset_id}").json()
    assert ds["label_counts"] is None and ds["warnings"] == []
    r = client.post("/v1/jobs", json=job_body(model_id, dataset_id))
    assert r.status_code == 202, r.text  # nothing known to refuse it for
    client.post(f"/v1/jobs/{r.json()['id']}/cancel")
