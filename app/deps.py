"""FastAPI dependencies as Annotated aliases."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from app.auth.service import Principal
from app.db import get_sessionmaker
from app.settings import Settings, get_settings
from app.storage import Storage, get_storage


def _session() -> Iterator[Session]:
    session = get_sessionmaker()()
    try:
        yield session
    finally:
        session.close()


# Declares the scheme in OpenAPI; the key itself is checked by app.guard before any route.
_bearer = HTTPBearer(auto_error=False, description="An API key: `modelpress keys create`.")


def _principal(
    request: Request,
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    return request.scope["state"]["principal"]


def _tenant(principal: Annotated[Principal, Depends(_principal)]) -> str:
    # Every query is scoped by this tenant; another tenant's id answers 404.
    return principal.tenant


SessionDep = Annotated[Session, Depends(_session)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
StorageDep = Annotated[Storage, Depends(get_storage)]
CurrentTenant = Annotated[str, Depends(_tenant)]
