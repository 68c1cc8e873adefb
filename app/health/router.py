from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import text

from app.broker import broker
from app.db import get_engine
from app.storage import get_storage

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ok", "unavailable"]
    checks: dict[str, str]


@router.get(
    "/healthz",
    response_model=Health,
    summary="Liveness",
    description="200 while the API process serves requests; it checks nothing else (use "
    "`/readyz` for the database, broker and storage). No API key needed.",
    operation_id="getLiveness",
)
def healthz() -> Health:
    return Health(status="ok")


def _check_database() -> None:
    with get_engine().connect() as conn:
        conn.execute(text("SELECT 1"))


def _check_broker() -> None:
    with broker().connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=3)
        if conn.transport_cls == "filesystem" or conn.transport.driver_type == "filesystem":
            return
        # For Redis, a real round trip rather than only a socket.
        conn.default_channel.client.ping()


@router.get(
    "/readyz",
    response_model=Readiness,
    summary="Readiness: database, broker and storage reachable",
    description="200 when the database, the broker and the object store all answer, else "
    "503 with `checks` naming the one that does not (the kind of failure only). For load "
    "balancers and orchestrators; no API key needed.",
    operation_id="getReadiness",
    responses={503: {"model": Readiness, "description": "A dependency is unreachable."}},
)
def readyz() -> JSONResponse:
    checks: dict[str, str] = {}
    for name, check in (
        ("database", _check_database),
        ("broker", _check_broker),
        ("storage", lambda: get_storage().check()),
    ):
        try:
            check()
            checks[name] = "ok"
        except Exception as e:  # the kind of failure, never its details (paths, URLs)
            checks[name] = f"unavailable ({type(e).__name__})"
    ok = all(v == "ok" for v in checks.values())
    body = Readiness(status="ok" if ok else "unavailable", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)
