"""Webhooks: registration and reads (the API), and every state change of a delivery
(the webhooks worker and the reaper). Keyword-only functions, as in the other services.

A delivery is ``pending`` until an attempt succeeds (``succeeded``) or its attempts run
out (``failed``); a resend makes it pending again. Failed attempts in a row are counted on
the webhook, which is disabled past ``webhook_disable_after_failures``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.db import utcnow
from app.errors import ProblemError
from app.ids import new_id
from app.jobs.tables import JobEvent
from app.pagination import keyset
from app.settings import Settings
from app.tenancy import get_owned
from app.urls import check_user_url
from app.webhooks.outbox import send_after_commit
from app.webhooks.schemas import WebhookCreate, WebhookUpdate
from app.webhooks.signing import new_secret
from app.webhooks.tables import Webhook, WebhookAttempt, WebhookDelivery

# ---------------------------------------------------------------- the API


def create_webhook(
    *, session: Session, settings: Settings, tenant: str, body: WebhookCreate
) -> tuple[Webhook, str]:
    """The new webhook and its signing secret (returned once, here)."""
    check_user_url(body.url, settings=settings, param="url")
    secret = new_secret()
    row = Webhook(
        id=new_id("wh"),
        tenant=tenant,
        url=body.url,
        events=list(body.events),
        description=body.description,
        secret=secret,
        enabled=True,
        consecutive_failures=0,
    )
    session.add(row)
    session.commit()
    return row, secret


def get_webhook(*, session: Session, tenant: str, webhook_id: str) -> Webhook:
    return get_owned(session, Webhook, webhook_id, tenant=tenant, kind="webhook")


def list_webhooks(
    *, session: Session, tenant: str, limit: int, after: str | None
) -> tuple[list[Webhook], bool]:
    query = select(Webhook).where(Webhook.tenant == tenant)
    return keyset(session, query, Webhook.id, limit=limit, after=after)


def update_webhook(
    *, session: Session, settings: Settings, tenant: str, webhook_id: str, body: WebhookUpdate
) -> Webhook:
    row = get_webhook(session=session, tenant=tenant, webhook_id=webhook_id)
    changes = body.model_dump(exclude_unset=True)
    if changes.get("url") is not None:
        check_user_url(changes["url"], settings=settings, param="url")
    for field in ("url", "events", "description"):
        if field in changes and (changes[field] is not None or field == "description"):
            setattr(row, field, changes[field])
    if changes.get("enabled") is True and not row.enabled:
        row.enabled, row.disabled_reason, row.consecutive_failures = True, None, 0
    elif changes.get("enabled") is False:
        row.enabled, row.disabled_reason = False, "disabled by request"
    row.updated_at = utcnow()
    session.commit()
    return row


def delete_webhook(*, session: Session, tenant: str, webhook_id: str) -> None:
    row = get_webhook(session=session, tenant=tenant, webhook_id=webhook_id)
    session.delete(row)  # its deliveries and attempts go with it (ON DELETE CASCADE)
    session.commit()


def list_deliveries(
    *, session: Session, tenant: str, webhook_id: str, limit: int, after: str | None
) -> tuple[list[WebhookDelivery], bool, dict[str, list[WebhookAttempt]]]:
    """A page of deliveries, newest first, with each one's attempts in order."""
    get_webhook(session=session, tenant=tenant, webhook_id=webhook_id)
    query = select(WebhookDelivery).where(WebhookDelivery.webhook_id == webhook_id)
    rows, has_more = keyset(session, query, WebhookDelivery.id, limit=limit, after=after)
    return rows, has_more, attempts_of(session=session, delivery_ids=[r.id for r in rows])


def attempts_of(*, session: Session, delivery_ids: list[str]) -> dict[str, list[WebhookAttempt]]:
    attempts: dict[str, list[WebhookAttempt]] = {d: [] for d in delivery_ids}
    if delivery_ids:
        for a in session.scalars(
            select(WebhookAttempt)
            .where(WebhookAttempt.delivery_id.in_(delivery_ids))
            .order_by(WebhookAttempt.id)
        ):
            attempts[a.delivery_id].append(a)
    return attempts


def resend_delivery(
    *, session: Session, tenant: str, webhook_id: str, delivery_id: str
) -> WebhookDelivery:
    hook = get_webhook(session=session, tenant=tenant, webhook_id=webhook_id)
    row = session.get(WebhookDelivery, delivery_id)
    if row is None or row.webhook_id != hook.id:
        raise ProblemError(
            404, "delivery_not_found", f"Webhook {webhook_id} has no delivery {delivery_id!r}."
        )
    if not hook.enabled:
        raise ProblemError(
            409,
            "webhook_disabled",
            f"Webhook {webhook_id} is disabled ({hook.disabled_reason}); re-enable it with "
            'PATCH /v1/webhooks/{id} {"enabled": true} first.',
        )
    # Same id, same body: a receiver that already handled it recognises it.
    row.status, row.next_attempt_at, row.delivered_at = "pending", utcnow(), None
    send_after_commit(session, row.id)
    session.commit()
    return row


# ---------------------------------------------------------------- the webhooks worker


@dataclass(frozen=True)
class Outgoing:
    delivery_id: str
    webhook_id: str
    url: str
    secret: str
    event_type: str
    payload: dict
    attempt: int  # the number this attempt will have


def to_send(*, session: Session, delivery_id: str) -> Outgoing | str:
    """What to send for a pending delivery, or why nothing is sent (a duplicate message of
    one already settled, or a webhook deleted or disabled since)."""
    row = session.get(WebhookDelivery, delivery_id)
    if row is None:
        return "gone"
    if row.status != "pending":
        return row.status
    hook = session.get(Webhook, row.webhook_id)
    if hook is None:
        return "gone"
    if not hook.enabled:
        session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == delivery_id, WebhookDelivery.status == "pending")
            .values(status="failed")
        )
        session.commit()
        return "webhook_disabled"
    return Outgoing(
        row.id, hook.id, hook.url, hook.secret, row.event_type, row.payload, row.attempts + 1
    )


def record_attempt(
    *,
    session: Session,
    settings: Settings,
    out: Outgoing,
    status_code: int | None,
    latency_ms: float | None,
    error: str | None,
    retry_at: datetime | None,
) -> None:
    """Record one attempt. ``retry_at`` is when the next one is due, or None when this
    was the last one this delivery gets."""
    ok = error is None and status_code is not None and 200 <= status_code < 300
    now = utcnow()
    session.add(
        WebhookAttempt(
            delivery_id=out.delivery_id,
            attempt=out.attempt,
            at=now,
            status_code=status_code,
            latency_ms=latency_ms,
            error=error,
        )
    )
    values: dict = {"attempts": WebhookDelivery.attempts + 1}
    if ok:
        values.update(status="succeeded", delivered_at=now, next_attempt_at=None)
    elif retry_at is None:
        values.update(status="failed", next_attempt_at=None)
    else:
        values.update(next_attempt_at=retry_at)
    session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == out.delivery_id, WebhookDelivery.status == "pending")
        .values(**values)
    )
    if ok:
        session.execute(
            update(Webhook).where(Webhook.id == out.webhook_id).values(consecutive_failures=0)
        )
    else:
        failures = session.execute(
            update(Webhook)
            .where(Webhook.id == out.webhook_id)
            .values(consecutive_failures=Webhook.consecutive_failures + 1)
            .returning(Webhook.consecutive_failures)
        ).scalar_one_or_none()
        if failures is not None and failures >= settings.webhook_disable_after_failures:
            _disable(session, out, failures, error or f"HTTP {status_code}")
    session.commit()


def _disable(session: Session, out: Outgoing, failures: int, last: str) -> None:
    reason = (
        f"{failures} delivery attempts in a row failed (last: {last}); fix the receiver, "
        'then PATCH /v1/webhooks/{id} {"enabled": true}'
    )
    disabled = session.execute(
        update(Webhook)
        .where(Webhook.id == out.webhook_id, Webhook.enabled.is_(True))
        .values(enabled=False, disabled_reason=reason, updated_at=utcnow())
    ).rowcount
    if disabled:
        job_id = session.scalar(
            select(WebhookDelivery.job_id).where(WebhookDelivery.id == out.delivery_id)
        )
        session.add(
            JobEvent(
                job_id=job_id,
                type="warning",
                attempt=0,
                data={"message": f"Webhook {out.webhook_id} was disabled: {reason}."},
                created_at=utcnow(),
            )
        )


def resend_overdue(*, session: Session, settings: Settings) -> list[str]:
    """Pending deliveries whose try is long overdue (their message was lost with a broker
    or a worker): due again now, sent once this commits. Safe in many reapers at once."""
    now = utcnow()
    stale = now - timedelta(seconds=settings.requeue_after_seconds)
    ids = list(
        session.scalars(
            select(WebhookDelivery.id).where(
                WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at < stale
            )
        )
    )
    sent = []
    for delivery_id in ids:
        touched = session.execute(
            update(WebhookDelivery)
            .where(
                WebhookDelivery.id == delivery_id,
                WebhookDelivery.status == "pending",
                WebhookDelivery.next_attempt_at < stale,
            )
            .values(next_attempt_at=now)
        ).rowcount
        if touched:
            send_after_commit(session, delivery_id)
            sent.append(delivery_id)
    session.commit()
    return sent
