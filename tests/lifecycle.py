"""A finished job with real objects in the store, made through the jobs' own state
machine (create, claim, checkpoint, finish): what a worker leaves, without training."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tests.apiclient import job_body


def put(key: str, data: bytes, tmp_path: Path) -> Any:
    from app.storage import get_storage

    path = tmp_path / key.replace("/", "_")
    path.write_bytes(data)
    return get_storage().put_file(key, path)


def finished_job(
    client, model_id: str, dataset_id: str, tmp_path: Path, *, status: str = "succeeded"
) -> str:
    """A job that ran once and ended with ``status``; a succeeded one has two artifacts
    (model and report) under its attempt's folder, and every job keeps a checkpoint object
    that its worker did not get to delete, as a worker killed at the end leaves it."""
    from app.db import session_scope
    from app.jobs import service as jobs
    from workers.callback import checkpoint_prefix
    from workers.runner import attempt_prefix

    jid = client.post("/v1/jobs", json=job_body(model_id, dataset_id)).json()["id"]
    with session_scope() as s:
        attempt = jobs.claim(session=s, job_id=jid, worker="test", lease_seconds=60)
    assert attempt == 1
    ckpt = put(f"{checkpoint_prefix(jid)}a1-00001.pt", os.urandom(1000), tmp_path)
    with session_scope() as s:
        jobs.record_checkpoint(session=s, job_id=jid, attempt=1, key=ckpt.key, info={"step": 1})
    artifacts = []
    if status == "succeeded":
        for name, filename, size in (("model", "model.tar.gz", 30_000), ("report", "r.json", 700)):
            key = f"{attempt_prefix(jid, 1)}{filename}"
            artifacts.append(artifact_row(name, filename, key, os.urandom(size), tmp_path))
    with session_scope() as s:
        assert jobs.finish(
            session=s,
            job_id=jid,
            attempt=1,
            status=status,
            metrics={"student": {"accuracy": 0.9}} if status == "succeeded" else None,
            error_code="boom" if status == "failed" else None,
            error_message="it broke" if status == "failed" else None,
            artifacts=artifacts,
        )
    return jid


def artifact_row(name: str, filename: str, key: str, data: bytes, tmp_path: Path) -> dict:
    """``data`` stored at ``key``, and the artifact row a worker records for it."""
    stored = put(key, data, tmp_path)
    return {
        "name": name,
        "kind": name,
        "filename": filename,
        "content_type": "application/octet-stream",
        "storage_key": stored.key,
        "size_bytes": stored.size_bytes,
        "sha256": stored.sha256,
    }


def bucket_keys(prefix: str) -> list[str]:
    """What the S3 server itself lists under ``prefix`` (not through app.storage)."""
    from tests import services

    s3 = services.s3_client()
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=services.BUCKET, Prefix=prefix):
        keys += [o["Key"] for o in page.get("Contents", [])]
    return keys
