"""What every format reader gives the dataset builders: rows of named values."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass
class Row:
    where: int  # the line (text formats) or the row number (Parquet), counted from 1
    values: dict[str, Any]
    # CoNLL: the line of each token and the column of the tags (1-based), for errors
    item_lines: list[int] | None = None
    item_column: int | None = None


class Reader(Protocol):
    """Reads one uploaded file; ``rows`` can be called again for a second pass."""

    unit: str  # "line" or "row": how a problem's location is named
    header_line: int | None  # where the column names come from, if a line does

    def columns(self) -> list[str]:
        """The column names (empty when the file has no rows)."""
        ...

    def rows(self, wanted: Sequence[str] | None = None) -> Iterator[Row]:
        """Every row; ``wanted`` lets a columnar reader read only those columns."""
        ...
