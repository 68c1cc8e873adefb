from __future__ import annotations

import subprocess
import sys


def test_healthz(client):
    assert client.get("/healthz").json() == {"status": "ok"}


def test_readyz_checks_every_dependency(client):
    r = client.get("/readyz")
    assert r.status_code == 200, r.text
    assert r.json() == {
        "status": "ok",
        "checks": {"database": "ok", "broker": "ok", "storage": "ok"},
    }


def test_unknown_route_is_problem_json(client):
    r = client.get("/v1/nothing")
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/problem+json")


def test_openapi_is_complete(client):
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    for path, method in [
        ("/v1/models", "post"),
        ("/v1/models", "get"),
        ("/v1/models/{model_id}", "get"),
        ("/v1/datasets", "post"),
        ("/v1/datasets", "get"),
        ("/v1/datasets/{dataset_id}", "get"),
        ("/v1/jobs", "post"),
        ("/v1/jobs", "get"),
        ("/v1/jobs/{job_id}", "get"),
        ("/v1/jobs/{job_id}/cancel", "post"),
        ("/v1/jobs/{job_id}/artifacts", "get"),
        ("/v1/jobs/{job_id}/artifacts/{name}", "get"),
        ("/v1/jobs/{job_id}/events", "get"),
        ("/healthz", "get"),
        ("/readyz", "get"),
    ]:
        assert method in paths[path], (path, method)
    create = paths["/v1/jobs"]["post"]
    examples = create["requestBody"]["content"]["application/json"]["examples"]
    assert examples["half"]["value"]["target"] == {"params_ratio": 0.5}
    from app.jobs.schemas import JobCreate

    for example in examples.values():  # what the docs show is a valid request
        JobCreate.model_validate(example["value"])
    assert examples["twice_as_fast"]["value"]["target"] == {"speedup": 2.0}
    assert "application/problem+json" in create["responses"]["422"]["content"]
    schemas = spec["components"]["schemas"]
    assert schemas["ModelRead"].get("examples") and schemas["DatasetRead"].get("examples")


def test_api_does_not_import_torch():
    code = (
        "import sys, app.main, app.cli, app.broker; app.main.create_app(); app.broker.broker(); "
        "heavy = ('torch', 'transformers', 'datasets'); "
        "bad = [m for m in sys.modules if m.split('.')[0] in heavy]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
