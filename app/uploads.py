"""Receiving uploaded files: streamed to a temporary file with a size cap."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fastapi import UploadFile

from app.errors import ProblemError
from app.inputs import Kind, fetched_uri, one_source
from app.settings import Settings
from app.storage import Storage

CHUNK = 1024 * 1024


@contextmanager
def spooled_upload(upload: UploadFile, *, max_bytes: int) -> Iterator[Path]:
    """Copy an upload to a temporary file (removed afterwards), refusing oversize ones."""
    tmpdir = Path(tempfile.mkdtemp(prefix="modelpress-upload-"))
    try:
        path = tmpdir / "upload"
        size = 0
        with open(path, "wb") as out:
            while chunk := upload.file.read(CHUNK):
                size += len(chunk)
                if size > max_bytes:
                    raise ProblemError(
                        413,
                        "upload_too_large",
                        f"The file is larger than the limit of {max_bytes} bytes "
                        "(MODELPRESS_MAX_UPLOAD_BYTES).",
                        param="file",
                    )
                out.write(chunk)
        if size == 0:
            raise ProblemError(422, "file_empty", "The uploaded file is empty.", param="file")
        yield path
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


@contextmanager
def received(
    *,
    file: UploadFile | None,
    uri: str | None,
    kind: Kind,
    what: str,
    storage: Storage,
    settings: Settings,
) -> Iterator[tuple[Path, str]]:
    """An input as a local file and its name, uploaded as ``file`` or named by ``uri``
    (exactly one of them, else a 422). A problem found in it names the field it came by:
    the checks say ``file``, which by uri is ``uri``."""
    one_source(has_file=file is not None, uri=uri, what=what)
    if uri is not None:
        source = fetched_uri(
            uri, storage=storage, settings=settings, kind=kind, max_bytes=settings.max_upload_bytes
        )
    else:
        assert file is not None
        source = _spooled(file, max_bytes=settings.max_upload_bytes, default_name=kind)
    try:
        with source as got:
            yield got
    except ProblemError as e:
        if uri is not None and e.param == "file":
            e.param = "uri"
        raise


@contextmanager
def _spooled(file: UploadFile, *, max_bytes: int, default_name: str) -> Iterator[tuple[Path, str]]:
    with spooled_upload(file, max_bytes=max_bytes) as path:
        yield path, file.filename or default_name
