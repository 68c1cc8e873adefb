"""The cache of accepted keys: kept for its seconds, never without them, bounded, and
forgotten when this process revokes the key."""

from __future__ import annotations

from app.auth.key_cache import KeyCache
from app.auth.service import Principal

ALICE = Principal(tenant="alice", scope="read", key_id="key_a")
BOB = Principal(tenant="bob", scope="write", key_id="key_b")


def test_an_entry_lasts_its_seconds_and_no_longer():
    cache = KeyCache()
    cache.put("h1", ALICE, ttl=5.0, now=100.0)
    assert cache.get("h1", now=104.9) == ALICE
    assert cache.get("h1", now=105.0) is None
    assert len(cache) == 0  # an expired entry is dropped when read


def test_no_seconds_keeps_nothing():
    cache = KeyCache()
    cache.put("h1", ALICE, ttl=0.0, now=100.0)
    assert cache.get("h1", now=100.0) is None and len(cache) == 0


def test_a_revoked_key_is_forgotten_by_its_id():
    cache = KeyCache()
    cache.put("h1", ALICE, ttl=60.0, now=0.0)
    cache.put("h2", BOB, ttl=60.0, now=0.0)
    cache.forget(key_id="key_a")
    assert cache.get("h1", now=1.0) is None and cache.get("h2", now=1.0) == BOB


def test_a_full_cache_drops_the_expired_then_the_oldest():
    cache = KeyCache(max_entries=2)
    cache.put("old", ALICE, ttl=1.0, now=0.0)
    cache.put("b", BOB, ttl=60.0, now=0.5)
    cache.put("c", ALICE, ttl=60.0, now=2.0)  # "old" has expired: it goes
    assert cache.get("b", now=2.0) == BOB and cache.get("c", now=2.0) == ALICE
    cache.put("d", BOB, ttl=60.0, now=3.0)  # none expired: the oldest lookup, "b", goes
    assert len(cache) == 2 and cache.get("b", now=3.0) is None
    assert cache.get("d", now=3.0) == BOB


def test_a_key_revoked_behind_the_service_is_accepted_until_its_entry_expires(
    app, tenant, monkeypatch
):
    # Revoked by another process (here: an UPDATE this process's cache does not see),
    # the key keeps working for the cache's seconds, then gets 401.
    from fastapi.testclient import TestClient
    from sqlalchemy import update

    from app.auth.key_cache import KEYS
    from app.auth.tables import ApiKey
    from app.db import session_scope, utcnow
    from app.settings import get_settings
    from tests.apiclient import make_key

    monkeypatch.setattr(get_settings(), "api_key_cache_seconds", 300.0)
    key = make_key(tenant)
    with TestClient(app) as c:
        c.headers["Authorization"] = f"Bearer {key}"
        assert c.get("/v1/jobs").status_code == 200
        with session_scope() as s:
            s.execute(update(ApiKey).where(ApiKey.tenant == tenant).values(revoked_at=utcnow()))
            s.commit()
        assert c.get("/v1/jobs").status_code == 200  # from the cache
        KEYS.clear()  # as its expiry would
        assert c.get("/v1/jobs").status_code == 401
