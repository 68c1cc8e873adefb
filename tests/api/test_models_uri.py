"""A teacher given by URI (s3://<configured bucket>/<key>) instead of an upload."""

from __future__ import annotations

import hashlib
import io
import tarfile
import uuid
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tests import services
from tests.apiclient import assert_problem, make_key, upload_model


def _put(path: Path, key: str) -> str:
    from app.storage import get_storage

    get_storage().put_file(key, path)
    return f"s3://{services.BUCKET}/{key}"


def _counts(tenant: str) -> tuple[int, int]:
    from app.db import session_scope
    from app.models.tables import Model
    from app.storage import get_storage

    with session_scope() as s:
        rows = s.scalar(select(func.count()).select_from(Model).where(Model.tenant == tenant))
    return rows, len(get_storage().list("models/"))


@pytest.fixture
def uri_key() -> str:
    # Outside the service's folders, as a platform keeps its models; unique per test.
    return f"platform/{uuid.uuid4().hex[:8]}/teacher.tar.gz"


def test_uri_is_inspected_and_copied_like_an_upload(client, tiny_teacher_tar: Path, uri_key):
    uri = _put(tiny_teacher_tar, uri_key)
    r = client.post("/v1/models", data={"uri": uri, "name": "by-uri"})
    assert r.status_code == 201, r.text
    body = r.json()
    uploaded = upload_model(client, tiny_teacher_tar).json()
    same = ("architecture", "model_type", "num_parameters", "has_task_head", "num_labels")
    assert {k: body[k] for k in same} == {k: uploaded[k] for k in same}
    assert body["name"] == "by-uri" and body["filename"] == "teacher.tar.gz"
    assert body["sha256"] == hashlib.sha256(tiny_teacher_tar.read_bytes()).hexdigest()
    assert body["size_bytes"] == tiny_teacher_tar.stat().st_size
    from app.storage import get_storage

    # A copy in the service's own folder, so a job keeps its teacher whatever later
    # happens to the platform's object.
    assert get_storage().list(f"models/{body['id']}/") == [f"models/{body['id']}/model.tar.gz"]
    get_storage().delete(uri_key)
    assert client.get(f"/v1/models/{body['id']}").json() == body


def test_missing_object(client, tenant):
    before = _counts(tenant)
    r = client.post("/v1/models", data={"uri": f"s3://{services.BUCKET}/platform/nope.tar.gz"})
    body = assert_problem(r, 422, "model_uri_not_found", "uri")
    assert "platform/nope.tar.gz" in body["detail"]
    assert _counts(tenant) == before


# "{bucket}" is this run's bucket, filled in by the test: test ids must be the same in
# every pytest-xdist process, and each process has a bucket of its own.
@pytest.mark.parametrize(
    ("uri", "says"),
    [
        ("s3://someone-elses-bucket/m.tar.gz", "Only the bucket '{bucket}'"),
        ("https://example.com/m.tar.gz", "scheme 'https' is not allowed"),
        ("/platform/m.tar.gz", "scheme '(none)'"),
        ("s3://key:secret@{bucket}/m.tar.gz", "credentials"),
        ("s3://{bucket}/", "does not name an object"),
        ("s3://{bucket}/a/../m.tar.gz", "does not name an object"),
        ("s3://{bucket}/m.tar.gz?versionId=1", "query"),
        ("s3://{bucket}/m%0A.tar.gz", "does not name an object"),
        ("s3://{bucket}/" + "k" * 1100, "does not name an object"),
        ("s3://{bucket}/datasets/ds_x/source.jsonl", "service's own objects"),
    ],
)
def test_refused_uris(client, tenant, uri: str, says: str):
    uri, says = (text.replace("{bucket}", services.BUCKET) for text in (uri, says))
    before = _counts(tenant)
    body = assert_problem(client.post("/v1/models", data={"uri": uri}), 422, "url_not_allowed")
    assert body["param"] == "uri"
    assert says in body["detail"], body["detail"]
    assert _counts(tenant) == before


def test_another_tenants_stored_model_cannot_be_named(app, client, tiny_teacher_tar: Path):
    theirs = upload_model(client, tiny_teacher_tar).json()["id"]
    from fastapi.testclient import TestClient

    with TestClient(app, raise_server_exceptions=False) as other:
        other.headers["Authorization"] = f"Bearer {make_key('t-' + uuid.uuid4().hex[:8])}"
        uri = f"s3://{services.BUCKET}/models/{theirs}/model.tar.gz"
        body = assert_problem(other.post("/v1/models", data={"uri": uri}), 422, "url_not_allowed")
    assert "models/" in body["detail"]


def test_neither_or_both(client, tiny_teacher_tar: Path, uri_key):
    assert_problem(client.post("/v1/models", data={"name": "x"}), 422, "validation_error", "file")
    uri = _put(tiny_teacher_tar, uri_key)
    with open(tiny_teacher_tar, "rb") as f:
        r = client.post("/v1/models", files={"file": ("m.tar.gz", f)}, data={"uri": uri})
    body = assert_problem(r, 422, "validation_error", "uri")
    assert "not both" in body["detail"]


def test_bad_archive_by_uri_is_refused_naming_uri(client, tenant, tmp_path: Path, uri_key):
    path = tmp_path / "pickle.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        for name, data in {
            "config.json": b"{}",
            "pytorch_model.bin": b"pickle",
            "vocab.txt": b"a",
        }.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    before = _counts(tenant)
    r = client.post("/v1/models", data={"uri": _put(path, uri_key)})
    body = assert_problem(r, 422, "model_weights_missing", "uri")
    assert "safe_serialization=True" in body["detail"]
    assert _counts(tenant) == before


def test_object_over_the_upload_cap_is_413(app, client, tenant, tiny_teacher_tar: Path, uri_key):
    from app.settings import get_settings

    uri = _put(tiny_teacher_tar, uri_key)
    small = get_settings().model_copy(update={"max_upload_bytes": 1000})
    app.dependency_overrides[get_settings] = lambda: small
    before = _counts(tenant)
    assert_problem(client.post("/v1/models", data={"uri": uri}), 413, "upload_too_large", "uri")
    assert _counts(tenant) == before


def test_file_storage_has_no_uris(app, client, tmp_path: Path):
    from app.storage import FileStorage, get_storage

    app.dependency_overrides[get_storage] = lambda: FileStorage(tmp_path)
    r = client.post("/v1/models", data={"uri": f"s3://{services.BUCKET}/platform/m.tar.gz"})
    body = assert_problem(r, 422, "model_uri_unavailable", "uri")
    assert "upload the archive as `file`" in body["detail"]


def test_store_prefix_bounds_the_keys():
    from app.errors import ProblemError
    from app.models.uri import parse_model_uri
    from app.storage import S3Storage

    # Parsing makes no request, so no client is needed.
    storage = S3Storage("store", "modelpress/prod", client=None)
    ref = parse_model_uri("s3://store/modelpress/prod/teams/nlp/m%20v2.zip", storage=storage)
    assert ref.key == "teams/nlp/m v2.zip" and ref.filename == "m v2.zip"
    for uri, says in (
        ("s3://store/teams/nlp/m.zip", "give a key under it"),
        ("s3://store/modelpress/prod/jobs/job_x/1/model.tar.gz", "service's own objects"),
        ("s3://store/modelpress/prodx/m.zip", "give a key under it"),
    ):
        with pytest.raises(ProblemError) as e:
            parse_model_uri(uri, storage=storage)
        assert e.value.code == "url_not_allowed" and says in e.value.detail, e.value.detail
