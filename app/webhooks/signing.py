"""Signatures on webhook deliveries, as Stripe signs its own.

The header ``Modelpress-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>`` signs
``"<t>.<raw body>"`` with the webhook's secret. The timestamp inside the signed string is
what defeats replays: a receiver refuses a signature older than its tolerance.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

SIGNATURE_HEADER = "Modelpress-Signature"
DELIVERY_HEADER = "Modelpress-Delivery-Id"
EVENT_HEADER = "Modelpress-Event"
TOLERANCE_S = 300


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def _mac(secret: str, timestamp: int, body: bytes) -> str:
    signed = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def signature_header(secret: str, body: bytes, *, timestamp: int | None = None) -> str:
    t = int(time.time()) if timestamp is None else timestamp
    return f"t={t},v1={_mac(secret, t, body)}"


def verify(
    secret: str,
    body: bytes,
    header: str,
    *,
    tolerance_s: int = TOLERANCE_S,
    now: float | None = None,
) -> bool:
    """What a receiver does (the README shows the same lines without this module)."""
    fields = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        t = int(fields["t"])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - t) > tolerance_s:
        return False
    return hmac.compare_digest(_mac(secret, t, body), fields.get("v1", ""))
