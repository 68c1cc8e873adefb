"""Every row belongs to a tenant; another tenant's id answers exactly as an unknown one."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy.orm import Session

from app.errors import not_found

T = TypeVar("T")


def get_owned(session: Session, table: type[T], id_: str, *, tenant: str, kind: str) -> T:
    row: Any = session.get(table, id_)
    if row is None or row.tenant != tenant:
        raise not_found(kind, id_)
    return row
