"""What the errors a newcomer makes first say: a JSON route sent a form (curl -d without
-H) is told to send application/json, and validators' messages read as ours."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from tests.apiclient import assert_problem, job_body

FORM = "application/x-www-form-urlencoded"


def _job_count(tenant: str) -> int:
    from app.db import session_scope
    from app.jobs.tables import Job

    with session_scope() as s:
        return s.scalar(select(func.count()).select_from(Job).where(Job.tenant == tenant))


@pytest.mark.parametrize("content_type", [FORM, "text/plain", "multipart/form-data; boundary=x"])
def test_a_job_sent_as_anything_but_json_is_a_415(
    client, tenant, model_id, dataset_id, content_type
):
    # What `curl -d @job.json` sends: the JSON itself, labelled as a form.
    body = json.dumps(job_body(model_id, dataset_id)).encode()
    r = client.post("/v1/jobs", content=body, headers={"Content-Type": content_type})
    problem = assert_problem(r, 415, "unsupported_media_type", "Content-Type")
    assert "application/json" in problem["detail"]
    assert content_type.split(";")[0] in problem["detail"]
    assert r.headers["Accept-Post"] == "application/json"
    assert _job_count(tenant) == 0


def test_a_form_post_of_fields_is_a_415(client, tenant):
    r = client.post("/v1/jobs", data={"task": "sequence-classification"})
    assert_problem(r, 415, "unsupported_media_type")
    assert _job_count(tenant) == 0


def test_a_body_without_content_type_is_a_415_and_no_body_a_422(client, model_id, dataset_id):
    body = json.dumps(job_body(model_id, dataset_id)).encode()
    problem = assert_problem(client.post("/v1/jobs", content=body), 415, "unsupported_media_type")
    assert "names none" in problem["detail"]
    assert_problem(client.post("/v1/jobs"), 422, "validation_error")


def test_json_variants_and_no_content_type_still_parse(client, model_id, dataset_id):
    body = json.dumps(job_body(model_id, dataset_id)).encode()
    for headers in (
        {"Content-Type": "application/json; charset=utf-8"},
        {"Content-Type": "application/merge-patch+json"},
    ):
        r = client.post("/v1/jobs", content=body, headers=headers)
        assert r.status_code == 202, (headers, r.text)
        client.post(f"/v1/jobs/{r.json()['id']}/cancel")
    # Still a JSON route's own errors: malformed JSON is a 400, a wrong field a 422.
    r = client.post("/v1/jobs", content=b"{", headers={"Content-Type": "application/json"})
    assert_problem(r, 400, "invalid_json")


def test_webhook_routes_say_send_json_too(client, monkeypatch):
    from app.settings import get_settings

    monkeypatch.setattr(get_settings(), "url_allow_private", True)
    created = client.post("/v1/webhooks", json={"url": "https://127.0.0.1:9/hook"})
    assert created.status_code == 201, created.text
    r = client.post("/v1/webhooks", data={"url": "https://127.0.0.1:9/hook"})
    assert_problem(r, 415, "unsupported_media_type")
    assert r.headers["Accept-Post"] == "application/json"
    r = client.patch(f"/v1/webhooks/{created.json()['id']}", data={"enabled": "true"})
    assert_problem(r, 415, "unsupported_media_type")
    assert r.headers["Accept-Patch"] == "application/json"


def test_form_upload_routes_are_unaffected(client):
    # A multipart route missing its file is a 422 naming the field, not a 415.
    r = client.post("/v1/datasets", data={"format": "jsonl"})
    assert r.status_code in (400, 422), r.text
    assert r.json()["code"] != "unsupported_media_type"


@pytest.mark.parametrize(
    ("target", "says"),
    [
        ({"params_ratio": 0.5, "sparsity": 0.5}, "give exactly one of params_ratio"),
        ({"params_ratio": 0.5, "pattern": "2:4"}, "pattern applies only to a sparsity target"),
    ],
)
def test_validator_messages_have_no_pydantic_prefix(client, model_id, dataset_id, target, says):
    r = client.post("/v1/jobs", json=job_body(model_id, dataset_id, target=target))
    problem = assert_problem(r, 422, "validation_error", "target")
    assert "Value error" not in r.text, problem
    assert problem["detail"].startswith(f"target: {says}"), problem
    assert problem["errors"][0]["message"].startswith(says), problem
