"""FastAPI dependencies as Annotated aliases."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from app.auth.service import Principal
from app.db import get_sessionmaker
from app.guard import SESSION, close_session
from app.settings import Settings, get_settings
from app.storage import Storage, get_storage


async def _session(request: Request) -> AsyncIterator[Session]:
    # The session the guard authenticated with (one connection per request, not two);
    # a new one where no guard ran. Async, so that lending it costs no worker thread;
    # closing does I/O, so it happens in one.
    session = request.scope.get("state", {}).pop(SESSION, None) or get_sessionmaker()()
    try:
        yield session
    finally:
        await close_session(session)


# Declares the scheme in OpenAPI; the key itself is checked by app.guard before any route.
_bearer = HTTPBearer(auto_error=False, description="An API key: `modelpress keys create`.")


# These two and _session are async: they do no I/O, and a sync dependency costs a trip
# to a worker thread each.
async def _principal(
    request: Request,
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    return request.scope["state"]["principal"]


async def _tenant(principal: Annotated[Principal, Depends(_principal)]) -> str:
    # Every query is scoped by this tenant; another tenant's id answers 404.
    return principal.tenant


SessionDep = Annotated[Session, Depends(_session)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
StorageDep = Annotated[Storage, Depends(get_storage)]
CurrentTenant = Annotated[str, Depends(_tenant)]
