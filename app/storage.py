"""Object storage behind one small interface: local files (embedded) or S3.

Keys are relative, slash-separated paths such as ``models/mdl_…/model.tar.gz``.
Writes are atomic: a reader never sees half an object.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from urllib.parse import unquote, urlparse

from botocore import UNSIGNED

from app.settings import Settings, get_settings

CHUNK = 1024 * 1024


@dataclass(frozen=True)
class StoredObject:
    key: str
    size_bytes: int
    sha256: str


class StorageError(Exception):
    pass


def file_digest(path: Path) -> tuple[int, str]:
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            size += len(chunk)
    return size, h.hexdigest()


def _check_key(key: str) -> str:
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in key.split("/")):
        raise ValueError(f"invalid storage key {key!r}")
    return key


class Storage(ABC):
    @abstractmethod
    def put_file(self, key: str, path: Path) -> StoredObject: ...

    @abstractmethod
    def iter_bytes(self, key: str, chunk_size: int = CHUNK) -> Iterator[bytes]: ...

    @abstractmethod
    def download_file(self, key: str, path: Path) -> None: ...

    @abstractmethod
    def size(self, key: str) -> int | None:
        """Size in bytes, or None if there is no such object."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Delete one object; deleting a missing one is not an error."""

    @abstractmethod
    def list(self, prefix: str) -> list[str]: ...

    @abstractmethod
    def ensure(self) -> None:
        """Create the bucket or folder if missing (run by ``modelpress migrate``)."""

    @abstractmethod
    def check(self) -> None:
        """Raise StorageError unless the store is reachable (readiness)."""

    def presign(self, key: str, *, expires_s: int, filename: str) -> str | None:
        """A URL that downloads the object for ``expires_s`` seconds, or None if this
        store cannot sign one (local files, or S3 without credentials)."""
        return None

    def exists(self, key: str) -> bool:
        return self.size(key) is not None

    @abstractmethod
    def list_folders(self, prefix: str) -> list[str]:
        """Names of the folders right under ``prefix`` (``jobs/`` → job ids), one entry
        per folder however many objects it holds."""

    def delete_prefix(self, prefix: str) -> int:
        keys = self.list(prefix)
        for key in keys:
            self.delete(key)
        return len(keys)


class FileStorage(Storage):
    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        return self.root / _check_key(key)

    def put_file(self, key: str, path: Path) -> StoredObject:
        dest = self._path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as out, open(path, "rb") as src:
                shutil.copyfileobj(src, out, CHUNK)
            os.replace(tmp, dest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        size, sha = file_digest(dest)
        return StoredObject(key, size, sha)

    def iter_bytes(self, key: str, chunk_size: int = CHUNK) -> Iterator[bytes]:
        path = self._path(key)
        if not path.is_file():
            raise StorageError(f"no object {key!r}")
        with open(path, "rb") as f:
            while chunk := f.read(chunk_size):
                yield chunk

    def download_file(self, key: str, path: Path) -> None:
        src = self._path(key)
        if not src.is_file():
            raise StorageError(f"no object {key!r}")
        shutil.copyfile(src, path)

    def size(self, key: str) -> int | None:
        path = self._path(key)
        return path.stat().st_size if path.is_file() else None

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def list(self, prefix: str) -> list[str]:
        base = self.root / prefix.rstrip("/") if prefix else self.root
        if not base.exists():
            return []
        return sorted(
            p.relative_to(self.root).as_posix()
            for p in base.rglob("*")
            if p.is_file() and not p.name.startswith(".tmp-")
        )

    def list_folders(self, prefix: str) -> list[str]:
        base = self.root / prefix.rstrip("/") if prefix else self.root
        if not base.is_dir():
            return []
        return sorted(p.name for p in base.iterdir() if p.is_dir())

    def ensure(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)

    def check(self) -> None:
        if not self.root.is_dir() or not os.access(self.root, os.W_OK):
            raise StorageError(f"artifact folder {self.root} is missing or not writable")


class S3Storage(Storage):
    def __init__(self, bucket: str, prefix: str, client, presign_client=None) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.client = client
        # SigV4 signs the host, so a URL for clients outside the service's network must be
        # signed for the endpoint they reach, not rewritten afterwards.
        self.presign_client = presign_client or client

    def _k(self, key: str) -> str:
        _check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def put_file(self, key: str, path: Path) -> StoredObject:
        size, sha = file_digest(path)
        # upload_file switches to multipart for big files; the object appears only
        # when the upload completes, so readers never see a partial one.
        self.client.upload_file(
            str(path), self.bucket, self._k(key), ExtraArgs={"Metadata": {"sha256": sha}}
        )
        return StoredObject(key, size, sha)

    def iter_bytes(self, key: str, chunk_size: int = CHUNK) -> Iterator[bytes]:
        from botocore.exceptions import ClientError

        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self._k(key))["Body"]
        except ClientError as e:
            raise StorageError(f"no object {key!r}: {e}") from e
        try:
            yield from body.iter_chunks(chunk_size)
        finally:
            body.close()

    def download_file(self, key: str, path: Path) -> None:
        from botocore.exceptions import ClientError

        try:
            self.client.download_file(self.bucket, self._k(key), str(path))
        except ClientError as e:
            raise StorageError(f"no object {key!r}: {e}") from e

    def size(self, key: str) -> int | None:
        from botocore.exceptions import ClientError

        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self._k(key))
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        return int(head["ContentLength"])

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._k(key))

    def _full_prefix(self, prefix: str) -> str:
        if ".." in prefix.split("/") or prefix.startswith("/"):
            raise ValueError(f"invalid storage prefix {prefix!r}")
        return (self.prefix + "/" if self.prefix else "") + prefix

    def list(self, prefix: str) -> list[str]:
        full = self._full_prefix(prefix)
        strip = len(self.prefix) + 1 if self.prefix else 0
        keys: list[str] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=full
        ):
            keys.extend(obj["Key"][strip:] for obj in page.get("Contents", []))
        return sorted(keys)

    def list_folders(self, prefix: str) -> list[str]:
        full = self._full_prefix(prefix.rstrip("/") + "/" if prefix else "")
        names: list[str] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=full, Delimiter="/"
        ):
            names.extend(
                p["Prefix"][len(full) :].rstrip("/") for p in page.get("CommonPrefixes", [])
            )
        return sorted(names)

    def presign(self, key: str, *, expires_s: int, filename: str) -> str | None:
        if self.presign_client.meta.config.signature_version == UNSIGNED:
            return None
        return self.presign_client.generate_presigned_url(
            "get_object",
            Params={
                "Bucket": self.bucket,
                "Key": self._k(key),
                "ResponseContentDisposition": f'attachment; filename="{filename}"',
            },
            ExpiresIn=expires_s,
        )

    def ensure(self) -> None:
        from botocore.exceptions import ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError:
            self.client.create_bucket(Bucket=self.bucket)

    def check(self) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except Exception as e:
            raise StorageError(f"bucket {self.bucket!r} not reachable: {type(e).__name__}") from e


def s3_client(
    *,
    endpoint_url: str | None,
    region: str,
    access_key_id: str | None,
    secret_access_key: str | None,
    unsigned_without_key: bool,
):
    """A boto3 S3 client. Without a key it either sends unsigned requests (the service's
    own store: an S3 server without identities, such as a bare SeaweedFS, instead of
    NoCredentialsError before any request) or leaves signing to boto3's default chain
    (environment, instance or pod role), as for the platform's buckets."""
    import boto3
    from botocore.config import Config

    unsigned = access_key_id is None and unsigned_without_key
    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        aws_access_key_id=access_key_id,
        aws_secret_access_key=secret_access_key,
        region_name=region,
        config=Config(
            retries={"max_attempts": 3, "mode": "standard"},
            connect_timeout=5,
            read_timeout=60,
            s3={"addressing_style": "path"},
            signature_version=UNSIGNED if unsigned else "s3v4",
        ),
    )


def storage_from_settings(settings: Settings) -> Storage:
    url = urlparse(settings.storage_url)
    if url.scheme == "file":
        return FileStorage(Path(unquote(url.path)))
    secret = settings.s3_secret_access_key
    common = {
        "region": settings.s3_region,
        "access_key_id": settings.s3_access_key_id,
        "secret_access_key": secret.get_secret_value() if secret else None,
        "unsigned_without_key": True,
    }
    client = s3_client(endpoint_url=settings.s3_endpoint_url, **common)
    presign_client = None
    if settings.s3_public_endpoint_url:
        presign_client = s3_client(endpoint_url=settings.s3_public_endpoint_url, **common)
    return S3Storage(url.netloc, url.path, client, presign_client)


@lru_cache
def get_storage() -> Storage:
    return storage_from_settings(get_settings())
