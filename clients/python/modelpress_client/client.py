"""``Client``: every operation of the modelpress API."""

from __future__ import annotations

import os
from collections.abc import Callable
from types import TracebackType

import httpx

from modelpress_client._http import RetryInfo, Transport
from modelpress_client._jobs import JobsMixin
from modelpress_client._resources import ResourcesMixin
from modelpress_client._webhooks import WebhooksMixin
from modelpress_client.errors import ModelpressError

__version__ = "0.1.0"


class ConfigurationError(ModelpressError, ValueError):
    """The client was not told where the service is, or which key to use."""


class Client(ResourcesMixin, JobsMixin, WebhooksMixin):
    """A modelpress service, e.g. ``Client("http://localhost:8000", api_key="mp_…")``.

    ``url`` and ``api_key`` default to ``MODELPRESS_URL`` and ``MODELPRESS_API_KEY``.
    429 and 503 answers are retried after their ``Retry-After`` (at most
    ``max_retry_wait`` seconds each, ``max_retries`` times), as are connection failures
    of requests that are safe to repeat; ``on_retry`` is told of each retry.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        api_key: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 4,
        max_retry_wait: float = 30.0,
        on_retry: Callable[[RetryInfo], None] | None = None,
        http: httpx.Client | None = None,
    ) -> None:
        url = url or os.environ.get("MODELPRESS_URL")
        api_key = api_key or os.environ.get("MODELPRESS_API_KEY")
        missing = [
            f"{what} (argument {arg} or environment variable {env})"
            for what, value, arg, env in (
                ("the service URL", url, "url", "MODELPRESS_URL"),
                ("an API key", api_key, "api_key", "MODELPRESS_API_KEY"),
            )
            if not value
        ]
        if missing:
            raise ConfigurationError(
                "modelpress client: give " + " and ".join(missing), code="configuration"
            )
        assert url is not None and api_key is not None
        if not url.startswith(("http://", "https://")):
            raise ConfigurationError(
                f"modelpress client: the URL must start with http:// or https://, not {url!r}",
                code="configuration",
                param="url",
            )
        self.url = url.rstrip("/")
        self._t = Transport(
            base_url=self.url,
            api_key=api_key,
            timeout=timeout,
            max_retries=max_retries,
            max_retry_wait=max_retry_wait,
            on_retry=on_retry,
            http=http,
            user_agent=f"modelpress-client/{__version__}",
        )

    def close(self) -> None:
        self._t.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
