"""A teacher given by URI: ``s3://<bucket>/<key>`` of an archive already in this service's
object store, for platforms that keep their models there.

The rules of ``app/urls.py`` that apply to such a URI are kept (an allowed scheme, no
credentials, one allowed host: here the configured bucket). Its DNS and private-address
checks do not apply: the object is read with the store's own client and endpoint, which
the operator configured, never from an address the user chose.
"""

from __future__ import annotations

import posixpath
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from botocore.exceptions import ClientError

from app.errors import ProblemError
from app.storage import S3Storage, Storage, StorageError

PARAM = "uri"
# Top-level folders where this service keeps its own objects (models/, datasets/, jobs/):
# a tenant may not name them, or it could copy another tenant's model or data.
SERVICE_FOLDERS = ("models", "datasets", "jobs")
MAX_KEY_BYTES = 1024  # S3's limit on a key


@dataclass(frozen=True)
class ModelURI:
    bucket: str
    key: str  # relative to the store (its prefix removed), as app.storage takes keys

    @property
    def filename(self) -> str:
        return posixpath.basename(self.key)


def _refuse(detail: str) -> ProblemError:
    return ProblemError(422, "url_not_allowed", detail, param=PARAM)


def parse_model_uri(uri: str, *, storage: Storage) -> ModelURI:
    """The store key that ``uri`` names, or a 422 saying which URIs are accepted."""
    if not isinstance(storage, S3Storage):
        raise ProblemError(
            422,
            "model_uri_unavailable",
            "This service keeps its objects on a local disk (MODELPRESS_STORAGE_URL is "
            "file://…), not in an S3 store, so there is nothing an s3:// uri could name; "
            "upload the archive as `file` instead.",
            param=PARAM,
        )
    where = f"s3://{storage.bucket}/" + (f"{storage.prefix}/" if storage.prefix else "")
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError as e:
        raise _refuse("uri is not a valid URI.") from e
    if parts.scheme.lower() != "s3":
        raise _refuse(
            f"The scheme {parts.scheme or '(none)'!r} is not allowed; give the archive's "
            f"location in this service's object store as {where}<key>."
        )
    if parts.username or parts.password or parts.port:
        raise _refuse("URIs with credentials or a port in them are not accepted.")
    if parts.query or parts.fragment:
        raise _refuse("uri must not have a query (?…) or a fragment (#…).")
    bucket = parts.netloc
    if bucket != storage.bucket:
        raise _refuse(
            f"Only the bucket {storage.bucket!r} (this service's object store) is allowed, "
            f"not {bucket!r}; copy the archive to {where}<key>."
        )
    full_key = unquote(parts.path).removeprefix("/")
    segments = full_key.split("/")
    if (
        not full_key
        or any(s in ("", ".", "..") for s in segments)
        or "\\" in full_key
        or any(ord(c) < 32 or ord(c) == 127 for c in full_key)
        or len(full_key.encode()) > MAX_KEY_BYTES
    ):
        raise _refuse(f"{uri!r} does not name an object: give {where}<key>.")
    key = full_key
    if storage.prefix:
        if not full_key.startswith(storage.prefix + "/"):
            raise _refuse(f"This service's object store is {where}; give a key under it.")
        key = full_key[len(storage.prefix) + 1 :]
    if key.split("/", 1)[0] in SERVICE_FOLDERS:
        raise _refuse(
            f"{where}{key.split('/', 1)[0]}/ holds this service's own objects; give an "
            f"archive stored elsewhere in {where}."
        )
    return ModelURI(bucket=bucket, key=key)


def _object_size(storage: Storage, ref: ModelURI, uri: str) -> int:
    try:
        size = storage.size(ref.key)
    except ClientError as e:
        code = e.response.get("Error", {}).get("Code", "")
        if code in ("403", "AccessDenied"):
            raise ProblemError(
                422,
                "model_uri_forbidden",
                f"This service's credentials may not read {uri}; grant them read access "
                "to it, or upload the archive as `file`.",
                param=PARAM,
            ) from e
        raise
    if size is None:
        raise _not_found(uri)
    return size


def _not_found(uri: str) -> ProblemError:
    return ProblemError(
        422, "model_uri_not_found", f"There is no object at {uri}; check the key.", param=PARAM
    )


def _too_large(max_bytes: int) -> ProblemError:
    return ProblemError(
        413,
        "upload_too_large",
        f"The object is larger than the limit of {max_bytes} bytes (MODELPRESS_MAX_UPLOAD_BYTES).",
        param=PARAM,
    )


@contextmanager
def fetched_model_uri(uri: str, *, storage: Storage, max_bytes: int) -> Iterator[tuple[Path, str]]:
    """Stream the object that ``uri`` names to a temporary file (removed afterwards),
    capped like an upload; yields the file and the object's file name."""
    ref = parse_model_uri(uri, storage=storage)
    size = _object_size(storage, ref, uri)
    if size > max_bytes:
        raise _too_large(max_bytes)
    if size == 0:
        raise ProblemError(422, "file_empty", f"The object at {uri} is empty.", param=PARAM)
    tmpdir = Path(tempfile.mkdtemp(prefix="modelpress-uri-"))
    try:
        path = tmpdir / "download"
        written = 0
        with open(path, "wb") as out:
            try:
                # Counted again while reading: the object may be replaced after the size
                # was read.
                for chunk in storage.iter_bytes(ref.key):
                    written += len(chunk)
                    if written > max_bytes:
                        raise _too_large(max_bytes)
                    out.write(chunk)
            except StorageError as e:  # deleted since its size was read
                raise _not_found(uri) from e
        yield path, ref.filename
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
