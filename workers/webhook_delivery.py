"""Webhook deliveries: one attempt per task run, retried by Celery with exponential
backoff and full jitter until it succeeds or runs out of attempts.

Runs on the ``webhooks`` queue, in a worker of its own (``modelpress worker --queues
webhooks``, a thread pool: deliveries wait on the network, not on the CPU), never in the
API's request or in a compression worker.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import timedelta
from urllib.parse import urlsplit, urlunsplit

import httpx
from celery.utils.time import get_exponential_backoff_interval

from app.db import session_scope, utcnow
from app.errors import ProblemError
from app.queues import DELIVER_WEBHOOK_TASK
from app.settings import Settings, get_settings
from app.urls import check_user_url
from app.webhooks import service as webhooks
from app.webhooks.signing import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    signature_header,
)
from workers.celery_app import celery_app

log = logging.getLogger(__name__)
# httpx logs every request at INFO; attempts are recorded (and failures logged) here.
logging.getLogger("httpx").setLevel(logging.WARNING)
USER_AGENT = "modelpress-webhooks/1"


def post(url: str, body: bytes, headers: dict[str, str], *, settings: Settings) -> int:
    """POST to ``url`` at an address checked just now, and return the status code.

    The host is resolved and checked here (not only when the webhook was created), and
    the connection goes to that checked address, so a DNS answer that changed since
    (rebinding to 127.0.0.1 or 169.254.169.254) cannot redirect a delivery. TLS still
    verifies the certificate against the host name (SNI)."""
    checked = check_user_url(url, settings=settings, param="url")
    parts = urlsplit(url)
    ip = checked.addresses[0]
    netloc = f"[{ip}]:{checked.port}" if ":" in ip else f"{ip}:{checked.port}"
    pinned = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
    extensions = {"sni_hostname": checked.host} if parts.scheme == "https" else {}
    with (
        httpx.Client(
            timeout=settings.webhook_timeout_seconds, follow_redirects=False, trust_env=False
        ) as client,
        client.stream(
            "POST",
            pinned,
            content=body,
            headers={**headers, "Host": parts.netloc},
            extensions=extensions,
        ) as response,
    ):
        # The status is all we need: the body is never read, so a receiver cannot
        # make us download anything.
        return response.status_code


def attempt(delivery_id: str, *, retries: int, settings: Settings) -> float | None:
    """One attempt; returns the seconds until the next one, or None when done."""
    with session_scope() as s:
        out = webhooks.to_send(session=s, delivery_id=delivery_id)
    if isinstance(out, str):
        log.info("webhook delivery %s: nothing to send (%s)", delivery_id, out)
        return None
    body = json.dumps(out.payload, separators=(",", ":")).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        SIGNATURE_HEADER: signature_header(out.secret, body),
        DELIVERY_HEADER: out.delivery_id,
        EVENT_HEADER: out.event_type,
    }
    status_code: int | None = None
    error: str | None = None
    started = time.perf_counter()
    try:
        status_code = post(out.url, body, headers, settings=settings)
        if not 200 <= status_code < 300:
            error = f"the receiver answered HTTP {status_code}"
    except ProblemError as e:
        error = f"{e.code}: {e.detail}"
    except httpx.TimeoutException:
        error = f"no answer within {settings.webhook_timeout_seconds:g} s"
    except httpx.HTTPError as e:
        error = f"{type(e).__name__}: {e}"[:500]
    latency_ms = round((time.perf_counter() - started) * 1000, 2)
    countdown: int | None = None
    if error is not None and retries + 1 < settings.webhook_max_attempts:
        countdown = get_exponential_backoff_interval(
            settings.webhook_backoff_seconds,
            retries,
            settings.webhook_backoff_max_seconds,
            full_jitter=True,
        )
    with session_scope() as s:
        webhooks.record_attempt(
            session=s,
            settings=settings,
            out=out,
            status_code=status_code,
            latency_ms=latency_ms,
            error=error,
            retry_at=None if countdown is None else utcnow() + timedelta(seconds=countdown),
        )
    if error is not None:
        log.info("webhook delivery %s attempt %s failed: %s", delivery_id, out.attempt, error)
    return countdown


@celery_app.task(name=DELIVER_WEBHOOK_TASK, bind=True, max_retries=None)
def deliver(self, delivery_id: str) -> None:
    countdown = attempt(delivery_id, retries=self.request.retries, settings=get_settings())
    if countdown is not None:
        raise self.retry(countdown=countdown)
