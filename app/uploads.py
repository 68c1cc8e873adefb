"""Receiving uploaded files: streamed to a temporary file with a size cap."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fastapi import UploadFile

from app.errors import ProblemError

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
