"""Lines of an uploaded text file, decoded one at a time with a length cap."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from app.datasets.problems import MAX_LINE_BYTES, bad_row


def text_lines(path: Path, *, max_bytes: int = MAX_LINE_BYTES) -> Iterator[tuple[int, str]]:
    """Yield ``(line number, text)``, the newline kept (the csv module needs it).

    A bounded ``readline`` keeps one enormous line from being read into memory whole.
    """
    with open(path, "rb") as f:
        lineno = 0
        while raw := f.readline(max_bytes + 1):
            lineno += 1
            if len(raw) > max_bytes:
                raise bad_row(
                    lineno,
                    f"is longer than {max_bytes // 1024} KiB; split the text or shorten it",
                )
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise bad_row(
                    lineno,
                    f"is not UTF-8 text (byte 0x{raw[e.start]:02x} at character {e.start + 1}); "
                    "save the file as UTF-8",
                ) from e
            if lineno == 1:
                line = line.removeprefix("\ufeff")  # a byte-order mark, as Excel writes
            yield lineno, line
