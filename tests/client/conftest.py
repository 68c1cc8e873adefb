"""The real API behind a real HTTP server (uvicorn in a thread of the test process, so
a test can change the settings object the server reads), and clients of it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.apiclient import make_key
from tests.apiserver import serving
from tests.e2e.conftest import celery_worker, loopback_webhooks

# Fixtures shared with the e2e tests: the real worker, webhooks to loopback allowed.
__all__ = ["celery_worker", "loopback_webhooks"]

# Tiny training: a job on the tiny teacher ends in well under a minute.
TINY_TRAINING = {"epochs": 2, "teacher_epochs": 3, "batch_size": 16, "max_seq_length": 32}


@pytest.fixture(scope="session")
def server_url(app) -> Iterator[str]:
    with serving(app) as (host, port):
        yield f"http://{host}:{port}"


@pytest.fixture
def api_key(tenant: str) -> str:
    return make_key(tenant)


@pytest.fixture
def mp(server_url: str, api_key: str):
    from modelpress_client import Client

    # Short waits: a test must not sleep through a 60 s Retry-After.
    with Client(server_url, api_key=api_key, max_retry_wait=1.0) as c:
        yield c
