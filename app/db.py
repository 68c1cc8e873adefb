"""Database engine, sessions and the declarative base (schema lives in migrations/)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import lru_cache

from sqlalchemy import DateTime, MetaData, create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

from app.settings import get_settings

# Stable constraint names, so Alembic migrations can refer to them on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every backend (SQLite drops the offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTCDateTime column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def make_engine(url: str, *, pool_size: int | None = None) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):
            # WAL lets the API read while the worker writes; foreign keys are off by
            # default in SQLite.
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    # The setting unless a caller sizes it (one source for the default).
    size = pool_size or get_settings().database_pool_size
    engine = create_engine(url, pool_size=size, max_overflow=size)
    _ping_when_idle(engine)
    return engine


# A pooled connection that sat unused this long is tested before use (a round trip);
# one used more recently is trusted.
PING_AFTER_IDLE_S = 1.0


def _ping_when_idle(engine: Engine) -> None:
    """pool_pre_ping, for connections idle longer than PING_AFTER_IDLE_S only.

    pool_pre_ping tests every checkout, which doubles the CPU and round trips of a
    one-query request (the API's polling path). What a ping catches (a restarted
    server, a connection a proxy or firewall dropped while idle) happens to idle
    connections; a connection that broke within the last second fails its statement
    instead, as a request in flight at that moment does anyway (503 database_unavailable
    with Retry-After), and SQLAlchemy then recycles every connection of the pool older
    than the failure, so the next requests get fresh ones."""

    def _stamp(_dbapi_conn, record) -> None:
        record.info["used_at"] = time.monotonic()

    event.listen(engine, "connect", _stamp)  # a new connection needs no test
    event.listen(engine, "checkin", _stamp)

    @event.listens_for(engine, "checkout")
    def _ping(dbapi_conn, record, _proxy) -> None:
        idle = time.monotonic() - record.info.get("used_at", float("-inf"))
        if idle <= PING_AFTER_IDLE_S:
            return
        try:
            engine.dialect.do_ping(dbapi_conn)
        except engine.dialect.loaded_dbapi.Error as exc:
            if engine.dialect.is_disconnect(exc, dbapi_conn, None):
                # The pool throws this connection away and checks out another.
                raise DisconnectionError() from exc
            raise


@lru_cache
def get_engine() -> Engine:
    return make_engine(get_settings().database_url)


@lru_cache
def get_sessionmaker() -> sessionmaker[Session]:
    return sessionmaker(bind=get_engine(), expire_on_commit=False)


def warm_up() -> bool:
    """The engine made and one connection opened and pooled, so that the driver and the
    dialect load now rather than on the first request (app.main freezes what start-up
    loaded). A database that does not answer yet is no error: requests get 503 until
    it does. Whether it answered."""
    try:
        with get_engine().connect():
            return True
    except (OperationalError, InterfaceError):
        return False


@contextmanager
def session_scope() -> Iterator[Session]:
    """A session for code outside a request (workers, CLI): commit is explicit."""
    session = get_sessionmaker()()
    try:
        yield session
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
