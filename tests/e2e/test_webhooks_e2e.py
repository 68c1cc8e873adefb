"""Webhooks end to end: a job on a real worker, deliveries from the real webhooks worker
to a real receiver on loopback, signed, retried, disabled, and kept to their tenant."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from app.webhooks.signing import verify
from tests.apiclient import job_body, make_key
from tests.e2e.conftest import wait_for
from tests.e2e.test_worker_e2e import TINY_TRAINING, _poll_terminal
from tests.webhooks.receiver import running_receiver

pytestmark = pytest.mark.e2e


def _register(client, url: str, **body) -> dict:
    r = client.post("/v1/webhooks", json={"url": url, **body})
    assert r.status_code == 201, r.text
    return r.json()


def _deliveries(client, hook: dict) -> list[dict]:
    return client.get(f"/v1/webhooks/{hook['id']}/deliveries?limit=100").json()["data"]


def _settled(client, hook: dict, n: int) -> list[dict] | None:
    rows = _deliveries(client, hook)
    return rows if len(rows) >= n and all(d["status"] != "pending" for d in rows) else None


def test_signed_retried_disabled_and_per_tenant(
    app, client, model_id, dataset_id, celery_worker, webhook_worker, loopback_webhooks
):
    with running_receiver() as rx:
        rx.script = {"/flaky": [500, 500, 200], "/down": [500]}
        ok = _register(client, rx.url("/ok"))
        flaky = _register(client, rx.url("/flaky"), events=["job.succeeded"])
        down = _register(client, rx.url("/down"))
        with TestClient(app, raise_server_exceptions=False) as other:
            other.headers["Authorization"] = f"Bearer {make_key('t-webhooks-other')}"
            _register(other, rx.url("/other"), events=["job.running", "job.succeeded"])

        r = client.post("/v1/jobs", json=job_body(model_id, dataset_id, training=TINY_TRAINING))
        job = _poll_terminal(client, r.json()["id"])
        assert job["status"] == "succeeded", celery_worker.text()[-3000:]

        # The good receiver: job.running then job.succeeded, each signed with its secret.
        rows = wait_for(lambda: _settled(client, ok, 2), 60, "deliveries to /ok")
        got = rx.on("/ok")
        assert [g.headers["Modelpress-Event"] for g in got] == ["job.running", "job.succeeded"]
        assert len({g.headers["Modelpress-Delivery-Id"] for g in got}) == 2
        for g in got:
            assert verify(ok["secret"], g.body, g.headers["Modelpress-Signature"])
            assert not verify(flaky["secret"], g.body, g.headers["Modelpress-Signature"])
        final = json.loads(got[-1].body)
        assert final["type"] == "job.succeeded" and final["data"]["job"]["id"] == job["id"]
        assert final["data"]["job"]["status"] == "succeeded"
        events = client.get(f"/v1/jobs/{job['id']}/events?limit=1000").json()["data"]
        by_id = {e["id"]: e for e in events}
        assert by_id[final["event_id"]]["data"]["status"] == "succeeded"
        assert {d["status"] for d in rows} == {"succeeded"}
        assert all(len(d["attempts"]) == 1 for d in rows)

        # 500, 500, then 200: the same delivery, on its third attempt.
        (row,) = wait_for(lambda: _settled(client, flaky, 1), 60, "the flaky delivery")
        assert row["status"] == "succeeded"
        assert [a["status_code"] for a in row["attempts"]] == [500, 500, 200]
        assert all(a["latency_ms"] is not None for a in row["attempts"])
        tries = rx.on("/flaky")
        assert len(tries) == 3
        assert len({t.headers["Modelpress-Delivery-Id"] for t in tries}) == 1
        assert len({t.body for t in tries}) == 1

        # Always 500: disabled after 3 failed attempts in a row, with an event saying so.
        hook = wait_for(
            lambda: (
                (h := client.get(f"/v1/webhooks/{down['id']}").json())["enabled"] is False and h
            ),
            60,
            "the failing webhook to be disabled",
        )
        assert "3 delivery attempts in a row failed" in hook["disabled_reason"]
        warnings = [
            e
            for e in client.get(f"/v1/jobs/{job['id']}/events?limit=1000").json()["data"]
            if e["type"] == "warning" and down["id"] in e["data"]["message"]
        ]
        assert len(warnings) == 1
        # It was disabled before the job ended, so job.succeeded made it no delivery.
        (failed,) = wait_for(lambda: _settled(client, down, 1), 30, "the failed delivery")
        assert failed["status"] == "failed" and failed["event_type"] == "job.running"
        assert [a["status_code"] for a in failed["attempts"]] == [500, 500, 500]
        assert len(rx.on("/down")) == 3

        # Resend after re-enabling: the same delivery id arrives again.
        rx.script["/down"] = [200]
        assert client.patch(f"/v1/webhooks/{down['id']}", json={"enabled": True}).status_code == 200
        r = client.post(f"/v1/webhooks/{down['id']}/deliveries/{failed['id']}/resend")
        assert r.status_code == 202 and r.json()["status"] == "pending"
        (resent,) = wait_for(lambda: _settled(client, down, 1), 30, "the resent delivery")
        assert resent["status"] == "succeeded" and len(resent["attempts"]) == 4
        assert rx.on("/down")[-1].headers["Modelpress-Delivery-Id"] == failed["id"]

        # The other tenant's webhook wanted the same event types and got nothing.
        assert rx.on("/other") == []
