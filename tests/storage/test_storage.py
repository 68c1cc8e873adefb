"""The same behaviour from both backends: local files and SeaweedFS over the S3 API."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.storage import FileStorage, S3Storage, Storage, StorageError
from tests import services


@pytest.fixture(params=["file", "s3"])
def storage(request, tmp_path: Path) -> Iterator[Storage]:
    if request.param == "file":
        store = FileStorage(tmp_path / "store")
        store.ensure()
        yield store
        return
    services.require(services.S3_ENDPOINT, "The S3 server (SeaweedFS)")
    client = services.s3_client()
    bucket = f"mp-storage-{uuid.uuid4().hex[:8]}"
    store = S3Storage(bucket, "some/prefix", client)
    store.ensure()
    store.ensure()  # idempotent
    yield store
    store.delete_prefix("")
    client.delete_bucket(Bucket=bucket)


def test_put_read_list_delete(storage: Storage, tmp_path: Path):
    data = os.urandom(3 * 1024 * 1024 + 17)  # more than one chunk
    src = tmp_path / "blob"
    src.write_bytes(data)
    stored = storage.put_file("jobs/j1/1/model.tar.gz", src)
    assert stored.size_bytes == len(data)
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    assert storage.size("jobs/j1/1/model.tar.gz") == len(data)
    assert storage.exists("jobs/j1/1/model.tar.gz")
    assert b"".join(storage.iter_bytes("jobs/j1/1/model.tar.gz", 65536)) == data
    out = tmp_path / "out"
    storage.download_file("jobs/j1/1/model.tar.gz", out)
    assert out.read_bytes() == data

    storage.put_file("jobs/j1/1/report.json", src)
    storage.put_file("jobs/j2/1/report.json", src)
    assert storage.list("jobs/j1/") == ["jobs/j1/1/model.tar.gz", "jobs/j1/1/report.json"]
    assert storage.delete_prefix("jobs/j1/") == 2
    assert storage.list("jobs/j1/") == []
    assert storage.list("jobs/") == ["jobs/j2/1/report.json"]
    storage.delete("jobs/j2/1/report.json")
    storage.delete("jobs/j2/1/report.json")  # deleting twice is fine
    assert storage.size("jobs/j2/1/report.json") is None


def test_overwrite_is_whole(storage: Storage, tmp_path: Path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"first version")
    b.write_bytes(b"second")
    storage.put_file("k/x", a)
    storage.put_file("k/x", b)
    assert b"".join(storage.iter_bytes("k/x")) == b"second"


def test_missing_objects(storage: Storage, tmp_path: Path):
    with pytest.raises(StorageError):
        list(storage.iter_bytes("nope/x"))
    with pytest.raises(StorageError):
        storage.download_file("nope/x", tmp_path / "x")


@pytest.mark.parametrize("key", ["", "/abs", "a/../b", "a//b", "./a"])
def test_bad_keys_refused(storage: Storage, tmp_path: Path, key: str):
    (tmp_path / "f").write_bytes(b"x")
    with pytest.raises(ValueError):
        storage.put_file(key, tmp_path / "f")


def test_check(storage: Storage):
    storage.check()


def test_check_fails_when_unreachable(tmp_path: Path):
    with pytest.raises(StorageError):
        FileStorage(tmp_path / "missing").check()
    import boto3
    from botocore.config import Config

    client = boto3.client(
        "s3",
        endpoint_url="http://127.0.0.1:9",
        aws_access_key_id="x",
        aws_secret_access_key="x",
        region_name="us-east-1",
        config=Config(retries={"max_attempts": 1}, connect_timeout=1),
    )
    with pytest.raises(StorageError):
        S3Storage("b", "", client).check()
