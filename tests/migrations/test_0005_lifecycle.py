"""Revision 0005 on a database that holds jobs: nothing is lost on the way up (SQLite
rebuilds the jobs table, whose old copy must not cascade to events and artifacts),
deleting a used model nulls the job's reference, and the way down refuses to drop rows."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command

from app.migrate import alembic_config, upgrade
from tests import services

NOW = datetime(2026, 12, 1, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'm.db'}"
        return
    services.require(services.POSTGRES_URL, "PostgreSQL")
    name = f"modelpress_mig_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(services.POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    yield services.database_url(name)
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _engine(url: str) -> sa.Engine:
    from app.db import make_engine

    return make_engine(url)  # with the app's pragmas: SQLite enforces foreign keys


def _fill(url: str) -> None:
    """Two models, a dataset, one finished job with an event and an artifact, at 0004."""
    engine = _engine(url)
    meta = sa.MetaData()
    meta.reflect(engine)
    t = meta.tables
    with engine.begin() as conn:
        for mid in ("mdl_a", "mdl_b"):
            conn.execute(
                t["models"].insert(),
                dict(
                    id=mid, tenant="t", filename="m.tar.gz", archive_format="tar.gz",
                    storage_key=f"models/{mid}/model.tar.gz", size_bytes=1, sha256="0" * 64,
                    num_parameters=1, has_task_head=False, config={}, created_at=NOW,
                ),
            )  # fmt: skip
        conn.execute(
            t["datasets"].insert(),
            dict(
                id="ds_a", tenant="t", filename="d.jsonl", format="jsonl", status="ready",
                num_rows=1, splits={}, label_names=[], split_generated=False,
                storage_key="datasets/ds_a/source.jsonl", size_bytes=1, sha256="0" * 64,
                created_at=NOW,
            ),
        )  # fmt: skip
        conn.execute(
            t["jobs"].insert(),
            dict(
                id="job_a", tenant="t", task="sequence-classification", status="succeeded",
                progress=1.0, attempt=1, queue="cpu", teacher_id="mdl_a", dataset_id="ds_a",
                request={"teacher": {"model_id": "mdl_a"}}, request_hash="h",
                created_at=NOW, finished_at=NOW, updated_at=NOW,
            ),
        )  # fmt: skip
        conn.execute(
            t["job_events"].insert(),
            dict(job_id="job_a", type="status", attempt=1, data={}, created_at=NOW),
        )
        conn.execute(
            t["artifacts"].insert(),
            dict(
                job_id="job_a", name="model", kind="model", filename="m.tar.gz",
                content_type="application/gzip", storage_key="jobs/job_a/1/m.tar.gz",
                size_bytes=5, sha256="0" * 64, created_at=NOW,
            ),
        )  # fmt: skip
    engine.dispose()


def _count(engine: sa.Engine, sql: str) -> int:
    with engine.connect() as conn:
        return conn.scalar(sa.text(sql))


def test_upgrade_keeps_every_row_and_references_null_on_delete(url: str):
    upgrade(url, "0004")
    _fill(url)
    upgrade(url)
    engine = _engine(url)
    for table in ("jobs", "job_events", "artifacts", "models", "datasets"):
        assert _count(engine, f"SELECT count(*) FROM {table}") > 0, table
    assert _count(engine, "SELECT count(*) FROM job_events WHERE job_id = 'job_a'") == 1
    # A model and dataset that a finished job used can go; the job stays, its request too.
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM models WHERE id = 'mdl_a'"))
        conn.execute(sa.text("DELETE FROM datasets WHERE id = 'ds_a'"))
    with engine.connect() as conn:
        row = conn.execute(sa.text("SELECT teacher_id, dataset_id FROM jobs")).one()
    assert tuple(row) == (None, None)
    assert _count(engine, "SELECT count(*) FROM artifacts") == 1
    # The foreign keys are still enforced after the rebuild.
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        conn.execute(sa.text("UPDATE jobs SET teacher_id = 'mdl_nope'"))
    engine.dispose()
    # Down: refused while a job has lost its teacher, rather than dropping the job.
    with pytest.raises(RuntimeError, match="lost their teacher or dataset"):
        command.downgrade(alembic_config(url), "0004")
    engine = _engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM jobs"))
    engine.dispose()
    command.downgrade(alembic_config(url), "0004")
    upgrade(url)
