"""An in-process API client per test, each with its own tenant, and upload helpers."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient


@pytest.fixture(scope="session")
def app(stack: dict[str, str]):
    from app.main import create_app

    return create_app()


@pytest.fixture
def tenant() -> str:
    return f"t-{uuid.uuid4().hex[:8]}"


def make_key(tenant: str, scope: str = "write") -> str:
    from app.auth.service import create_key
    from app.db import session_scope

    with session_scope() as session:
        return create_key(session=session, tenant=tenant, scope=scope)[1]


@pytest.fixture
def client(app, tenant: str) -> Iterator[TestClient]:
    # Each test gets its own tenant (a real API key), so lists see only its own rows.
    key = make_key(tenant)
    with TestClient(app, raise_server_exceptions=False) as c:
        c.headers["Authorization"] = f"Bearer {key}"
        yield c
    app.dependency_overrides.clear()


def upload_model(client: TestClient, archive: Path, **form: str) -> Any:
    with open(archive, "rb") as f:
        return client.post("/v1/models", files={"file": (archive.name, f)}, data=form)


def upload_dataset(client: TestClient, path: Path, **form: str) -> Any:
    with open(path, "rb") as f:
        return client.post("/v1/datasets", files={"file": (path.name, f)}, data=form)


@pytest.fixture
def model_id(client: TestClient, tiny_teacher_tar: Path) -> str:
    r = upload_model(client, tiny_teacher_tar, name="tiny")
    assert r.status_code == 201, r.text
    return r.json()["id"]


@pytest.fixture
def dataset_id(client: TestClient, tiny_dataset: Path) -> str:
    r = upload_dataset(client, tiny_dataset, name="tiny")
    assert r.status_code == 201, r.text
    return r.json()["id"]


# What a succeeded job publishes: one of each, whatever its attempts.
ARTIFACT_NAMES = ["model", "model-card", "report", "teacher-vs-student", "training-curves"]


def job_body(model_id: str, dataset_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "task": "sequence-classification",
        "teacher": {"model_id": model_id},
        "dataset": {"dataset_id": dataset_id},
        "target": {"params_ratio": 0.5},
        **extra,
    }


def assert_problem(r: Any, status: int, code: str | None = None, param: str | None = None) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["status"] == status
    assert body["title"] and body["detail"] and body["type"]
    if code is not None:
        assert body["code"] == code, body
    if param is not None:
        assert body.get("param") == param, body
    return body


@pytest.fixture
def artifact(client, model_id, dataset_id, tmp_path) -> tuple[str, bytes]:
    """A queued job with one stored artifact (report.json, 200 kB of random bytes) and
    its row, as a finished job would have: (job id, the bytes)."""
    import os

    from app.db import session_scope
    from app.jobs.tables import Artifact
    from app.storage import get_storage

    jid = client.post("/v1/jobs", json=job_body(model_id, dataset_id)).json()["id"]
    data = os.urandom(200_000)
    path = tmp_path / "report.json"
    path.write_bytes(data)
    stored = get_storage().put_file(f"jobs/{jid}/1/report.json", path)
    with session_scope() as s:
        s.add(
            Artifact(
                job_id=jid,
                name="report",
                kind="report",
                filename="report.json",
                content_type="application/json",
                storage_key=stored.key,
                size_bytes=stored.size_bytes,
                sha256=stored.sha256,
            )
        )
        s.commit()
    return jid, data


def finished_job(client: TestClient, jid: str, timeout: float) -> dict[str, Any]:
    """The job once it has ended, polled until ``timeout`` seconds have passed."""
    from tests.e2e.conftest import wait_for

    def ended() -> dict[str, Any] | None:
        job = client.get(f"/v1/jobs/{jid}").json()
        return job if job["status"] in ("succeeded", "failed", "cancelled") else None

    return wait_for(ended, timeout, f"job {jid} to finish")


def fetch_artifact(client: TestClient, jid: str, name: str, folder: Path) -> Path:
    """A job's artifact (a tar.gz folder) downloaded and unpacked into ``folder``."""
    import io
    import tarfile

    r = client.get(f"/v1/jobs/{jid}/artifacts/{name}")
    assert r.status_code == 200, r.text
    with tarfile.open(fileobj=io.BytesIO(r.content), mode="r:gz") as tf:
        tf.extractall(folder, filter="data")
    return folder
