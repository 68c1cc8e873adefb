"""The webhooks resource: registration, reads, changes, and the tenant rule."""

from __future__ import annotations

import pytest

from tests.apiclient import assert_problem, make_key

URL = "https://127.0.0.1:9/hook"


@pytest.fixture
def allow_loopback(monkeypatch):
    from app.settings import get_settings

    monkeypatch.setattr(get_settings(), "url_allow_private", True)


def _create(client, **body):
    return client.post("/v1/webhooks", json={"url": URL, **body})


def test_create_returns_the_secret_once(client, allow_loopback):
    r = _create(client, description="registry")
    assert r.status_code == 201, r.text
    hook = r.json()
    assert hook["id"].startswith("wh_") and hook["secret"].startswith("whsec_")
    assert r.headers["location"] == f"/v1/webhooks/{hook['id']}"
    assert hook["events"] == ["job.running", "job.succeeded", "job.failed", "job.cancelled"]
    assert hook["enabled"] is True and hook["consecutive_failures"] == 0
    again = client.get(f"/v1/webhooks/{hook['id']}").json()
    assert "secret" not in again and again["url"] == URL
    listed = client.get("/v1/webhooks").json()
    assert [h["id"] for h in listed["data"]] == [hook["id"]]
    assert "secret" not in listed["data"][0]


def test_private_addresses_and_plain_http_refused_by_default(client):
    assert_problem(_create(client), 422, "url_not_allowed", "url")
    r = client.post("/v1/webhooks", json={"url": "http://example.com/hook"})
    body = assert_problem(r, 422, "url_not_allowed", "url")
    assert "scheme 'http'" in body["detail"]


def test_event_types_checked(client, allow_loopback):
    assert_problem(_create(client, events=["job.done"]), 422, "validation_error", "events.0")
    assert_problem(_create(client, events=[]), 422, "validation_error", "events")
    r = _create(client, events=["job.progress", "job.progress", "job.failed"])
    assert r.json()["events"] == ["job.progress", "job.failed"]


def test_patch_and_delete(client, allow_loopback):
    hook = _create(client).json()
    r = client.patch(f"/v1/webhooks/{hook['id']}", json={"enabled": False})
    assert r.status_code == 200 and r.json()["enabled"] is False
    assert r.json()["disabled_reason"] == "disabled by request"
    r = client.patch(
        f"/v1/webhooks/{hook['id']}", json={"enabled": True, "events": ["job.succeeded"]}
    )
    assert r.json()["enabled"] is True and r.json()["events"] == ["job.succeeded"]
    assert r.json()["disabled_reason"] is None
    bad = client.patch(f"/v1/webhooks/{hook['id']}", json={"url": "https://10.0.0.1/x"})
    assert bad.status_code == 200  # private allowed by the fixture
    assert client.delete(f"/v1/webhooks/{hook['id']}").status_code == 204
    assert_problem(client.get(f"/v1/webhooks/{hook['id']}"), 404, "webhook_not_found")


def test_another_tenants_webhook_is_not_found(client, app, allow_loopback):
    from fastapi.testclient import TestClient

    hook = _create(client).json()
    with TestClient(app, raise_server_exceptions=False) as other:
        other.headers["Authorization"] = f"Bearer {make_key('t-other-webhooks')}"
        for method, path in [
            ("GET", f"/v1/webhooks/{hook['id']}"),
            ("PATCH", f"/v1/webhooks/{hook['id']}"),
            ("DELETE", f"/v1/webhooks/{hook['id']}"),
            ("GET", f"/v1/webhooks/{hook['id']}/deliveries"),
            ("POST", f"/v1/webhooks/{hook['id']}/deliveries/whd_x/resend"),
        ]:
            r = other.request(method, path, json={} if method == "PATCH" else None)
            assert_problem(r, 404, "webhook_not_found")
        assert other.get("/v1/webhooks").json()["data"] == []


def test_deliveries_start_empty_and_unknown_resend_is_404(client, allow_loopback):
    hook = _create(client).json()
    r = client.get(f"/v1/webhooks/{hook['id']}/deliveries")
    assert r.json() == {"data": [], "has_more": False, "next_cursor": None}
    r = client.post(f"/v1/webhooks/{hook['id']}/deliveries/whd_nope/resend")
    assert_problem(r, 404, "delivery_not_found")


def test_read_key_cannot_register(app, tenant):
    from fastapi.testclient import TestClient

    with TestClient(app, raise_server_exceptions=False) as c:
        c.headers["Authorization"] = f"Bearer {make_key(tenant, scope='read')}"
        assert_problem(c.post("/v1/webhooks", json={"url": URL}), 403, "insufficient_scope")
