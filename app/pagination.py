"""Keyset pagination over time-sortable ids, with an opaque cursor."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel

from app.errors import ProblemError

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    data: list[T]
    has_more: bool
    next_cursor: str | None


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
