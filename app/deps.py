"""FastAPI dependencies as Annotated aliases."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends
from sqlalchemy.orm import Session

from app.db import get_sessionmaker
from app.settings import Settings, get_settings
from app.storage import Storage, get_storage


def _session() -> Iterator[Session]:
    session = get_sessionmaker()()
    try:
        yield session
    finally:
        session.close()


def _tenant() -> str:
    # Every row carries its tenant and every query filters by it; API keys that name
    # the tenant are issue #6. Until then there is one tenant.
    return "default"


SessionDep = Annotated[Session, Depends(_session)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
StorageDep = Annotated[Storage, Depends(get_storage)]
CurrentTenant = Annotated[str, Depends(_tenant)]
