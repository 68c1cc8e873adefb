"""Teachers and datasets by s3:// uri from the platform's buckets (MODELPRESS_INPUT_BUCKETS),
and pre-signed URLs signed for a public endpoint. A second bucket is created in the real
SeaweedFS for the module and removed afterwards."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

import httpx
import pytest

from tests import services
from tests.apiclient import assert_problem, job_body, upload_dataset


@pytest.fixture(scope="module")
def platform_bucket(stack):
    s3 = services.s3_client()
    name = f"platform-{services.RUN_ID}-{uuid.uuid4().hex[:6]}"
    s3.create_bucket(Bucket=name)
    yield name
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=name):
        for obj in page.get("Contents", []):
            s3.delete_object(Bucket=name, Key=obj["Key"])
    s3.delete_bucket(Bucket=name)


@pytest.fixture
def put(platform_bucket):
    def _put(path: Path, key: str) -> str:
        services.s3_client().upload_file(str(path), platform_bucket, key)
        return f"s3://{platform_bucket}/{key}"

    return _put


def _settings(app, **update):
    from app.settings import get_settings

    settings = get_settings().model_copy(update=update)
    app.dependency_overrides[get_settings] = lambda: settings
    return settings


@pytest.fixture
def listed(app, platform_bucket):
    """The platform bucket listed under teams/ only."""
    return _settings(app, input_buckets=[f"{platform_bucket}/teams/"])


def test_teacher_from_a_listed_bucket(client, listed, put, tiny_teacher_tar: Path):
    uri = put(tiny_teacher_tar, "teams/nlp/teacher.tar.gz")
    r = client.post("/v1/models", data={"uri": uri, "name": "platform"})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["sha256"] == hashlib.sha256(tiny_teacher_tar.read_bytes()).hexdigest()
    assert body["filename"] == "teacher.tar.gz"
    from app.storage import get_storage

    # Copied into the service's own store: the job does not depend on the platform's copy.
    assert get_storage().list(f"models/{body['id']}/") == [f"models/{body['id']}/model.tar.gz"]


def test_dataset_from_a_listed_bucket_is_checked_like_an_upload(
    client, listed, put, tiny_dataset: Path, model_id
):
    uploaded = upload_dataset(client, tiny_dataset).json()
    r = client.post("/v1/datasets", data={"uri": put(tiny_dataset, "teams/nlp/sst.jsonl")})
    assert r.status_code == 201, r.text
    body = r.json()
    same = ("num_rows", "splits", "task_hint", "label_names", "size_bytes", "sha256")
    assert {k: body[k] for k in same} == {k: uploaded[k] for k in same}
    assert body["filename"] == "sst.jsonl"
    # And it is a dataset like any other: a job can use it.
    assert client.post("/v1/jobs", json=job_body(model_id, body["id"])).status_code == 202


def test_a_bad_data_file_by_uri_names_uri(client, listed, put, tmp_path: Path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "a", "label": 0}\nnot json\n')
    r = client.post("/v1/datasets", data={"uri": put(bad, "teams/bad.jsonl")})
    body = assert_problem(r, 422, param="uri")
    assert "line 2" in body["detail"]


def test_unlisted_bucket_is_refused_naming_the_allowed_ones(client, listed, platform_bucket):
    body = assert_problem(
        client.post("/v1/datasets", data={"uri": "s3://other-bucket/teams/d.jsonl"}),
        422,
        "url_not_allowed",
        "uri",
    )
    assert f"s3://{platform_bucket}/teams/" in body["detail"]
    assert f"s3://{services.BUCKET}/" in body["detail"]  # the service's own store too
    # Inside a listed bucket but outside its prefix.
    body = assert_problem(
        client.post("/v1/models", data={"uri": f"s3://{platform_bucket}/secret/m.tar.gz"}),
        422,
        "url_not_allowed",
    )
    assert f"s3://{platform_bucket}/teams/" in body["detail"]
    # A prefix is a folder: teams/ does not allow teamsx/.
    assert_problem(
        client.post("/v1/models", data={"uri": f"s3://{platform_bucket}/teamsx/m.tar.gz"}),
        422,
        "url_not_allowed",
    )


def test_service_folders_stay_closed_even_when_its_bucket_is_listed(
    app, client, tiny_teacher_tar: Path, model_id
):
    _settings(app, input_buckets=[services.BUCKET])
    uri = f"s3://{services.BUCKET}/models/{model_id}/model.tar.gz"
    body = assert_problem(client.post("/v1/models", data={"uri": uri}), 422, "url_not_allowed")
    assert "service's own objects" in body["detail"]


def test_missing_object_in_a_listed_bucket(client, listed, platform_bucket):
    uri = f"s3://{platform_bucket}/teams/nope.jsonl"
    body = assert_problem(
        client.post("/v1/datasets", data={"uri": uri}), 422, "dataset_uri_not_found", "uri"
    )
    assert uri in body["detail"]


def test_dataset_needs_file_or_uri_not_both(client, listed, put, tiny_dataset: Path):
    assert_problem(client.post("/v1/datasets", data={"name": "x"}), 422, "validation_error", "file")
    uri = put(tiny_dataset, "teams/both.jsonl")
    with open(tiny_dataset, "rb") as f:
        r = client.post("/v1/datasets", files={"file": ("d.jsonl", f)}, data={"uri": uri})
    assert "not both" in assert_problem(r, 422, "validation_error", "uri")["detail"]


def test_without_input_keys_another_endpoint_uses_the_default_chain(
    app, client, platform_bucket, put, tiny_dataset: Path, monkeypatch, tmp_path: Path
):
    """No input keys and an endpoint of its own: boto3's default chain signs (here the
    environment's AWS_* variables; in production an instance or pod role), never an
    unsigned request; with nothing in the chain the read is refused, not a 500."""
    from app import inputs

    endpoint = services.S3_ENDPOINT.replace("127.0.0.1", "localhost")
    _settings(app, input_buckets=[platform_bucket], input_s3_endpoint_url=endpoint)
    uri = put(tiny_dataset, "chain.jsonl")
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    inputs._input_client.cache_clear()
    try:
        r = client.post("/v1/datasets", data={"uri": uri})
        assert_problem(r, 422, "dataset_uri_forbidden", "uri")
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "from-the-chain")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
        inputs._input_client.cache_clear()
        r = client.post("/v1/datasets", data={"uri": uri})
        assert r.status_code == 201, r.text
    finally:
        inputs._input_client.cache_clear()


def test_input_bucket_entries_are_parsed():
    from app.inputs import input_buckets
    from app.settings import get_settings

    s = get_settings().model_copy(
        update={"input_buckets": ["ml-store/teams", "s3://raw/", " data/a/b/ ", ""]}
    )
    assert input_buckets(s) == [("ml-store", "teams/"), ("raw", ""), ("data", "a/b/")]


# ---------------------------------------------------------------- public pre-signing


def test_presigned_url_is_signed_for_the_public_endpoint(app, client, artifact):
    from app.storage import get_storage, storage_from_settings

    jid, data = artifact
    public = services.S3_ENDPOINT.replace("127.0.0.1", "localhost")
    settings = _settings(app, s3_public_endpoint_url=public)
    storage = storage_from_settings(settings)
    app.dependency_overrides[get_storage] = lambda: storage
    r = client.get(
        f"/v1/jobs/{jid}/artifacts/report", params={"redirect": "true"}, follow_redirects=False
    )
    assert r.status_code == 307
    location = r.headers["location"]
    assert location.startswith(f"{public}/{services.BUCKET}/jobs/{jid}/"), location
    assert httpx.get(location).content == data  # signed for that host, so the store serves it
    # The API itself still talks to the internal endpoint.
    assert storage.client.meta.endpoint_url == services.S3_ENDPOINT
