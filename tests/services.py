"""Where the real servers the tests use are, and a fresh database/bucket per run.

scripts/services.sh starts them when they are not running; nothing here is mocked.
"""

from __future__ import annotations

import os
import socket
import uuid
from urllib.parse import urlparse

POSTGRES_URL = os.environ.get(
    "MODELPRESS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def _own_redis_db(url: str, worker: str | None) -> str:
    """Under pytest-xdist each test process gets a Redis database of its own (the given
    one, then the ones below it), as it gets its own PostgreSQL database and bucket: the
    queues of one process's workers must not feed another's."""
    if not worker or not worker.startswith("gw"):
        return url
    base, _, db = url.rpartition("/")
    return f"{base}/{(int(db or 0) - int(worker[2:])) % 16}"


REDIS_URL = _own_redis_db(
    os.environ.get("MODELPRESS_TEST_REDIS_URL", "redis://127.0.0.1:6379/15"),
    os.environ.get("PYTEST_XDIST_WORKER"),
)
S3_ENDPOINT = os.environ.get("MODELPRESS_TEST_S3_ENDPOINT", "http://127.0.0.1:8333")

RUN_ID = uuid.uuid4().hex[:10]
DB_NAME = f"modelpress_test_{RUN_ID}"
BUCKET = f"modelpress-test-{RUN_ID}"


def database_url(name: str = DB_NAME) -> str:
    return POSTGRES_URL.rsplit("/", 1)[0] + f"/{name}"


def require(url: str, what: str) -> None:
    u = urlparse(url)
    try:
        socket.create_connection((u.hostname, u.port), timeout=3).close()
    except OSError as e:
        raise RuntimeError(
            f"{what} is not reachable at {u.hostname}:{u.port}; start the test servers with "
            "`scripts/services.sh up` (scripts/test.sh does it for you)."
        ) from e


def s3_client():
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=S3_ENDPOINT,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}),
    )
