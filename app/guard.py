"""What every request passes before it reaches a route: the API key, its scope, and
the upload size limit.

It is ASGI middleware rather than a route dependency so that the order is always the
same: a request without a valid key gets 401 even if its body is malformed or huge, and
an oversized body is refused while it streams in, before it is held anywhere.
"""

from __future__ import annotations

from typing import Any

import anyio
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.auth.key_cache import KEYS
from app.auth.service import Principal, authenticate, hash_key
from app.db import get_sessionmaker
from app.errors import database_unavailable, problem_response
from app.linger import LingeringSend
from app.settings import get_settings

PROTECTED_PREFIX = "/v1/"
# Where the guard leaves its open session in scope["state"] for app.deps to take.
SESSION = "db_session"
WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


class BodyIncomplete(HTTPException):
    # 408: the server waited for bytes the client declared and never sent; a client may
    # send the request again (errors.py renders it with code body_incomplete).
    def __init__(self, received: int, declared: int, timeout: float) -> None:
        super().__init__(
            408,
            f"The request body stopped after {received} of the {declared} bytes its "
            f"Content-Length declared (nothing more came for {timeout:g} s); send the "
            "whole body, or a Content-Length that matches it.",
        )


class BodyTooLarge(HTTPException):
    # An HTTPException, because FastAPI turns any other error raised while it parses a
    # body into a 400; errors.py renders it as problem+json with code upload_too_large.
    def __init__(self, limit: int) -> None:
        super().__init__(
            413,
            f"The request body is larger than the limit of {limit} bytes "
            "(MODELPRESS_MAX_UPLOAD_BYTES).",
        )


def _lookup(token: str) -> tuple[Principal, Session] | None:
    """The key's principal and the session that read it, still open: the route borrows
    it (app.deps), so that a request checks out one connection, not two."""
    session = get_sessionmaker()()
    try:
        principal = authenticate(session=session, key=token)
    except BaseException:
        session.close()
        raise
    if principal is None:
        session.close()
        return None
    return principal, session


async def close_session(session: Session) -> None:
    """Close (roll back, return the connection) in a worker thread, also when the request
    was cancelled: the connection goes back to the pool either way."""
    if not session.in_transaction():
        # No connection held (never used, or closed by its route): no I/O, no thread.
        session.close()
        return
    with anyio.CancelScope(shield=True):
        await anyio.to_thread.run_sync(session.close)


def _bearer(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            kind, _, token = value.decode("latin-1").partition(" ")
            if kind.lower() == "bearer" and token.strip():
                return token.strip()
    return None


def _before_the_body(scope: Scope, receive: Receive, send: Send) -> Send:
    """The send() for an answer given before the request's body is read: one that drains
    the body (LingeringSend) if the request has one."""
    headers = dict(scope["headers"])
    declared = headers.get(b"content-length", b"0")
    if b"transfer-encoding" in headers:
        return LingeringSend(receive, send, pending=None)
    if declared.isdigit() and int(declared) > 0:
        return LingeringSend(receive, send, pending=int(declared))
    return send


class GuardMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"].startswith(PROTECTED_PREFIX):
            refusal = await self._authorize(scope)
            if refusal is not None:
                # An upload with a bad key is refused before its body is read: drained
                # like a 413, so the client reads the 401/403 (app/linger.py).
                await refusal(scope, receive, _before_the_body(scope, receive, send))
                return
        try:
            await self._limited(scope, receive, send)
        finally:
            # The authenticating session, unless a route took it (app.deps closes those).
            unclaimed = scope.get("state", {}).pop(SESSION, None)
            if unclaimed is not None:
                await close_session(unclaimed)

    async def _limited(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The request passed on with its body held to the size limit."""
        limit = get_settings().max_upload_bytes
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            try:
                too_big = int(declared) > limit
            except ValueError:
                await problem_response(400, "bad_request", "Invalid Content-Length.")(
                    scope, receive, send
                )
                return
            if too_big:
                # Answered before a byte of the body is read (so no 100 Continue is sent),
                # then the body drained: see app/linger.py.
                exc = BodyTooLarge(limit)
                drain = _before_the_body(scope, receive, send)
                await problem_response(413, "upload_too_large", exc.detail)(scope, receive, drain)
                return
        received = 0
        expected = int(declared) if declared is not None else None
        timeout = get_settings().body_read_timeout_seconds

        body_done = False
        # Set once a chunked body passes the limit: the 413 the app then sends goes out
        # through a LingeringSend, the rest of the body drained.
        lingering: LingeringSend | None = None

        async def limited() -> Message:
            # Chunked bodies declare no length: count as they arrive.
            nonlocal received, body_done, lingering
            if body_done:
                # After the body, receive() waits for the client to go (a streamed
                # response listens for it): no time limit there.
                return await receive()
            try:
                # A body that stalls (fewer bytes than declared, the connection kept
                # open) would otherwise hold the request, and a worker thread, forever.
                with anyio.fail_after(timeout):
                    message = await receive()
            except TimeoutError:
                raise BodyIncomplete(received, expected or received, timeout) from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_done = True
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    if not body_done:
                        lingering = LingeringSend(receive, send, pending=None)
                    raise BodyTooLarge(limit)
            return message

        async def sending(message: Message) -> None:
            await (lingering or send)(message)

        await self.app(scope, limited, sending)

    async def _authorize(self, scope: Scope) -> Any:
        token = _bearer(scope)
        if token is None:
            return problem_response(
                401,
                "unauthenticated",
                "Send an API key as 'Authorization: Bearer <key>'; create one with "
                "`modelpress keys create --tenant NAME`.",
                headers={"WWW-Authenticate": "Bearer"},
            )
        key_hash = hash_key(token)
        # A key accepted in the last few seconds is not looked up again (key_cache.py);
        # the route then opens its own session (app.deps).
        principal, session = KEYS.get(key_hash), None
        if principal is None:
            try:
                found = await anyio.to_thread.run_sync(_lookup, token)
            except (OperationalError, InterfaceError):
                return database_unavailable()
            if found is None:
                return problem_response(
                    401,
                    "invalid_api_key",
                    "The API key is unknown or revoked.",
                    headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
                )
            principal, session = found
            KEYS.put(key_hash, principal, ttl=get_settings().api_key_cache_seconds)
        if scope["method"] in WRITE_METHODS and not principal.allows("write"):
            if session is not None:
                await close_session(session)
            return problem_response(
                403,
                "insufficient_scope",
                f"This API key has scope '{principal.scope}'; {scope['method']} needs a key "
                "with scope 'write' or 'admin'.",
            )
        state = scope.setdefault("state", {})
        state["principal"] = principal
        if session is not None:
            state[SESSION] = session
        return None
