"""CoNLL column files (CoNLL-2003 style): one token per line, its columns separated by
spaces or tabs (``EU NNP I-NP I-ORG``), a blank line between sentences, and
``-DOCSTART-`` lines between documents (skipped). Each sentence becomes a row
``{"tokens": [...], "tags": [...]}``; the tag is the last column unless ``tag_index``
(0 is the token) names another.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

from app.datasets.formats.base import Row
from app.datasets.lines import text_lines
from app.datasets.problems import MAX_TOKENS, bad_file, bad_row

DOCSTART = "-DOCSTART-"


class ConllReader:
    unit = "line"
    header_line: int | None = None

    def __init__(self, path: Path, *, tag_index: int | None = None) -> None:
        self.path = path
        self.tag_index = tag_index

    def columns(self) -> list[str]:
        return ["tokens", "tags"] if next(self.rows(), None) is not None else []

    def rows(self, wanted: Sequence[str] | None = None) -> Iterator[Row]:
        width: int | None = None
        first_line = 0
        tag_at = 0
        tokens: list[str] = []
        tags: list[str] = []
        lines: list[int] = []
        for lineno, line in text_lines(self.path):
            parts = line.split()
            if not parts or parts[0] == DOCSTART:
                if tokens:
                    yield Row(lines[0], {"tokens": tokens, "tags": tags}, lines, tag_at + 1)
                    tokens, tags, lines = [], [], []
                continue
            if width is None:
                width, first_line = len(parts), lineno
                if width < 2:
                    raise bad_row(
                        lineno,
                        "has one column; a CoNLL token line is the token and its tag "
                        "separated by a space or a tab (e.g. 'EU NNP I-NP I-ORG')",
                    )
                tag_at = width - 1 if self.tag_index is None else self.tag_index
                if not 1 <= tag_at < width:
                    raise bad_file(
                        f"tag_index {tag_at} is out of range: line {lineno} has {width} "
                        f"columns (0 is the token, so 1 to {width - 1}).",
                        param="tag_index",
                    )
            elif len(parts) != width:
                raise bad_row(
                    lineno,
                    f"broken sentence: this line has {len(parts)} columns but line "
                    f"{first_line} has {width}; every token line needs the same columns "
                    "(token ... tag), and a blank line (not a space) ends a sentence",
                )
            if len(tokens) == MAX_TOKENS:
                raise bad_row(
                    lines[0],
                    f"starts a sentence of more than {MAX_TOKENS} tokens; "
                    "is a blank line missing between sentences?",
                )
            tokens.append(parts[0])
            tags.append(parts[tag_at])
            lines.append(lineno)
        if tokens:
            yield Row(lines[0], {"tokens": tokens, "tags": tags}, lines, tag_at + 1)
