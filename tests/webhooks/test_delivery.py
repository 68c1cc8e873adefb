"""One delivery attempt, in process, against the real database and a real receiver:
what is checked at delivery time, timeouts, the last attempt, and the outbox rules."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from sqlalchemy import select

from tests import services
from tests.apiclient import job_body
from tests.webhooks.receiver import Receiver, running_receiver


@pytest.fixture
def rx(monkeypatch) -> Iterator[Receiver]:
    from app.settings import get_settings

    settings = get_settings()
    monkeypatch.setattr(settings, "url_allowed_schemes", ["http", "https"])
    monkeypatch.setattr(settings, "url_allow_private", True)
    with running_receiver() as receiver:
        yield receiver
    redis.Redis.from_url(services.REDIS_URL).delete("webhooks")


def _settings(**changes):
    from app.settings import get_settings

    return get_settings().model_copy(update=changes)


def _cancelled_job_delivery(client, model_id, dataset_id, url: str, **hook) -> tuple[str, dict]:
    """A webhook, then a queued job cancelled: one job.cancelled delivery, pending."""
    created = client.post("/v1/webhooks", json={"url": url, **hook}).json()
    job = client.post("/v1/jobs", json=job_body(model_id, dataset_id)).json()
    assert client.post(f"/v1/jobs/{job['id']}/cancel").status_code == 202
    rows = client.get(f"/v1/webhooks/{created['id']}/deliveries").json()["data"]
    assert [(d["event_type"], d["status"]) for d in rows] == [("job.cancelled", "pending")]
    return rows[0]["id"], created


def _delivery(client, hook: dict) -> dict:
    return client.get(f"/v1/webhooks/{hook['id']}/deliveries").json()["data"][0]


def test_address_checked_again_at_delivery(client, model_id, dataset_id, rx):
    """Registered while the name was allowed; by delivery time it is not (a rebinding to
    loopback looks the same): nothing is sent, the attempt says why, a retry is due."""
    from workers.webhook_delivery import attempt

    delivery_id, hook = _cancelled_job_delivery(client, model_id, dataset_id, rx.url("/a"))
    countdown = attempt(delivery_id, retries=0, settings=_settings(url_allow_private=False))
    assert countdown is not None
    assert rx.received == []
    row = _delivery(client, hook)
    assert row["status"] == "pending"
    (tried,) = row["attempts"]
    assert tried["status_code"] is None and "url_not_allowed" in tried["error"]
    assert "loopback" in tried["error"]


def test_a_slow_receiver_times_out(client, model_id, dataset_id, rx):
    from workers.webhook_delivery import attempt

    rx.delay["/slow"] = 3.0
    delivery_id, hook = _cancelled_job_delivery(client, model_id, dataset_id, rx.url("/slow"))
    attempt(delivery_id, retries=0, settings=_settings(webhook_timeout_seconds=0.5))
    (tried,) = _delivery(client, hook)["attempts"]
    assert tried["error"] == "no answer within 0.5 s"
    assert 400 < tried["latency_ms"] < 2500


def test_last_attempt_fails_the_delivery_and_success_resets_the_count(
    client, model_id, dataset_id, rx
):
    from workers.webhook_delivery import attempt

    rx.script["/b"] = [503, 200]
    delivery_id, hook = _cancelled_job_delivery(client, model_id, dataset_id, rx.url("/b"))
    settings = _settings(webhook_max_attempts=3)
    assert attempt(delivery_id, retries=2, settings=settings) is None  # the third of 3
    row = _delivery(client, hook)
    assert row["status"] == "failed" and row["attempts"][0]["status_code"] == 503
    assert client.get(f"/v1/webhooks/{hook['id']}").json()["consecutive_failures"] == 1
    # A settled delivery is not sent again by a duplicate message...
    assert attempt(delivery_id, retries=0, settings=settings) is None
    assert len(rx.received) == 1
    # ...but a resend is.
    client.post(f"/v1/webhooks/{hook['id']}/deliveries/{delivery_id}/resend")
    assert attempt(delivery_id, retries=0, settings=settings) is None
    row = _delivery(client, hook)
    assert row["status"] == "succeeded" and [a["attempt"] for a in row["attempts"]] == [1, 2]
    assert client.get(f"/v1/webhooks/{hook['id']}").json()["consecutive_failures"] == 0


def test_only_the_event_types_asked_for(client, model_id, dataset_id, rx):
    from app.db import session_scope
    from app.jobs import service as jobs
    from app.webhooks.tables import WebhookDelivery

    ends = client.post("/v1/webhooks", json={"url": rx.url("/e"), "events": ["job.failed"]})
    progress = client.post("/v1/webhooks", json={"url": rx.url("/p"), "events": ["job.progress"]})
    job = client.post("/v1/jobs", json=job_body(model_id, dataset_id)).json()
    with session_scope() as s:
        attempt_no = jobs.claim(session=s, job_id=job["id"], worker="w", lease_seconds=60)
        jobs.set_progress(session=s, job_id=job["id"], attempt=attempt_no, progress=0.25)
        jobs.finish(
            session=s,
            job_id=job["id"],
            attempt=attempt_no,
            status="failed",
            error_code="engine_error",
            error_message="boom",
        )
        kinds = {
            hook_id: sorted(
                s.scalars(
                    select(WebhookDelivery.event_type).where(WebhookDelivery.webhook_id == hook_id)
                )
            )
            for hook_id in (ends.json()["id"], progress.json()["id"])
        }
    assert kinds == {ends.json()["id"]: ["job.failed"], progress.json()["id"]: ["job.progress"]}
    body = _delivery(client, ends.json())["payload"]
    assert body["data"]["job"]["status"] == "failed"
    assert body["data"]["job"]["error"] == {"code": "engine_error", "message": "boom"}


def test_a_rolled_back_event_leaves_no_delivery(client, model_id, dataset_id, rx):
    from app.db import session_scope
    from app.jobs import service as jobs
    from app.webhooks.tables import WebhookDelivery

    hook = client.post("/v1/webhooks", json={"url": rx.url("/r")}).json()
    job = client.post("/v1/jobs", json=job_body(model_id, dataset_id)).json()
    queue = redis.Redis.from_url(services.REDIS_URL)
    before = queue.llen("webhooks")
    with session_scope() as s:
        jobs._event(s, job["id"], 0, "status", {"status": "running"})
        s.flush()
        assert s.scalar(select(WebhookDelivery.id).where(WebhookDelivery.webhook_id == hook["id"]))
        s.rollback()
    with session_scope() as s:
        assert not s.scalar(
            select(WebhookDelivery.id).where(WebhookDelivery.webhook_id == hook["id"])
        )
    assert queue.llen("webhooks") == before  # nothing was sent for it either


def test_reaper_resends_overdue_deliveries(client, model_id, dataset_id, rx):
    from datetime import timedelta

    from sqlalchemy import update

    from app.db import session_scope, utcnow
    from app.webhooks import service as webhooks
    from app.webhooks.tables import WebhookDelivery

    delivery_id, _hook = _cancelled_job_delivery(client, model_id, dataset_id, rx.url("/late"))
    queue = redis.Redis.from_url(services.REDIS_URL)
    settings = _settings(requeue_after_seconds=60)
    with session_scope() as s:
        assert delivery_id not in webhooks.resend_overdue(session=s, settings=settings)
        s.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == delivery_id)
            .values(next_attempt_at=utcnow() - timedelta(seconds=120))
        )
        s.commit()
        before = queue.llen("webhooks")
        assert delivery_id in webhooks.resend_overdue(session=s, settings=settings)
    assert queue.llen("webhooks") == before + 1
    with session_scope() as s:
        assert delivery_id not in webhooks.resend_overdue(session=s, settings=settings)
