"""training.devices and training.gradient_accumulation_steps at POST /v1/jobs: refused
where no worker could run them (each device takes one example at least of each pass of
a batch), accepted otherwise whatever GPUs a worker has (only the worker knows: it
clamps and reports), and carried to the engine spec."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.apiclient import assert_problem, job_body


def test_more_shares_than_a_batch_has_examples_is_refused(client, model_id, dataset_id):
    training = {"batch_size": 4, "devices": 4, "gradient_accumulation_steps": 2}
    r = client.post("/v1/jobs", json=job_body(model_id, dataset_id, training=training))
    problem = assert_problem(r, 422, "validation_error", "training")
    assert "cannot be shared by 4 device(s) in 2 pass(es)" in problem["detail"]


def test_zero_devices_is_refused(client, model_id, dataset_id):
    body = job_body(model_id, dataset_id, training={"devices": 0})
    assert_problem(client.post("/v1/jobs", json=body), 422, "validation_error", "training.devices")


def _spec_of(job_id: str, model_id: str, dataset_id: str, workdir: Path) -> Any:
    from app.datasets.tables import Dataset
    from app.db import session_scope
    from app.jobs.tables import Job
    from app.models.tables import Model
    from app.settings import get_settings
    from app.storage import get_storage
    from workers.inputs import build_spec

    workdir.mkdir()
    with session_scope() as s:
        return build_spec(
            job=s.get(Job, job_id),
            teacher=s.get(Model, model_id),
            dataset=s.get(Dataset, dataset_id),
            storage=get_storage(),
            settings=get_settings(),
            workdir=workdir,
        )


def test_any_number_of_gpus_is_taken_and_reaches_the_engine(
    client, model_id, dataset_id, tmp_path: Path
):
    training = {"devices": 8, "gradient_accumulation_steps": 2}
    r = client.post("/v1/jobs", json=job_body(model_id, dataset_id, training=training))
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    # No worker runs in these tests: cancel it so no later test meets it queued.
    assert client.post(f"/v1/jobs/{job_id}/cancel").status_code == 202
    assert r.json()["request"]["training"]["devices"] == 8
    spec = _spec_of(job_id, model_id, dataset_id, tmp_path / "spec")
    assert (spec.training.devices, spec.training.gradient_accumulation_steps) == (8, 2)
