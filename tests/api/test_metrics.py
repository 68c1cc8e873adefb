"""GET /metrics: job gauges from the database and request metrics, in Prometheus text."""

from __future__ import annotations

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from tests.apiclient import job_body


def _value(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    raise AssertionError(f"{name} {labels} not in /metrics")


def test_metrics_count_jobs_by_status_and_need_no_key(
    client: TestClient, app, model_id: str, dataset_id: str
) -> None:
    anonymous = TestClient(app)
    before = anonymous.get("/metrics")
    assert before.status_code == 200
    assert before.headers["content-type"].startswith("text/plain")
    assert _value(before.text, "modelpress_database_up") == 1
    queued = _value(before.text, "modelpress_jobs", status="queued", queue="cpu")
    r = client.post("/v1/jobs", json=job_body(model_id, dataset_id))
    assert r.status_code == 202, r.text
    after = anonymous.get("/metrics").text
    assert _value(after, "modelpress_jobs", status="queued", queue="cpu") == queued + 1
    assert _value(after, "modelpress_oldest_queued_job_age_seconds") >= 0


def test_request_metrics_use_route_templates_not_ids(client: TestClient, app) -> None:
    client.get("/v1/jobs/job_doesnotexist")
    client.get("/no/such/path")
    text = TestClient(app).get("/metrics").text
    assert (
        _value(
            text,
            "modelpress_http_requests_total",
            method="GET",
            route="/v1/jobs/{job_id}",
            status="404",
        )
        >= 1
    )
    assert "job_doesnotexist" not in text
    assert (
        _value(
            text, "modelpress_http_requests_total", method="GET", route="unmatched", status="404"
        )
        >= 1
    )
    assert "modelpress_http_request_duration_seconds_bucket" in text
