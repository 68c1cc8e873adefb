"""JSON Lines: one JSON object per line; blank lines are skipped."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path

from app.datasets.formats.base import Row
from app.datasets.lines import text_lines
from app.datasets.problems import bad_row


class JsonlReader:
    unit = "line"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.header_line: int | None = None

    def columns(self) -> list[str]:
        first = next(self.rows(), None)
        if first is None:
            return []
        self.header_line = first.where
        return list(first.values)

    def rows(self, wanted: Sequence[str] | None = None) -> Iterator[Row]:
        for lineno, line in text_lines(self.path):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError as e:
                msg = getattr(e, "msg", str(e))
                raise bad_row(
                    lineno, f"is not a JSON object ({msg}); JSONL needs one JSON object per line"
                ) from e
            if not isinstance(obj, dict):
                raise bad_row(lineno, "is not a JSON object; JSONL needs one JSON object per line")
            yield Row(lineno, obj)
