"""The OpenAPI document is fit for generated clients: short unique operationIds, tags,
summaries and request examples on every operation, including routes added later (it
reads the live app.openapi())."""

from __future__ import annotations

import re

import pytest

from app.jobspec import vocabulary
from tests.apiclient import assert_problem, job_body

OPERATION_ID = re.compile(r"^[a-z][A-Za-z]+$")
# FastAPI's default id: function name, path and method joined with underscores.
FASTAPI_DEFAULT = re.compile(r"_(get|post|put|patch|delete)$|__|_v1_")


@pytest.fixture(scope="module")
def operations(app) -> list[tuple[str, str, dict]]:
    app.openapi_schema = None  # built afresh: routes added since are in it
    paths = app.openapi()["paths"]
    return [(m.upper(), path, op) for path, ops in paths.items() for m, op in ops.items()]


def test_operation_ids_are_short_camel_case_and_unique(operations):
    ids = [op.get("operationId", "") for _, _, op in operations]
    bad = [i for i in ids if not OPERATION_ID.match(i) or FASTAPI_DEFAULT.search(i)]
    assert not bad, bad
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
    assert all(len(i) <= 30 for i in ids), ids


def test_the_ids_clients_call(operations):
    ids = {(method, path): op["operationId"] for method, path, op in operations}
    assert ids[("POST", "/v1/jobs")] == "createJob"
    assert ids[("GET", "/v1/jobs")] == "listJobs"
    assert ids[("GET", "/v1/jobs/{job_id}")] == "getJob"
    assert ids[("POST", "/v1/jobs/{job_id}/cancel")] == "cancelJob"
    assert ids[("GET", "/v1/jobs/{job_id}/events")] == "listJobEvents"
    assert ids[("GET", "/v1/jobs/{job_id}/artifacts")] == "listJobArtifacts"
    assert ids[("GET", "/v1/jobs/{job_id}/artifacts/{name}")] == "downloadArtifact"
    assert ids[("POST", "/v1/models")] == "uploadModel"
    assert ids[("POST", "/v1/datasets")] == "uploadDataset"
    assert ids[("GET", "/healthz")] == "getLiveness"
    assert ids[("GET", "/readyz")] == "getReadiness"


def _auto_summary(operation_id: str) -> str:
    # What FastAPI writes when a route sets no summary: the function name, titled (here
    # rebuilt from the id, which is that name in camelCase unless set by hand).
    return re.sub(r"([A-Z])", r" \1", operation_id).title()


def test_every_operation_has_a_declared_tag_and_a_written_summary(app, operations):
    declared = {t["name"] for t in app.openapi()["tags"]}
    for method, path, op in operations:
        assert op.get("tags") and set(op["tags"]) <= declared, (method, path, op.get("tags"))
        written = op.get("summary") not in (None, _auto_summary(op["operationId"]))
        assert written or op.get("description"), (method, path, op.get("summary"))


def test_every_json_request_body_has_an_example(app, operations):
    schemas = app.openapi()["components"]["schemas"]
    for method, path, op in operations:
        content = op.get("requestBody", {}).get("content", {})
        for media, body in content.items():
            if "json" not in media:
                continue
            ref = body["schema"].get("$ref", "")
            schema = schemas.get(ref.rsplit("/", 1)[-1], body["schema"])
            has = {"example", "examples"} & (set(body) | set(schema))
            assert has, (method, path, media)


def test_the_task_enum_is_what_the_engine_does(app, client, model_id, dataset_id):
    task = app.openapi()["components"]["schemas"]["JobCreate"]["properties"]["task"]
    assert task["enum"] == list(vocabulary.TASKS)
    assert "causal-lm" not in task["enum"]
    r = client.post("/v1/jobs", json=job_body(model_id, dataset_id, task="causal-lm"))
    body = assert_problem(r, 422, "validation_error", "task")
    assert "'token-classification'" in body["detail"], body


def test_every_get_route_has_a_description(operations):
    missing = [
        path for method, path, op in operations if method == "GET" and not op.get("description")
    ]
    assert not missing, missing


def test_every_json_body_route_documents_the_415(operations):
    for method, path, op in operations:
        if "application/json" in op.get("requestBody", {}).get("content", {}):
            assert "415" in op["responses"], (method, path)


@pytest.mark.parametrize("name", ["EventRead", "Distillation", "JobMetrics", "ModelScores"])
def test_fields_are_described(app, name):
    schema = app.openapi()["components"]["schemas"][name]
    undescribed = [f for f, prop in schema["properties"].items() if not prop.get("description")]
    # Self-explanatory names in the report's blocks may go without; the others may not.
    allowed = {
        "EventRead": {"created_at"},
        "Distillation": set(),
        "JobMetrics": {"teacher", "student", "latency_threads"},
        "ModelScores": {"num_parameters", "non_embedding_parameters"},
    }[name]
    assert set(undescribed) <= allowed, undescribed


def test_job_metrics_is_an_open_typed_object(app):
    schemas = app.openapi()["components"]["schemas"]
    metrics = schemas["JobRead"]["properties"]["metrics"]
    assert {"$ref": "#/components/schemas/JobMetrics"} in metrics["anyOf"]
    report = schemas["JobMetrics"]
    assert report["additionalProperties"] is True  # a later engine's keys still read
    assert {"teacher", "student", "retention", "speedup_cpu_bs1", "flops_ratio"} <= set(
        report["properties"]
    )
