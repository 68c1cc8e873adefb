"""multipart/form-data streamed from disk with an exact Content-Length, so an upload of
any size holds one chunk in memory and the server can refuse an oversize one at once."""

from __future__ import annotations

import os
import tarfile
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

CHUNK = 1024 * 1024

ProgressCallback = Callable[[int, int], None]


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', "%22").replace("\r", "").replace("\n", "")


class MultipartFile:
    """Form fields and one file; ``body()`` makes a fresh byte stream for each try."""

    def __init__(
        self,
        fields: dict[str, str],
        path: Path,
        *,
        filename: str | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> None:
        self.path = path
        self.size = path.stat().st_size
        self.on_progress = on_progress
        self.boundary = uuid.uuid4().hex
        head = b"".join(
            f'--{self.boundary}\r\nContent-Disposition: form-data; name="{_quote(k)}"'
            f"\r\n\r\n".encode()
            + v.encode()
            + b"\r\n"
            for k, v in fields.items()
        )
        self.head = (
            head
            + (
                f'--{self.boundary}\r\nContent-Disposition: form-data; name="file"; '
                f'filename="{_quote(filename or path.name)}"\r\n'
                "Content-Type: application/octet-stream\r\n\r\n"
            ).encode()
        )
        self.tail = f"\r\n--{self.boundary}--\r\n".encode()

    @property
    def headers(self) -> dict[str, str]:
        return {
            "Content-Type": f"multipart/form-data; boundary={self.boundary}",
            "Content-Length": str(len(self.head) + self.size + len(self.tail)),
        }

    def body(self) -> Iterator[bytes]:
        yield self.head
        sent = 0
        if self.on_progress is not None:
            self.on_progress(0, self.size)
        with open(self.path, "rb") as f:
            while chunk := f.read(CHUNK):
                yield chunk
                # Resumed when the transport wants the next chunk: this one is written.
                sent += len(chunk)
                if self.on_progress is not None:
                    self.on_progress(sent, self.size)
        yield self.tail


def form_fields(**values: str | int | None) -> dict[str, str]:
    return {k: str(v) for k, v in values.items() if v is not None}


@contextmanager
def packed(path: Path) -> Iterator[Path]:
    """A file as it is; a folder (a ``save_pretrained`` folder) as a temporary .tar.gz."""
    if not path.is_dir():
        yield path
        return
    fd, name = tempfile.mkstemp(prefix=f"{path.name}-", suffix=".tar.gz")
    os.close(fd)
    archive = Path(name)
    try:
        with tarfile.open(archive, "w:gz") as tf:
            for member in sorted(path.rglob("*")):
                if member.is_file():
                    tf.add(member, arcname=member.relative_to(path).as_posix())
        yield archive
    finally:
        archive.unlink(missing_ok=True)
