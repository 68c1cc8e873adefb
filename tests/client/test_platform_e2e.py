"""A platform's whole round trip, with real processes: a receiver registers webhooks, the
Python client uploads a model and a dataset and runs a job with wait, the webhooks worker
delivers signed events (retried, disabled, kept to their tenant), and deleting the job
frees its objects in the real S3 store."""

from __future__ import annotations

import json
import uuid

import pytest

from app.webhooks.signing import verify
from tests.apiclient import job_body, make_key
from tests.client.conftest import TINY_TRAINING
from tests.e2e.conftest import wait_for, webhook_worker
from tests.webhooks.receiver import running_receiver

__all__ = ["webhook_worker"]  # a fixture
pytestmark = pytest.mark.e2e


def _settled(mp, hook, n: int):
    rows = list(mp.iter_deliveries(hook.id))
    return rows if len(rows) >= n and all(d.status != "pending" for d in rows) else None


def test_platform_round_trip(
    server_url,
    mp,
    tiny_teacher_tar,
    tiny_dataset,
    celery_worker,
    webhook_worker,
    loopback_webhooks,
):
    from modelpress_client import Client, NotFound

    from app.storage import get_storage

    with running_receiver() as rx:
        rx.script = {"/flaky": [500, 500, 200], "/down": [500]}
        ok = mp.create_webhook(rx.url("/ok"))
        flaky = mp.create_webhook(rx.url("/flaky"), events=["job.succeeded"])
        # One event type: a tiny job can end before three failed attempts have disabled
        # the hook, and its job.succeeded would be a second delivery to count.
        down = mp.create_webhook(rx.url("/down"), events=["job.running"])
        other_key = make_key(f"t-other-{uuid.uuid4().hex[:6]}")
        with Client(server_url, api_key=other_key) as other:
            other.create_webhook(rx.url("/other"), events=["job.running", "job.succeeded"])

        sent: list[tuple[int, int]] = []
        model = mp.upload_model(tiny_teacher_tar, on_progress=lambda n, t: sent.append((n, t)))
        assert sent and sent[-1][0] == sent[-1][1] == tiny_teacher_tar.stat().st_size
        dataset = mp.upload_dataset(tiny_dataset, format="jsonl")
        job = mp.create_job(job_body(model.id, dataset.id, training=TINY_TRAINING))
        seen = []
        job = mp.wait(job.id, on_progress=seen.append, timeout=300)
        assert job.status == "succeeded", celery_worker.text()[-3000:]
        assert seen[-1].status == "succeeded"

        # job.running then job.succeeded, once per delivery id, each signed.
        rows = wait_for(lambda: _settled(mp, ok, 2), 60, "deliveries to /ok")
        got = rx.on("/ok")
        assert [g.headers["Modelpress-Event"] for g in got] == ["job.running", "job.succeeded"]
        assert len({g.headers["Modelpress-Delivery-Id"] for g in got}) == len(got) == 2
        for g in got:
            assert verify(ok.secret, g.body, g.headers["Modelpress-Signature"])
            assert not verify(flaky.secret, g.body, g.headers["Modelpress-Signature"])
        final = json.loads(got[-1].body)
        assert final["type"] == "job.succeeded"
        assert final["data"]["job"]["id"] == job.id
        assert final["data"]["job"]["status"] == "succeeded"
        events = {e.id: e for e in mp.iter_events(job.id)}
        assert events[final["event_id"]].data["status"] == "succeeded"
        assert {d.status for d in rows} == {"succeeded"}
        assert all(len(d.attempts) == 1 for d in rows)

        # 500, 500, then 200: the same delivery, on its third attempt.
        (row,) = wait_for(lambda: _settled(mp, flaky, 1), 60, "the flaky delivery")
        assert row.status == "succeeded"
        assert [a.status_code for a in row.attempts] == [500, 500, 200]
        assert all(a.latency_ms is not None for a in row.attempts)
        tries = rx.on("/flaky")
        assert len(tries) == 3
        assert len({t.headers["Modelpress-Delivery-Id"] for t in tries}) == 1
        assert len({t.body for t in tries}) == 1

        # Always 500: disabled after 3 failed attempts in a row, with an event on the job
        # saying so.
        (failed,) = wait_for(lambda: _settled(mp, down, 1), 60, "the failed delivery")
        assert failed.status == "failed" and failed.event_type == "job.running"
        assert [a.status_code for a in failed.attempts] == [500, 500, 500]
        assert len(rx.on("/down")) == 3
        hook = mp.get_webhook(down.id)
        assert not hook.enabled and "3 delivery attempts in a row failed" in hook.disabled_reason
        warnings = [
            e
            for e in mp.iter_events(job.id)
            if e.type == "warning" and down.id in e.data["message"]
        ]
        assert len(warnings) == 1

        # Re-enabled and resent: the same delivery id arrives again, and is delivered.
        rx.script["/down"] = [200]
        assert mp.update_webhook(down.id, enabled=True).enabled
        assert mp.resend_delivery(down.id, failed.id).status == "pending"
        (resent,) = wait_for(lambda: _settled(mp, down, 1), 30, "the resent delivery")
        assert resent.status == "succeeded" and len(resent.attempts) == 4
        assert rx.on("/down")[-1].headers["Modelpress-Delivery-Id"] == failed.id

        # The other tenant's webhook wanted the same event types and got nothing.
        assert rx.on("/other") == []

    # Deleting the finished job frees every object it had in the store.
    storage = get_storage()
    before = storage.list(f"jobs/{job.id}/")
    artifacts = mp.list_artifacts(job.id)
    assert before and {a.size_bytes for a in artifacts}
    mp.delete_job(job.id)
    assert storage.list(f"jobs/{job.id}/") == []
    with pytest.raises(NotFound):
        mp.get_job(job.id)
    # Its delivery history went with it.
    assert mp.list_deliveries(ok.id).data == []
