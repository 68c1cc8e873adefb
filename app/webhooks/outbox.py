"""The transactional outbox of webhook deliveries.

A job event that a webhook wants becomes a delivery row in the same transaction as the
event, so a delivery exists exactly when its event committed. Its id goes to the
webhooks queue only after that commit (a message never names a row that is not there);
a message lost on the way is re-sent by the reaper (``service.resend_overdue``).
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import event, select
from sqlalchemy.orm import Session

from app.broker import send
from app.db import utcnow
from app.ids import new_id
from app.jobs.schemas import JobRead
from app.jobs.tables import Job, JobEvent
from app.queues import DELIVER_WEBHOOK_TASK, WEBHOOK_QUEUE
from app.webhooks.tables import Webhook, WebhookDelivery

log = logging.getLogger(__name__)

_PENDING = "modelpress.webhook_deliveries"
WEBHOOK_STATUSES = ("running", "succeeded", "failed", "cancelled")


def event_type_of(row: JobEvent) -> str | None:
    """The webhook event type of a job event, or None for events no webhook gets."""
    if row.type == "status" and row.data.get("status") in WEBHOOK_STATUSES:
        return f"job.{row.data['status']}"
    if row.type == "progress":
        return "job.progress"
    return None


def on_job_event(session: Session, row: JobEvent) -> None:
    """Add a delivery per enabled webhook of the job's tenant that wants this event."""
    kind = event_type_of(row)
    if kind is None:
        return
    hooks = [
        w
        for w in session.scalars(
            select(Webhook)
            .join(Job, Job.tenant == Webhook.tenant)
            # A sweep's children are told through their parent's events (one per
            # candidate), not as jobs of their own.
            .where(Job.id == row.job_id, Job.parent_id.is_(None), Webhook.enabled.is_(True))
        )
        if kind in w.events
    ]
    if not hooks:
        return
    session.flush()  # the event's id, and the job's row as this transaction changed it
    job = session.execute(
        select(Job).where(Job.id == row.job_id).execution_options(populate_existing=True)
    ).scalar_one()
    snapshot = JobRead.of(job).model_dump(mode="json")
    now = utcnow()
    for hook in hooks:
        delivery = WebhookDelivery(
            id=new_id("whd"),
            webhook_id=hook.id,
            tenant=hook.tenant,
            job_id=row.job_id,
            event_id=row.id,
            event_type=kind,
            payload=payload(kind, row, snapshot),
            status="pending",
            attempts=0,
            next_attempt_at=now,
            created_at=now,
        )
        session.add(delivery)
        send_after_commit(session, delivery.id)


def payload(kind: str, row: JobEvent, job: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": kind,
        "event_id": row.id,
        "created_at": (row.created_at or utcnow()).isoformat().replace("+00:00", "Z"),
        "data": {"job": job},
    }


def send_after_commit(session: Session, delivery_id: str) -> None:
    session.info.setdefault(_PENDING, []).append(delivery_id)


def enqueue(delivery_id: str) -> bool:
    try:
        send(DELIVER_WEBHOOK_TASK, delivery_id, queue=WEBHOOK_QUEUE)
    except Exception:
        # The row stays pending; the reaper re-sends it once the broker is back.
        log.warning("could not enqueue webhook delivery %s", delivery_id, exc_info=True)
        return False
    return True


@event.listens_for(Session, "after_commit")
def _send(session: Session) -> None:
    for delivery_id in session.info.pop(_PENDING, ()):
        enqueue(delivery_id)


@event.listens_for(Session, "after_rollback")
def _drop(session: Session) -> None:
    session.info.pop(_PENDING, None)
