"""``export.formats`` on POST /v1/jobs (issue #20): the default, the formats the engine
ships, what is refused with the field to change, and the way into the engine spec."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from tests.apiclient import assert_problem, job_body


def _job_count(tenant: str) -> int:
    from app.db import session_scope
    from app.jobs.tables import Job

    with session_scope() as s:
        return s.scalar(select(func.count()).select_from(Job).where(Job.tenant == tenant))


def _accepted(client, body: dict[str, Any]) -> dict[str, Any]:
    r = client.post("/v1/jobs", json=body)
    assert r.status_code == 202, r.text
    # No worker runs in these tests: cancel it so no later test meets it queued.
    assert client.post(f"/v1/jobs/{r.json()['id']}/cancel").status_code == 202
    return r.json()


def test_default_is_the_safetensors_folder(client, model_id, dataset_id):
    job = _accepted(client, job_body(model_id, dataset_id))
    assert job["request"]["export"] == {
        "formats": ["safetensors"],
        "keep_candidates": False,
        "quantization_aware": 0.0,
    }


def test_onnx_formats_are_accepted_in_the_order_given(client, model_id, dataset_id):
    formats = ["onnx-int8", "safetensors", "onnx"]
    job = _accepted(client, job_body(model_id, dataset_id, export={"formats": formats}))
    assert job["request"]["export"] == {
        "formats": formats,
        "keep_candidates": False,
        "quantization_aware": 0.0,
    }


@pytest.mark.parametrize(
    ("export", "param", "says"),
    [
        ({"formats": ["safetensors", "tflite"]}, "export.formats.1", "'onnx-int8'"),
        ({"formats": ["ONNX"]}, "export.formats.0", "'onnx'"),
        ({"formats": []}, "export.formats", "at least 1"),
        ({"formats": ["onnx", "onnx"]}, "export", "onnx is repeated"),
        ({"formats": "onnx"}, "export.formats", "list"),
        ({"format": ["onnx"]}, "export.format", "unknown field"),
        (
            {"formats": ["safetensors", "onnx"], "quantization_aware": 0.2},
            "export",
            'add "onnx-int8" to export.formats',
        ),
        (
            {"formats": ["onnx-int8"], "quantization_aware": 1.5},
            "export.quantization_aware",
            "less than or equal to 1",
        ),
    ],
)
def test_what_is_refused_names_the_field(client, tenant, model_id, dataset_id, export, param, says):
    body = job_body(model_id, dataset_id, export=export)
    problem = assert_problem(client.post("/v1/jobs", json=body), 422, "validation_error", param)
    assert says in problem["detail"], problem["detail"]
    assert _job_count(tenant) == 0


def test_openapi_lists_the_formats_and_an_example(app):
    app.openapi_schema = None
    doc = app.openapi()
    schemas = doc["components"]["schemas"]
    prop = schemas["JobCreate"]["properties"]["export"]
    export = schemas[prop["$ref"].rsplit("/", 1)[1]] if "$ref" in prop else prop
    formats = export["properties"]["formats"]
    assert formats["items"]["enum"] == ["safetensors", "onnx", "onnx-int8"]
    assert (
        "onnx-int8" in formats["description"] and "export_parity_failed" in formats["description"]
    )
    examples = doc["paths"]["/v1/jobs"]["post"]["requestBody"]["content"]["application/json"][
        "examples"
    ]
    assert examples["int8_onnx"]["value"]["export"] == {"formats": ["safetensors", "onnx-int8"]}


def test_formats_reach_the_engine_spec_and_old_requests_get_the_default(
    client, model_id, dataset_id, tmp_path: Path
):
    from app.datasets.tables import Dataset
    from app.db import session_scope
    from app.jobs.tables import Job
    from app.models.tables import Model
    from app.settings import get_settings
    from app.storage import get_storage
    from workers.engine.spec import ExportSpec
    from workers.inputs import build_spec

    export = {"formats": ["safetensors", "onnx-int8"], "quantization_aware": 0.2}
    job_id = _accepted(client, job_body(model_id, dataset_id, export=export))["id"]

    def spec_of(request: dict[str, Any] | None, workdir: Path):
        workdir.mkdir()
        with session_scope() as s:
            job = s.get(Job, job_id)
            if request is not None:
                s.expunge(job)
                job.request = request
            return build_spec(
                job=job,
                teacher=s.get(Model, model_id),
                dataset=s.get(Dataset, dataset_id),
                storage=get_storage(),
                settings=get_settings(),
                workdir=workdir,
            )

    assert spec_of(None, tmp_path / "a").export == ExportSpec(
        ("safetensors", "onnx-int8"), quantization_aware=0.2
    )
    with session_scope() as s:
        old = json.loads(json.dumps(s.get(Job, job_id).request))
    del old["export"]  # stored before the field existed
    assert spec_of(old, tmp_path / "b").export == ExportSpec()


def test_api_default_is_the_engine_default():
    from app.jobs.schemas import Export
    from workers.engine.spec import ExportSpec

    assert tuple(Export().formats) == ExportSpec().formats


def test_the_api_imports_no_onnx_library():
    import subprocess
    import sys

    code = (
        "import sys, app.main, app.jobs.validation, workers.request_spec; "
        "app.main.create_app(); "
        "heavy = ('torch', 'onnx', 'onnxruntime', 'onnxscript', 'onnx_ir'); "
        "bad = [m for m in sys.modules if m.split('.')[0] in heavy]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ------------------------------------------------------- speed targets name the runtime


def test_a_speedup_target_in_int8_reaches_the_engine(client, model_id, dataset_id, tmp_path):
    from app.datasets.tables import Dataset
    from app.db import session_scope
    from app.jobs.tables import Job
    from app.models.tables import Model
    from app.settings import get_settings
    from app.storage import get_storage
    from workers.inputs import build_spec

    body = job_body(
        model_id,
        dataset_id,
        target={"speedup": 1.5, "runtime": "onnxruntime-int8"},
        pruning={"structured": ["layers", "ffn"]},
        export={"formats": ["safetensors", "onnx-int8"]},
    )
    job = _accepted(client, body)
    assert job["request"]["target"]["runtime"] == "onnxruntime-int8"
    with session_scope() as s:
        spec = build_spec(
            job=s.get(Job, job["id"]),
            teacher=s.get(Model, model_id),
            dataset=s.get(Dataset, dataset_id),
            storage=get_storage(),
            settings=get_settings(),
            workdir=tmp_path,
        )
    assert (spec.target.speedup, spec.target.runtime) == (1.5, "onnxruntime-int8")


def test_a_speedup_target_is_in_pytorch_unless_named(client, model_id, dataset_id):
    job = _accepted(client, job_body(model_id, dataset_id, target={"speedup": 1.5}))
    assert job["request"]["target"]["runtime"] == "pytorch"
    job = _accepted(client, job_body(model_id, dataset_id))
    assert job["request"]["target"]["runtime"] is None  # not a speedup target


@pytest.mark.parametrize(
    ("target", "export", "code", "param", "says"),
    [
        (
            {"speedup": 1.5, "runtime": "onnxruntime-int8"},
            {"formats": ["safetensors", "onnx"]},
            "speedup_runtime_not_exported",
            "target.runtime",
            "add 'onnx-int8' to export.formats",
        ),
        (
            {"speedup": 1.5, "runtime": "onnxruntime"},
            None,
            "speedup_runtime_not_exported",
            "target.runtime",
            "add 'onnx' to export.formats",
        ),
        (
            {"speedup": 1.5, "runtime": "tensorrt"},
            None,
            "validation_error",
            "target.runtime",
            "'onnxruntime-int8'",
        ),
        (
            {"params_ratio": 0.5, "runtime": "onnxruntime"},
            None,
            "validation_error",
            "target",
            "runtime applies only to a speedup, min_retention or max_latency_ms target",
        ),
    ],
)
def test_what_the_worker_cannot_measure_is_refused(
    client, tenant, model_id, dataset_id, target, export, code, param, says
):
    body = job_body(model_id, dataset_id, target=target)
    if export is not None:
        body["export"] = export
    problem = assert_problem(client.post("/v1/jobs", json=body), 422, code, param)
    assert says in problem["detail"], problem["detail"]
    assert _job_count(tenant) == 0


def test_onnx_is_refused_for_families_it_is_not_checked_for(
    client, tenant, model_id, dataset_id, monkeypatch
):
    from app.jobspec import vocabulary

    monkeypatch.setattr(vocabulary, "ONNX_MODEL_TYPES", ("roberta",))
    body = job_body(model_id, dataset_id, export={"formats": ["safetensors", "onnx"]})
    problem = assert_problem(
        client.post("/v1/jobs", json=body), 422, "not_supported_yet", "export.formats"
    )
    assert "'bert'" in problem["detail"] and "'roberta'" in problem["detail"]
    assert _job_count(tenant) == 0
    _accepted(client, job_body(model_id, dataset_id))  # safetensors alone is fine
