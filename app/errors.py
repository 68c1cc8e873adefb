"""RFC 9457 problem+json for every error a client can see; never a stack trace."""

from __future__ import annotations

import logging
import re
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://modelpress.dev/problems/"


class Problem(BaseModel):
    """The error body (``application/problem+json``)."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    param: str | None = None
    errors: list[dict[str, Any]] | None = None


class ProblemError(Exception):
    """Raise from services; turned into a problem+json response."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        param: str | None = None,
        headers: dict[str, str] | None = None,
        errors: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.param = param
        self.headers = headers
        self.errors = errors


def not_found(kind: str, id_: str) -> ProblemError:
    return ProblemError(404, f"{kind}_not_found", f"No {kind} with id {id_!r}.")


def problem_response(
    status: int,
    code: str,
    detail: str,
    *,
    param: str | None = None,
    headers: dict[str, str] | None = None,
    errors: list[dict[str, Any]] | None = None,
) -> JSONResponse:
    body = Problem(
        type=TYPE_BASE + code,
        title=HTTPStatus(status).phrase,
        status=status,
        detail=detail,
        code=code,
        param=param,
        errors=errors,
    ).model_dump(exclude_none=True)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _loc_to_param(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header", "form"):
        parts = parts[1:]
    return ".".join(parts)


# pydantic's wording for an error raised in a validator; the message after it is ours.
_RAISED_PREFIXES = ("Value error, ", "Assertion failed, ")


def _message(err: dict[str, Any]) -> str:
    if err.get("type") == "extra_forbidden":
        return "unknown field; remove it or check its spelling"
    if err.get("type") == "missing":
        return "this field is required"
    msg = str(err.get("msg", "invalid value"))
    for prefix in _RAISED_PREFIXES:
        msg = msg.removeprefix(prefix)
    return msg


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def _not_json(request: Request, errors: list[Any]) -> JSONResponse | None:
    """A 415 when a JSON route got a body of another media type, or none named (curl -d
    sends a form's), rather than a 422 saying the body is no object: the fix is a
    header, not the body. A JSON route's whole-body error is at ("body",); form routes'
    errors name a field, and an absent body stays a 422 "required"."""
    content_type = request.headers.get("content-type", "")
    if _is_json(content_type):
        return None
    whole = [e for e in errors if tuple(e.get("loc", ())) == ("body",)]
    if not whole or any(e.get("type") == "missing" for e in whole):
        return None
    media = content_type.split(";", 1)[0].strip()
    sent = f"this request's Content-Type is {media!r}" if media else "this request names none"
    accept = "Accept-Patch" if request.method == "PATCH" else "Accept-Post"
    return problem_response(
        415,
        "unsupported_media_type",
        f"{request.method} {request.url.path} takes a JSON body, and {sent}: send the JSON "
        "with Content-Type: application/json (curl: -H 'Content-Type: application/json').",
        param="Content-Type",
        headers={accept: "application/json"},
    )


def _validation_handler(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    if (refused := _not_json(request, list(errors))) is not None:
        return refused
    for err in errors:
        if err.get("type") == "json_invalid":
            ctx = err.get("ctx") or {}
            reason = ctx.get("error", "malformed JSON")
            return problem_response(
                400,
                "invalid_json",
                f"The request body is not valid JSON ({reason}); send a JSON object.",
            )
    details = []
    for err in errors:
        param = _loc_to_param(err.get("loc", ()))
        details.append({"param": param, "message": _message(err)})
    first = details[0] if details else {"param": None, "message": "invalid request"}
    detail = "; ".join(f"{d['param'] or 'body'}: {d['message']}" for d in details)
    return problem_response(
        422, "validation_error", detail, param=first["param"] or None, errors=details
    )


def _problem_handler(_request: Request, exc: ProblemError) -> JSONResponse:
    return problem_response(
        exc.status, exc.code, exc.detail, param=exc.param, headers=exc.headers, errors=exc.errors
    )


def _allowed_methods(request: Request) -> list[str]:
    """Every method the path supports, from the OpenAPI document (Starlette's own Allow
    header names only the first route that matched the path)."""
    for template, operations in request.app.openapi()["paths"].items():
        pattern = "^" + re.sub(r"\\{[^/]+?\\}", "[^/]+", re.escape(template)) + "$"
        if re.match(pattern, request.url.path):
            return sorted(m.upper() for m in operations)
    return []


def _http_handler(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    code = {
        404: "not_found",
        405: "method_not_allowed",
        408: "body_incomplete",
        413: "upload_too_large",
    }.get(exc.status_code, "http_error")
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    headers = dict(getattr(exc, "headers", None) or {})
    if exc.status_code == 404 and detail == "Not Found":
        detail = "No such route; see /docs for the API."
    if exc.status_code == 405:
        allowed = _allowed_methods(request)
        headers["Allow"] = ", ".join(allowed)
        detail = f"{request.method} is not supported here; use {' or '.join(allowed)}."
    return problem_response(exc.status_code, code, detail, headers=headers or None)


DATABASE_RETRY_AFTER_S = 5


def database_unavailable() -> JSONResponse:
    return problem_response(
        503,
        "database_unavailable",
        "The database is not reachable right now; retry shortly.",
        headers={"Retry-After": str(DATABASE_RETRY_AFTER_S)},
    )


def _database_error(_request: Request, exc: Exception) -> JSONResponse:
    # Connection failures (server down, fail-over, network) are temporary: 503, and the
    # pool's pre-ping reconnects on its own once the database is back.
    if isinstance(exc, OperationalError | InterfaceError) or getattr(
        exc, "connection_invalidated", False
    ):
        log.warning("database unavailable: %s", type(exc).__name__)
        return database_unavailable()
    return _unhandled(_request, exc)


def _unhandled(_request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", exc_info=exc)
    return problem_response(
        500, "internal_error", "An unexpected error occurred; it has been logged."
    )


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation_handler)  # type: ignore[arg-type]
    app.add_exception_handler(ProblemError, _problem_handler)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_handler)  # type: ignore[arg-type]
    app.add_exception_handler(DBAPIError, _database_error)
    app.add_exception_handler(Exception, _unhandled)


# Documented in OpenAPI on every route that can fail.
def problem_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {
        c: {"model": Problem, "content": {PROBLEM_JSON: {}}, "description": HTTPStatus(c).phrase}
        for c in codes
    }
