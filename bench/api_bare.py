"""The yardstick of ``api_load.py``: the least a FastAPI + SQLAlchemy service does to
answer ``GET /v1/jobs/{id}`` from PostgreSQL, as FastAPI's SQL tutorial writes it.

A sync route, a session per request from a dependency, the row read by primary key with
the same driver (psycopg 3) and returned as JSON: every column of the same ``jobs`` row
the real route reads. No key, no tenant, no metrics, no problem+json, no pre-ping.

    MODELPRESS_DATABASE_URL=postgresql+psycopg://... uvicorn bench.api_bare:app
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException
from sqlalchemy import MetaData, Table, create_engine, select
from sqlalchemy.orm import Session

# SQLAlchemy's default pool (5, and 10 more closed on their return) unless
# MODELPRESS_BENCH_BARE_POOL_SIZE gives the real API's sizing (that many, as many again).
_pool = int(os.environ.get("MODELPRESS_BENCH_BARE_POOL_SIZE", "0"))
engine = create_engine(
    os.environ["MODELPRESS_DATABASE_URL"],
    **({"pool_size": _pool, "max_overflow": _pool} if _pool else {}),
)
jobs = Table("jobs", MetaData(), autoload_with=engine)
app = FastAPI()


def get_session() -> Iterator[Session]:
    with Session(engine) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


@app.get("/v1/jobs/{job_id}")
def read_job(job_id: str, session: SessionDep) -> dict[str, Any]:
    row = session.execute(select(jobs).where(jobs.c.id == job_id)).mappings().first()
    if row is None:
        raise HTTPException(status_code=404, detail="Job not found")
    return dict(row)
