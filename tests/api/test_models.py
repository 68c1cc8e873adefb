from __future__ import annotations

import io
import json
import tarfile
import zipfile
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tests.apiclient import assert_problem, upload_model
from tests.conftest import pack_tar


def _counts(tenant: str) -> tuple[int, int]:
    from app.db import session_scope
    from app.models.tables import Model
    from app.storage import get_storage

    with session_scope() as s:
        rows = s.scalar(select(func.count()).select_from(Model).where(Model.tenant == tenant))
    return rows, len(get_storage().list("models/"))


def test_upload_reads_config_and_safetensors(client, tiny_teacher_tar: Path, tiny_teacher_dir):
    r = upload_model(client, tiny_teacher_tar, name="tiny")
    assert r.status_code == 201, r.text
    body = r.json()
    assert r.headers["location"] == f"/v1/models/{body['id']}"
    assert body["id"].startswith("mdl_")
    assert body["architecture"] == "BertModel"
    assert body["model_type"] == "bert"
    assert body["has_task_head"] is False
    assert body["archive_format"] == "tar.gz"
    from safetensors import safe_open

    with safe_open(tiny_teacher_dir / "model.safetensors", "np") as f:
        expected = sum(f.get_tensor(k).size for k in f.keys())  # noqa: SIM118
    assert body["num_parameters"] == expected
    assert client.get(f"/v1/models/{body['id']}").json() == body


def test_upload_zip_with_head_in_a_top_folder(client, tmp_path: Path):
    from tests.tiny import make_tiny_bert

    folder = make_tiny_bert(tmp_path / "m", num_labels=3)
    archive = tmp_path / "m.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in folder.iterdir():
            zf.write(p, f"my-model/{p.name}")
    r = upload_model(client, archive)
    assert r.status_code == 201, r.text
    assert r.json()["has_task_head"] is True
    assert r.json()["num_labels"] == 3
    assert r.json()["architecture"] == "BertForSequenceClassification"


def test_list_paginates(client, tiny_teacher_tar: Path):
    ids = [upload_model(client, tiny_teacher_tar).json()["id"] for _ in range(3)]
    page = client.get("/v1/models", params={"limit": 2}).json()
    assert [m["id"] for m in page["data"]] == ids[::-1][:2]
    assert page["has_more"] is True
    rest = client.get("/v1/models", params={"limit": 2, "after": page["next_cursor"]}).json()
    assert [m["id"] for m in rest["data"]] == [ids[0]]
    assert rest["has_more"] is False and rest["next_cursor"] is None


def test_unknown_model_is_404(client):
    assert_problem(client.get("/v1/models/mdl_nope"), 404, "model_not_found")


def _tar(tmp_path: Path, files: dict[str, bytes]) -> Path:
    path = tmp_path / "bad.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.parametrize(
    ("files", "code"),
    [
        ({"model.safetensors": b"x" * 16, "vocab.txt": b"a"}, "model_config_missing"),
        ({"config.json": b"{}", "model.safetensors": b"", "vocab.txt": b"a"}, "model_invalid"),
        (
            {"config.json": b"{", "model.safetensors": b"", "vocab.txt": b"a"},
            "model_config_invalid",
        ),
        ({"config.json": b"{}", "model.safetensors": b""}, "model_tokenizer_missing"),
        (
            {"config.json": b"{}", "pytorch_model.bin": b"pickle", "vocab.txt": b"a"},
            "model_weights_missing",
        ),
        ({"../evil/config.json": b"{}"}, "archive_unsafe"),
        ({"/etc/config.json": b"{}"}, "archive_unsafe"),
    ],
)
def test_bad_archives_write_nothing(client, tenant, tmp_path: Path, files, code):
    before = _counts(tenant)
    body = assert_problem(upload_model(client, _tar(tmp_path, files)), 422, code, "file")
    if code == "model_weights_missing" and "pytorch_model.bin" in files:
        assert "pickle" in body["detail"]
        assert "save_pretrained(DIR, safe_serialization=True)" in body["detail"]
    assert _counts(tenant) == before


def test_not_an_archive(client, tenant, tmp_path: Path):
    path = tmp_path / "model.txt"
    path.write_text("hello")
    before = _counts(tenant)
    assert_problem(upload_model(client, path), 422, "archive_invalid", "file")
    assert _counts(tenant) == before


def test_link_member_refused(client, tmp_path: Path, tiny_teacher_dir: Path):
    path = pack_tar(tiny_teacher_dir, tmp_path / "with-link.tar.gz")
    # rewrite with a symlink added
    with tarfile.open(path, "r:gz") as src, tarfile.open(tmp_path / "l.tar.gz", "w:gz") as dst:
        for m in src.getmembers():
            dst.addfile(m, src.extractfile(m))
        link = tarfile.TarInfo("secrets")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        dst.addfile(link)
    assert_problem(upload_model(client, tmp_path / "l.tar.gz"), 422, "archive_unsafe")


def test_missing_file_field(client):
    assert_problem(client.post("/v1/models", data={"name": "x"}), 422, "validation_error", "file")


def test_delete(client, tiny_teacher_tar: Path):
    mid = upload_model(client, tiny_teacher_tar).json()["id"]
    from app.storage import get_storage

    assert get_storage().list(f"models/{mid}/")
    assert client.delete(f"/v1/models/{mid}").status_code == 204
    assert_problem(client.get(f"/v1/models/{mid}"), 404)
    assert get_storage().list(f"models/{mid}/") == []


def test_config_json_must_be_an_object(client, tmp_path: Path, tiny_teacher_dir: Path):
    folder = tmp_path / "m"
    folder.mkdir()
    for p in tiny_teacher_dir.iterdir():
        (folder / p.name).write_bytes(p.read_bytes())
    (folder / "config.json").write_text(json.dumps([1, 2]))
    archive = pack_tar(folder, tmp_path / "m.tar.gz")
    assert_problem(upload_model(client, archive), 422, "model_config_invalid", "file")


def test_oversized_upload_is_413_and_writes_nothing(app, client, tenant, tiny_teacher_tar: Path):
    from app.settings import get_settings

    small = get_settings().model_copy(update={"max_upload_bytes": 1000})
    app.dependency_overrides[get_settings] = lambda: small
    before = _counts(tenant)
    assert_problem(upload_model(client, tiny_teacher_tar), 413, "upload_too_large", "file")
    assert _counts(tenant) == before


def test_custom_code_models_refused(client, tenant, tmp_path: Path, tiny_teacher_dir: Path):
    folder = tmp_path / "m"
    folder.mkdir()
    for p in tiny_teacher_dir.iterdir():
        (folder / p.name).write_bytes(p.read_bytes())
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoModel": "modeling_evil.EvilModel"}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "modeling_evil.py").write_text("import os; os.system('echo pwned')\n")
    before = _counts(tenant)
    r = upload_model(client, pack_tar(folder, tmp_path / "evil.tar.gz"))
    assert_problem(r, 422, "model_custom_code", "file")
    assert _counts(tenant) == before
