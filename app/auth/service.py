"""API keys: created once and shown once, stored as a hash, revocable."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from app.auth.key_cache import KEYS
from app.auth.tables import ApiKey
from app.db import utcnow
from app.ids import new_id

SCOPES = ("read", "write", "admin")
KEY_PREFIX = "mp_"
TENANT_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class Principal:
    tenant: str
    scope: str
    key_id: str

    def allows(self, needed: str) -> bool:
        return SCOPES.index(self.scope) >= SCOPES.index(needed)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(
    *, session: Session, tenant: str, scope: str = "write", name: str | None = None
) -> tuple[ApiKey, str]:
    """Returns the row and the key itself, which is not stored and cannot be shown again."""
    if not TENANT_RE.match(tenant):
        raise ValueError("tenant must be 1-64 characters: lowercase letters, digits, '_', '.', '-'")
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {', '.join(SCOPES)}")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(
        id=new_id("key"),
        tenant=tenant,
        scope=scope,
        prefix=key[: len(KEY_PREFIX) + 6],
        key_hash=hash_key(key),
        name=name,
    )
    session.add(row)
    session.commit()
    return row, key


def list_keys(*, session: Session, tenant: str | None = None) -> list[ApiKey]:
    query = select(ApiKey).order_by(ApiKey.id)
    if tenant is not None:
        query = query.where(ApiKey.tenant == tenant)
    return list(session.scalars(query))


def revoke_key(*, session: Session, key_id: str) -> bool:
    done = session.execute(
        update(ApiKey)
        .where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    ).rowcount
    session.commit()
    # Other processes accept it until their cached lookup expires (key_cache.py).
    KEYS.forget(key_id=key_id)
    return bool(done)


# Every request runs this query, so it is built once: a statement built per call costs
# SQLAlchemy its cache key each time (about three times the query's own CPU here), and
# three columns through the Core connection skip the ORM's row loading.
_BY_HASH = select(ApiKey.tenant, ApiKey.scope, ApiKey.id).where(
    ApiKey.key_hash == bindparam("key_hash"), ApiKey.revoked_at.is_(None)
)


def authenticate(*, session: Session, key: str) -> Principal | None:
    if not key.startswith(KEY_PREFIX) or len(key) > 200:
        return None
    row = session.connection().execute(_BY_HASH, {"key_hash": hash_key(key)}).first()
    if row is None:
        return None
    return Principal(tenant=row.tenant, scope=row.scope, key_id=row.id)
