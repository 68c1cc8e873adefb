"""CSV and TSV: a header line, then one row per record, read with the csv module.

CSV follows RFC 4180 (fields with a comma, quote or line break are quoted). TSV has
no quoting, as in GLUE's files (SST-2 texts contain quote characters that are text).
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Sequence
from pathlib import Path

from app.datasets.formats.base import Row
from app.datasets.lines import text_lines
from app.datasets.problems import bad_row


class DelimitedReader:
    unit = "line"

    def __init__(self, path: Path, *, tsv: bool) -> None:
        self.path = path
        self.tsv = tsv
        self.header_line: int | None = None

    @property
    def _name(self) -> str:
        return "TSV" if self.tsv else "CSV"

    def _records(self) -> Iterator[tuple[int, list[str]]]:
        lines = (line for _, line in text_lines(self.path))
        if self.tsv:
            reader = csv.reader(lines, delimiter="\t", quoting=csv.QUOTE_NONE, strict=True)
        else:
            reader = csv.reader(lines, strict=True)
        while True:
            try:
                record = next(reader)
            except StopIteration:
                return
            except csv.Error as e:
                if "field limit" in str(e):
                    detail = f"has a field longer than {csv.field_size_limit()} characters"
                else:
                    detail = (
                        f"is not valid {self._name} ({e}); quote fields that hold a comma, "
                        'a quote (doubled: "") or a line break'
                    )
                raise bad_row(max(reader.line_num, 1), detail) from e
            if record:  # the csv module gives [] for a blank line
                yield reader.line_num, record

    @staticmethod
    def _check_header(line: int, header: list[str]) -> None:
        if len(set(header)) != len(header):
            repeated = sorted({h for h in header if header.count(h) > 1})
            raise bad_row(
                line, f"the header repeats column names {repeated}; give each column its own name"
            )

    def columns(self) -> list[str]:
        first = next(self._records(), None)
        if first is None:
            return []
        self.header_line, header = first
        self._check_header(*first)
        return header

    def rows(self, wanted: Sequence[str] | None = None) -> Iterator[Row]:
        records = self._records()
        first = next(records, None)
        if first is None:
            return
        header_line, header = first
        self._check_header(*first)
        hint = (
            "a TSV field may not contain a tab"
            if self.tsv
            else "quote fields that contain a comma or a line break"
        )
        for lineno, record in records:
            if len(record) != len(header):
                raise bad_row(
                    lineno,
                    f"has {len(record)} fields but the header (line {header_line}) has "
                    f"{len(header)}; every row needs one field per column ({hint})",
                )
            yield Row(lineno, dict(zip(header, record, strict=True)))
