"""The pool tests a connection that sat idle before lending it, and trusts one just used
(app.db._ping_when_idle), on the real PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import OperationalError

from app import db
from tests import services


@pytest.fixture
def engine():
    services.require(services.POSTGRES_URL, "PostgreSQL")
    engine = db.make_engine(services.POSTGRES_URL)
    yield engine
    engine.dispose()


def _backend_pid(engine) -> int:
    with engine.connect() as conn:
        return conn.scalar(sa.text("SELECT pg_backend_pid()"))


def _terminate(pid: int) -> None:
    admin = sa.create_engine(services.POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        assert conn.scalar(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    admin.dispose()


def test_an_idle_connection_that_died_is_replaced_before_use(engine, monkeypatch):
    pid = _backend_pid(engine)
    _terminate(pid)  # as a server restart or a proxy's idle timeout would
    monkeypatch.setattr(db, "PING_AFTER_IDLE_S", 0.0)  # every connection counts as idle
    assert _backend_pid(engine) != pid  # no error: the ping found it dead


def test_a_connection_used_just_now_is_not_tested(engine, monkeypatch):
    monkeypatch.setattr(db, "PING_AFTER_IDLE_S", 3600.0)
    pid = _backend_pid(engine)
    _terminate(pid)
    # Trusted without a round trip: the statement itself finds it dead...
    with pytest.raises(OperationalError):
        _backend_pid(engine)
    # ...and the pool then replaces its connections.
    assert _backend_pid(engine) != pid


def test_connections_up_to_the_pool_size_stay_open_between_requests():
    # Twelve requests at once, then twelve more: the second twelve find the first
    # twelve's connections (the same server processes), none opened again; a pool of
    # five would have closed seven of them on their return.
    services.require(services.POSTGRES_URL, "PostgreSQL")
    engine = db.make_engine(services.POSTGRES_URL, pool_size=12)
    try:

        def burst() -> set[int]:
            conns = [engine.connect() for _ in range(12)]
            pids = {c.scalar(sa.text("SELECT pg_backend_pid()")) for c in conns}
            for c in conns:
                c.close()
            return pids

        first = burst()
        assert len(first) == 12 and burst() == first
    finally:
        engine.dispose()


def test_the_pool_size_is_the_setting():
    code = "from app.db import get_engine; print(get_engine().pool.size())"
    env = {**os.environ, "MODELPRESS_DATABASE_URL": services.POSTGRES_URL}
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**env, "MODELPRESS_DATABASE_POOL_SIZE": "7"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.split() == ["7"]
