"""Exceptions: every problem+json answer of the API becomes a ``ModelpressError``."""

from __future__ import annotations

from typing import Any

import httpx


class ModelpressError(Exception):
    """An error answer of the API (RFC 9457 problem+json), or one the client found.

    ``code`` is the API's stable error code (``job_not_found``, ``validation_error``…),
    ``param`` the field at fault when there is one, ``detail`` the human sentence.
    """

    def __init__(
        self,
        detail: str,
        *,
        status: int | None = None,
        code: str | None = None,
        param: str | None = None,
        errors: list[dict[str, Any]] | None = None,
        body: dict[str, Any] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.param = param
        self.detail = detail
        self.errors = errors or []
        self.body = body or {}
        self.retry_after = retry_after

    def __str__(self) -> str:
        head = " ".join(str(p) for p in (self.status, self.code) if p is not None)
        where = f" (param {self.param})" if self.param else ""
        return f"{head}: {self.detail}{where}" if head else self.detail


class BadRequest(ModelpressError):
    """400: a malformed request (bad JSON, an invalid cursor)."""


class Unauthorized(ModelpressError):
    """401: no API key, or one that is unknown or revoked."""


class Forbidden(ModelpressError):
    """403: the key's scope does not allow this, or a storage quota is full."""


class NotFound(ModelpressError):
    """404: no such resource for this tenant."""


class Conflict(ModelpressError):
    """409: the resource's state forbids this (a reused Idempotency-Key, a job still active)."""


class Gone(ModelpressError):
    """410: the resource existed but its bytes are no longer stored."""


class PayloadTooLarge(ModelpressError):
    """413: an upload over the service's size limits."""


class ValidationFailed(ModelpressError):
    """422: a field's value is wrong; ``param`` names it, ``errors`` lists every one."""


class RateLimited(ModelpressError):
    """429: a quota or rate limit; ``retry_after`` says when to try again (seconds)."""


class ServiceUnavailable(ModelpressError):
    """503: a dependency of the service is down for now; ``retry_after`` when known."""


class ServerError(ModelpressError):
    """5xx other than 503: the service failed; it has logged the cause."""


class ConnectionFailed(ModelpressError):
    """The service could not be reached (after the client's retries)."""


class ChecksumMismatch(ModelpressError):
    """A downloaded artifact's bytes do not match the sha256 the API lists for it."""


class WaitTimeout(ModelpressError, TimeoutError):
    """``Client.wait`` ran out of time before the job ended; ``job`` is its last state."""

    def __init__(self, detail: str, *, job: Any = None) -> None:
        super().__init__(detail, code="wait_timeout")
        self.job = job


_BY_STATUS: dict[int, type[ModelpressError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    410: Gone,
    413: PayloadTooLarge,
    422: ValidationFailed,
    429: RateLimited,
    503: ServiceUnavailable,
}


def retry_after_seconds(response: httpx.Response) -> float | None:
    """``Retry-After`` in seconds (delta-seconds form; an HTTP date is read as well)."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    from datetime import UTC, datetime

    return max((when - datetime.now(UTC)).total_seconds(), 0.0)


def error_from_response(response: httpx.Response) -> ModelpressError:
    """The exception for an error answer, from its problem+json body when it has one."""
    body: dict[str, Any] = {}
    try:
        parsed = response.json()
        if isinstance(parsed, dict):
            body = parsed
    except ValueError:
        pass
    status = response.status_code
    detail = body.get("detail") or body.get("title") or response.reason_phrase or "error"
    cls = _BY_STATUS.get(status) or (ServerError if status >= 500 else ModelpressError)
    return cls(
        str(detail),
        status=status,
        code=body.get("code"),
        param=body.get("param"),
        errors=body.get("errors"),
        body=body,
        retry_after=retry_after_seconds(response),
    )
