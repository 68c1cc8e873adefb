"""Keyset pagination over time-sortable ids, with an opaque cursor."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel
from sqlalchemy import Select
from sqlalchemy.orm import InstrumentedAttribute, Session

from app.errors import ProblemError

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    data: list[T]
    has_more: bool
    next_cursor: str | None

    @classmethod
    def of(cls, rows: list[Any], has_more: bool, convert: Callable[[Any], T]) -> Page[T]:
        return cls(
            data=[convert(r) for r in rows],
            has_more=has_more,
            next_cursor=encode_cursor(rows[-1].id) if has_more else None,
        )


def keyset(
    session: Session,
    query: Select,
    id_column: InstrumentedAttribute[str],
    *,
    limit: int,
    after: str | None,
) -> tuple[list[Any], bool]:
    """Newest first, ``limit`` rows after the cursor; filters in ``query`` apply first."""
    if after:
        query = query.where(id_column < decode_cursor(after))
    rows = list(session.scalars(query.order_by(id_column.desc()).limit(limit + 1)))
    return rows[:limit], len(rows) > limit


def encode_cursor(last_id: str) -> str:
    return base64.urlsafe_b64encode(last_id.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raw = ""
    if "_" not in raw or not raw.isascii():
        raise ProblemError(
            400,
            "invalid_cursor",
            "The cursor is not one this API returned; pass next_cursor as is.",
            param="after",
        )
    return raw


LimitQuery = Annotated[int, Query(ge=1, le=100, description="Page size (1-100).")]
AfterQuery = Annotated[
    str | None, Query(description="Opaque cursor: next_cursor from the previous page.")
]
