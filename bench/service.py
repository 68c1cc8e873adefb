"""The real service for a benchmark, as production runs it, on this machine: a fresh
PostgreSQL database, a flushed Redis database, a fresh S3 bucket (or a local folder),
migrations, and the API (`modelpress api`) on loopback. The caller starts the workers it
measures (``BenchService.start``), each with the same settings, and gets clients with a
write key of a tenant (``BenchService.client``). Everything is removed at the end; the
processes' output is in ``<home>/services.log``.

The servers: MODELPRESS_BENCH_POSTGRES (default the local PostgreSQL),
MODELPRESS_BENCH_REDIS (the caller's default database, so that two benchmarks do not
flush each other's) and MODELPRESS_BENCH_S3 (the local SeaweedFS).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[1]
POSTGRES = os.environ.get(
    "MODELPRESS_BENCH_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432"
)
S3 = os.environ.get("MODELPRESS_BENCH_S3", "http://127.0.0.1:8333")


def redis_url(default_db: int) -> str:
    return os.environ.get("MODELPRESS_BENCH_REDIS", f"redis://127.0.0.1:6379/{default_db}")


@dataclass
class BenchService:
    home: Path
    env: dict[str, str]
    logs: IO[bytes]
    port: int = 0
    procs: list[subprocess.Popen] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, tenant: str = "bench", *, timeout: float = 60):
        """A client with a new write key of ``tenant``."""
        from modelpress_client import Client

        from app.auth.service import create_key
        from app.db import session_scope

        with session_scope() as s:
            key = create_key(session=s, tenant=tenant, scope="write")[1]
        return Client(self.url, api_key=key, timeout=timeout)

    def start(
        self, *argv: str, env: dict[str, str] | None = None, **popen: Any
    ) -> subprocess.Popen:
        """``python -m app.cli *argv`` with the service's settings (and ``env`` over
        them); stopped at the end unless the caller stops it first."""
        proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", *argv],
            env={**self.env, **(env or {})},
            cwd=ROOT,
            stdout=self.logs,
            stderr=subprocess.STDOUT,
            **popen,
        )
        self.procs.append(proc)
        return proc

    def wait_healthy(self, timeout_s: float = 120) -> None:
        import httpx

        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the API did not answer (see {self.home}/services.log)")
            time.sleep(0.5)


@contextlib.contextmanager
def bench_service(
    name: str, *, redis: str, s3: bool = True, env: dict[str, str] | None = None
) -> Iterator[BenchService]:
    """The service for benchmark ``name`` (the temporary folder's prefix), its broker on
    ``redis``, its artifacts in a fresh bucket (``s3``) or under its home folder."""
    import redis as redis_client
    import sqlalchemy as sa

    from app.migrate import upgrade
    from bench.net import free_port

    tag = uuid.uuid4().hex[:8]
    db = f"modelpress_bench_{tag}"
    bucket = f"modelpress-bench-{tag}"
    home = Path(tempfile.mkdtemp(prefix=f"modelpress-bench-{name}-"))
    settings = {
        "MODELPRESS_HOME": str(home),
        "MODELPRESS_DATABASE_URL": f"{POSTGRES}/{db}",
        "MODELPRESS_BROKER_URL": redis,
        "MODELPRESS_GPU_WORKERS": "false",
        "MODELPRESS_LOG_LEVEL": "WARNING",
        "MODELPRESS_TENANT_MAX_ACTIVE_JOBS": "1000",
        **(
            {
                "MODELPRESS_STORAGE_URL": f"s3://{bucket}",
                "MODELPRESS_S3_ENDPOINT_URL": S3,
                "MODELPRESS_S3_ACCESS_KEY_ID": "test",
                "MODELPRESS_S3_SECRET_ACCESS_KEY": "test",
            }
            if s3
            else {"MODELPRESS_STORAGE_URL": (home / "artifacts").as_uri()}
        ),
        **(env or {}),
    }
    os.environ.update(settings)  # this process reads the same settings
    from app.storage import get_storage

    admin = sa.create_engine(f"{POSTGRES}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{db}"'))
    redis_client.Redis.from_url(redis).flushdb()
    storage = get_storage()
    storage.ensure()
    logs = open(home / "services.log", "wb")  # noqa: SIM115  (closed at the end)
    svc = BenchService(home=home, env={**os.environ, **settings}, logs=logs)
    try:
        upgrade(settings["MODELPRESS_DATABASE_URL"])
        svc.port = free_port()
        svc.start("api", "--port", str(svc.port))
        svc.wait_healthy()
        yield svc
    finally:
        for proc in svc.procs:
            proc.terminate()
        for proc in svc.procs:
            proc.wait(timeout=60)
        from app.db import get_engine

        get_engine().dispose()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
        admin.dispose()
        if s3:
            storage.delete_prefix("")
            storage.client.delete_bucket(Bucket=bucket)  # type: ignore[attr-defined]
        svc.logs.close()
        print(f"service logs: {home}/services.log", file=sys.stderr, flush=True)
