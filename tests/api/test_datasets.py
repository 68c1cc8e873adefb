from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tests.apiclient import assert_problem, upload_dataset


def _counts(tenant: str) -> tuple[int, int]:
    from app.datasets.tables import Dataset
    from app.db import session_scope
    from app.storage import get_storage

    with session_scope() as s:
        rows = s.scalar(select(func.count()).select_from(Dataset).where(Dataset.tenant == tenant))
    return rows, len(get_storage().list("datasets/"))


def _jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_upload_holds_out_a_fixed_split(client, tiny_dataset: Path):
    r = upload_dataset(client, tiny_dataset, name="tiny")
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["id"].startswith("ds_") and body["status"] == "ready"
    assert body["num_rows"] == 200
    assert body["splits"] == {"train": 180, "validation": 20}
    assert body["split_generated"] is True
    assert body["label_names"] == ["negative", "positive"]
    assert body["format"] == "jsonl" and len(body["sha256"]) == 64
    # what parsing found is reported once, in the upload's response
    assert body.pop("ingest") == {
        "columns": {"text": "text", "label": "label"},
        "duplicate_rows": 0,
        "iob1_converted": 0,
    }
    assert client.get(f"/v1/datasets/{body['id']}").json() == {**body, "ingest": None}

    # the same file gives the same held-out rows (fixed seed)
    from app.datasets.service import split_key
    from app.storage import get_storage

    again = upload_dataset(client, tiny_dataset).json()
    storage = get_storage()
    first = b"".join(storage.iter_bytes(split_key(body["id"], "validation")))
    second = b"".join(storage.iter_bytes(split_key(again["id"], "validation")))
    assert first == second
    assert len(first.splitlines()) == 20


def test_splits_given_in_the_file_are_kept(client, tmp_path: Path):
    rows = [
        {"text": f"row {i}", "label": i % 2, "split": "train" if i < 8 else "validation"}
        for i in range(10)
    ]
    r = upload_dataset(client, _jsonl(tmp_path / "d.jsonl", rows), label_names="neg,pos")
    assert r.status_code == 201, r.text
    assert r.json()["splits"] == {"train": 8, "validation": 2}
    assert r.json()["split_generated"] is False
    assert r.json()["label_names"] == ["neg", "pos"]


def test_integer_labels_without_names(client, tmp_path: Path):
    rows = [{"sentence": f"row {i}", "y": i % 3} for i in range(30)]
    r = upload_dataset(
        client, _jsonl(tmp_path / "d.jsonl", rows), text_column="sentence", label_column="y"
    )
    assert r.status_code == 201, r.text
    assert r.json()["label_names"] == ["0", "1", "2"]


@pytest.mark.parametrize(
    ("content", "code", "needle"),
    [
        (b'{"text": "a", "label": 0}\nnot json\n', "dataset_invalid", "line 2"),
        (b'{"text": "a", "label": 0}\n{"label": 1}\n', "dataset_invalid", "'text'"),
        (b'{"text": "a", "label": 0}\n{"text": "b"}\n', "dataset_invalid", "'label'"),
        (b'{"text": "", "label": 0}\n', "dataset_invalid", "non-empty"),
        (b'{"text": "a", "label": 0}\n{"text": "b", "label": 0}\n', "dataset_invalid", "one class"),
        (b'{"text": "a", "label": 0}\n{"text": "b", "label": "x"}\n', "dataset_invalid", "mixes"),
        (b"text,label\nhello,1\n", "dataset_invalid", "line 1"),
        (b'{"text": "caf\xe9", "label": 0}\n', "dataset_invalid", "UTF-8"),
        (b"\n\n", "dataset_empty", "no rows"),
        (b"", "file_empty", "empty"),
    ],
)
def test_bad_files_write_nothing(client, tenant, tmp_path: Path, content, code, needle):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(content)
    before = _counts(tenant)
    body = assert_problem(upload_dataset(client, path), 422, code)
    assert needle in body["detail"], body["detail"]
    assert _counts(tenant) == before


def test_label_names_must_cover_labels(client, tmp_path: Path):
    rows = [{"text": "x", "label": i % 3} for i in range(9)]
    assert_problem(
        upload_dataset(client, _jsonl(tmp_path / "d.jsonl", rows), label_names="a,b"),
        422,
        "dataset_invalid",
        "label_names",
    )
    assert_problem(
        upload_dataset(client, _jsonl(tmp_path / "d.jsonl", rows), label_names="a"),
        422,
        "validation_error",
        "label_names",
    )


def test_unknown_format(client, tiny_dataset: Path):
    assert_problem(
        upload_dataset(client, tiny_dataset, format="xml"), 422, "validation_error", "format"
    )


def test_list_get_delete(client, tiny_dataset: Path):
    ids = [upload_dataset(client, tiny_dataset).json()["id"] for _ in range(3)]
    page = client.get("/v1/datasets", params={"limit": 2}).json()
    assert [d["id"] for d in page["data"]] == ids[::-1][:2] and page["has_more"]
    rest = client.get("/v1/datasets", params={"after": page["next_cursor"]}).json()
    assert [d["id"] for d in rest["data"]] == [ids[0]] and not rest["has_more"]
    assert_problem(client.get("/v1/datasets/ds_unknown"), 404, "dataset_not_found")
    assert client.delete(f"/v1/datasets/{ids[0]}").status_code == 204
    assert_problem(client.get(f"/v1/datasets/{ids[0]}"), 404)
    from app.storage import get_storage

    assert get_storage().list(f"datasets/{ids[0]}/") == []


def test_bad_cursor_and_limit(client):
    assert_problem(
        client.get("/v1/datasets", params={"after": "!!!"}), 400, "invalid_cursor", "after"
    )
    assert_problem(
        client.get("/v1/datasets", params={"limit": 0}), 422, "validation_error", "limit"
    )
    assert_problem(
        client.get("/v1/datasets", params={"limit": 101}), 422, "validation_error", "limit"
    )
