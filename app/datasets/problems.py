"""The 422 that a bad upload gets: where (line or row, and column) and what to do."""

from __future__ import annotations

from app.errors import ProblemError

# Caps that keep one row from exhausting the API or the worker; a real text or
# sentence is far below them.
MAX_LINE_BYTES = 1024 * 1024
MAX_TEXT_CHARS = 100_000
MAX_TOKENS = 2_000
MAX_LABELS = 1000


def bad_row(
    where: int,
    detail: str,
    *,
    column: str | int | None = None,
    unit: str = "line",
    code: str = "dataset_invalid",
    param: str = "file",
) -> ProblemError:
    """A problem at one line (text formats) or row (Parquet), optionally one column."""
    place = f"{unit} {where}"
    if isinstance(column, int):
        place += f", column {column}"
    elif column is not None:
        place += f", column {column!r}"
    return ProblemError(
        422,
        code,
        f"{place}: {detail}",
        param=param,
        errors=[{unit: where, "column": column, "message": detail}],
    )


def bad_file(detail: str, *, param: str = "file", code: str = "dataset_invalid") -> ProblemError:
    return ProblemError(422, code, detail, param=param)
