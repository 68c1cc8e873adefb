"""Inputs given by URI: ``s3://<bucket>/<key>`` of a teacher archive or a dataset file
that the platform already keeps in S3, copied in and checked exactly as an upload.

Two places are allowed: this service's own bucket (outside its own ``models/``,
``datasets/`` and ``jobs/`` folders, which hold other tenants' objects), read with the
store's client; and the buckets the operator lists in ``MODELPRESS_INPUT_BUCKETS``
(``bucket`` or ``bucket/prefix/``), read with the ``MODELPRESS_INPUT_S3_*`` settings.
The rules of ``app/urls.py`` that apply are kept (one scheme, no credentials, only listed
hosts: here buckets); its DNS and private-address checks do not apply, because the object
is read from the endpoint the operator configured, never from an address the user chose.
"""

from __future__ import annotations

import posixpath
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit

from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from app.errors import ProblemError
from app.settings import Settings
from app.storage import S3Storage, Storage, StorageError, s3_client

PARAM = "uri"
Kind = Literal["model", "dataset"]
# Top-level folders where this service keeps its own objects (models/, datasets/, jobs/):
# a tenant may not name them, or it could copy another tenant's model or data.
SERVICE_FOLDERS = ("models", "datasets", "jobs")
MAX_KEY_BYTES = 1024  # S3's limit on a key


@dataclass(frozen=True)
class InputRef:
    bucket: str
    # In the service's store: relative to it (its prefix removed), as app.storage takes
    # keys; in a platform bucket: the whole key.
    key: str
    own: bool

    @property
    def filename(self) -> str:
        return posixpath.basename(self.key)


def _refuse(detail: str) -> ProblemError:
    return ProblemError(422, "url_not_allowed", detail, param=PARAM)


def input_buckets(settings: Settings) -> list[tuple[str, str]]:
    """MODELPRESS_INPUT_BUCKETS as (bucket, key prefix) pairs; the prefix ends with / or is
    empty, so ``teams/`` never matches ``teamsx/``."""
    out = []
    for entry in settings.input_buckets:
        bucket, _, prefix = entry.strip().removeprefix("s3://").strip("/").partition("/")
        if bucket:
            out.append((bucket, prefix.strip("/") + "/" if prefix.strip("/") else ""))
    return out


def _allowed(storage: Storage, settings: Settings) -> str:
    """The allowed places, for error messages."""
    places = []
    if isinstance(storage, S3Storage):
        own = f"s3://{storage.bucket}/" + (f"{storage.prefix}/" if storage.prefix else "")
        places.append(f"{own} (this service's object store)")
    places += [f"s3://{b}/{p}" for b, p in input_buckets(settings)]
    return ", ".join(places)


def parse_input_uri(uri: str, *, storage: Storage, settings: Settings, kind: Kind) -> InputRef:
    """Where ``uri`` points, or a 422 saying which URIs are accepted."""
    listed = input_buckets(settings)
    if not isinstance(storage, S3Storage) and not listed:
        raise ProblemError(
            422,
            f"{kind}_uri_unavailable",
            "This service keeps its objects on a local disk (MODELPRESS_STORAGE_URL is "
            "file://…), not in an S3 store, and reads no other bucket "
            "(MODELPRESS_INPUT_BUCKETS), so there is nothing an s3:// uri could name; "
            f"upload the {_thing(kind)} as `file` instead.",
            param=PARAM,
        )
    allowed = _allowed(storage, settings)
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError as e:
        raise _refuse("uri is not a valid URI.") from e
    if parts.scheme.lower() != "s3":
        raise _refuse(
            f"The scheme {parts.scheme or '(none)'!r} is not allowed; give the "
            f"{_thing(kind)}'s location as s3://<bucket>/<key> in {allowed}."
        )
    if parts.username or parts.password or parts.port:
        raise _refuse("URIs with credentials or a port in them are not accepted.")
    if parts.query or parts.fragment:
        raise _refuse("uri must not have a query (?…) or a fragment (#…).")
    bucket = parts.netloc
    full_key = unquote(parts.path).removeprefix("/")
    segments = full_key.split("/")
    if (
        not full_key
        or any(s in ("", ".", "..") for s in segments)
        or "\\" in full_key
        or any(ord(c) < 32 or ord(c) == 127 for c in full_key)
        or len(full_key.encode()) > MAX_KEY_BYTES
    ):
        raise _refuse(f"{uri!r} does not name an object: give s3://<bucket>/<key> in {allowed}.")
    if isinstance(storage, S3Storage) and bucket == storage.bucket:
        where = f"s3://{bucket}/" + (f"{storage.prefix}/" if storage.prefix else "")
        if not storage.prefix or full_key.startswith(storage.prefix + "/"):
            key = full_key[len(storage.prefix) + 1 :] if storage.prefix else full_key
            if key.split("/", 1)[0] in SERVICE_FOLDERS:
                raise _refuse(
                    f"{where}{key.split('/', 1)[0]}/ holds this service's own objects; give "
                    f"a {_thing(kind)} stored elsewhere in {allowed}."
                )
            return InputRef(bucket=bucket, key=key, own=True)
        if not _listed(listed, bucket, full_key):
            raise _refuse(f"This service's object store is {where}; give a key under it.")
    elif not _listed(listed, bucket, full_key):
        if not listed:
            own = storage.bucket if isinstance(storage, S3Storage) else ""
            raise _refuse(
                f"Only the bucket {own!r} (this service's object store) is "
                f"allowed, not {bucket!r}; copy the {_thing(kind)} to {allowed}<key>, or "
                "ask the operator to list the bucket in MODELPRESS_INPUT_BUCKETS."
            )
        raise _refuse(
            f"s3://{bucket}/{full_key} is not in a bucket this service may read; the allowed "
            f"places are {allowed} (MODELPRESS_INPUT_BUCKETS)."
        )
    return InputRef(bucket=bucket, key=full_key, own=False)


def _listed(listed: list[tuple[str, str]], bucket: str, key: str) -> bool:
    return any(b == bucket and key.startswith(p) for b, p in listed)


def _thing(kind: Kind) -> str:
    return "archive" if kind == "model" else "data file"


@lru_cache(maxsize=8)
def _input_client(endpoint: str | None, region: str, key_id: str | None, secret: str | None):
    return s3_client(
        endpoint_url=endpoint,
        region=region,
        access_key_id=key_id,
        secret_access_key=secret,
        unsigned_without_key=False,
    )


def input_client(settings: Settings):
    """The client for the platform's buckets. Keys: the input keys; else, on the store's
    own endpoint, the store's keys (same S3, same identity); else none, so boto3's default
    chain signs (environment, instance profile, pod role), never an unsigned request."""
    if settings.input_s3_access_key_id:
        key_id, secret = settings.input_s3_access_key_id, settings.input_s3_secret_access_key
    elif not settings.input_s3_endpoint_url:
        key_id, secret = settings.s3_access_key_id, settings.s3_secret_access_key
    else:
        key_id, secret = None, None
    return _input_client(
        settings.input_s3_endpoint_url or settings.s3_endpoint_url,
        settings.input_s3_region or settings.s3_region,
        key_id,
        secret.get_secret_value() if (secret and key_id) else None,
    )


def reader(ref: InputRef, *, storage: Storage, settings: Settings) -> Storage:
    if ref.own:
        return storage
    return S3Storage(ref.bucket, "", input_client(settings))


def _object_size(store: Storage, ref: InputRef, uri: str, kind: Kind) -> int:
    try:
        size = store.size(ref.key)
    except ClientError as e:
        code = e.response.get("Error", {}).get("Code", "")
        if code not in ("403", "AccessDenied"):
            raise _store_error(uri, kind, code) from e
        raise _forbidden(uri, kind) from e
    except NoCredentialsError as e:
        raise _forbidden(uri, kind) from e
    except BotoCoreError as e:  # endpoint unreachable, and the like
        raise _store_error(uri, kind, type(e).__name__) from e
    if size is None:
        raise _not_found(uri, kind)
    return size


def _forbidden(uri: str, kind: Kind) -> ProblemError:
    return ProblemError(
        422,
        f"{kind}_uri_forbidden",
        f"This service's credentials may not read {uri}; grant them read access to it, "
        f"or upload the {_thing(kind)} as `file`.",
        param=PARAM,
    )


def _store_error(uri: str, kind: Kind, what: str) -> ProblemError:
    return ProblemError(
        502,
        "input_store_error",
        f"The object store holding {uri} answered with an error ({what or 'unknown'}); "
        "try again later, or upload the file instead.",
        param=PARAM,
    )


def _not_found(uri: str, kind: Kind) -> ProblemError:
    return ProblemError(
        422, f"{kind}_uri_not_found", f"There is no object at {uri}; check the key.", param=PARAM
    )


def _too_large(max_bytes: int) -> ProblemError:
    return ProblemError(
        413,
        "upload_too_large",
        f"The object is larger than the limit of {max_bytes} bytes (MODELPRESS_MAX_UPLOAD_BYTES).",
        param=PARAM,
    )


@contextmanager
def fetched_uri(
    uri: str, *, storage: Storage, settings: Settings, kind: Kind, max_bytes: int
) -> Iterator[tuple[Path, str]]:
    """Stream the object that ``uri`` names to a temporary file (removed afterwards),
    capped like an upload; yields the file and the object's file name."""
    ref = parse_input_uri(uri, storage=storage, settings=settings, kind=kind)
    store = reader(ref, storage=storage, settings=settings)
    size = _object_size(store, ref, uri, kind)
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
                for chunk in store.iter_bytes(ref.key):
                    written += len(chunk)
                    if written > max_bytes:
                        raise _too_large(max_bytes)
                    out.write(chunk)
            except StorageError as e:  # deleted since its size was read
                raise _not_found(uri, kind) from e
        yield path, ref.filename
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def one_source(*, has_file: bool, uri: str | None, what: str) -> None:
    """Exactly one of `file` and `uri`, else a 422 naming the field to change."""
    if has_file != (uri is None):
        param = "file" if not has_file else "uri"
        message = (
            f"give the {what} as `file` (an upload) or as `uri` (s3://bucket/key)"
            if not has_file
            else "give either `file` or `uri`, not both"
        )
        raise ProblemError(
            422,
            "validation_error",
            f"{param}: {message}.",
            param=param,
            errors=[{"param": param, "message": message}],
        )
