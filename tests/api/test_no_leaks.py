"""Keys never reach a log; errors never carry a stack trace, SQL or a server path."""

from __future__ import annotations

import logging

from fastapi.testclient import TestClient

from tests.apiclient import make_key


def test_keys_are_not_logged(app, caplog, tenant):
    key = make_key(tenant)
    caplog.set_level(logging.DEBUG)
    with TestClient(app, raise_server_exceptions=False) as c:
        c.get("/v1/jobs", headers={"Authorization": f"Bearer {key}"})
        c.get("/v1/jobs", headers={"Authorization": f"Bearer {key}x"})  # invalid
        c.post("/v1/jobs", headers={"Authorization": f"Bearer {key}"}, json={"bad": 1})
    assert caplog.records  # something was logged, and none of it is the key
    assert key not in caplog.text and key[3:] not in caplog.text


def test_unexpected_errors_say_nothing_of_the_server(stack, caplog):
    from app.main import create_app

    app = create_app()
    secret = "/srv/modelpress/secret.db: SELECT api_keys.key_hash FROM api_keys"

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError(secret)

    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.get("/boom")
    assert r.status_code == 500
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.text
    assert r.json()["code"] == "internal_error"
    for leak in (secret, "Traceback", "/srv/", "SELECT", "RuntimeError", ".py"):
        assert leak not in body
    assert secret in caplog.text  # the operator still gets the details in the log
