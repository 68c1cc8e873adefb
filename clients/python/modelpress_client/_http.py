"""HTTP with the API's conventions: the bearer key, problem+json errors, bounded retries.

Retried: 429 and 503 after their ``Retry-After`` (capped), any request that never
reached the server (connection refused, connect timeout), and, for idempotent
requests only, a connection that broke after the request went out.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from modelpress_client.errors import ConnectionFailed, error_from_response

RETRY_STATUSES = (429, 503)
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
# The request was never sent: safe to send again whatever its method.
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


@dataclass(frozen=True)
class RetryInfo:
    """Passed to ``on_retry`` before each retry: what failed and how long the wait is."""

    method: str
    url: str
    attempt: int  # 1 for the first retry
    wait_s: float
    status: int | None  # the HTTP status that caused it, or None for a connection error
    error: str | None


class Transport:
    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        timeout: float,
        max_retries: int,
        max_retry_wait: float,
        on_retry: Callable[[RetryInfo], None] | None,
        http: httpx.Client | None,
        user_agent: str,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.max_retries = max_retries
        self.max_retry_wait = max_retry_wait
        self.on_retry = on_retry
        self._own_http = http is None
        self.http = http or httpx.Client(timeout=timeout)
        self.headers = {"Authorization": f"Bearer {api_key}", "User-Agent": user_agent}

    def close(self) -> None:
        if self._own_http:
            self.http.close()

    def url(self, path: str) -> str:
        return path if path.startswith(("http://", "https://")) else self.base_url + path

    def backoff(self, attempt: int) -> float:
        # Exponential with jitter, so many clients do not come back in step.
        return min(0.5 * 2 ** (attempt - 1) * (0.5 + random.random()), self.max_retry_wait)

    def pause(self, info: RetryInfo) -> None:
        if self.on_retry is not None:
            self.on_retry(info)
        time.sleep(info.wait_s)

    def send(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        headers: dict[str, str] | None = None,
        content: Callable[[], bytes | Iterable[bytes]] | None = None,
        idempotent: bool | None = None,
        stream: bool = False,
        timeout: httpx.Timeout | None = None,
        ok_statuses: tuple[int, ...] = (),
    ) -> httpx.Response:
        """One call, retried as the module says; an error answer raises its exception.

        ``content`` is a factory, called once per try, so a streamed body can be sent
        again. With ``stream`` the caller reads and closes the answer."""
        method = method.upper()
        url = self.url(path)
        if idempotent is None:
            idempotent = method in IDEMPOTENT_METHODS
        extra: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
        params = {k: v for k, v in (params or {}).items() if v is not None}
        attempt = 0
        while True:
            attempt += 1
            request = self.http.build_request(
                method,
                url,
                params=params,
                json=json,
                content=content() if content is not None else None,
                headers={**self.headers, **(headers or {})},
                **extra,
            )
            try:
                response = self.http.send(request, stream=stream)
            except httpx.TransportError as e:
                retryable = isinstance(e, NOT_SENT) or (
                    idempotent and not isinstance(e, httpx.UnsupportedProtocol)
                )
                if not retryable or attempt > self.max_retries:
                    what = "cannot reach" if isinstance(e, NOT_SENT) else "the connection broke:"
                    raise ConnectionFailed(
                        f"{what} {method} {url} ({type(e).__name__}: {e})",
                        code="connection_failed",
                    ) from e
                self.pause(
                    RetryInfo(method, url, attempt, self.backoff(attempt), None, type(e).__name__)
                )
                continue
            if response.status_code < 400 or response.status_code in ok_statuses:
                return response
            if stream:
                response.read()
                response.close()
            error = error_from_response(response)
            if response.status_code in RETRY_STATUSES and attempt <= self.max_retries:
                wait = error.retry_after
                wait = self.backoff(attempt) if wait is None else min(wait, self.max_retry_wait)
                self.pause(RetryInfo(method, url, attempt, wait, response.status_code, error.code))
                continue
            raise error

    def json(self, method: str, path: str, **kw: Any) -> Any:
        response = self.send(method, path, **kw)
        return None if response.status_code == 204 or not response.content else response.json()

    @contextmanager
    def stream(self, method: str, path: str, **kw: Any) -> Iterator[httpx.Response]:
        response = self.send(method, path, stream=True, **kw)
        try:
            yield response
        finally:
            response.close()
