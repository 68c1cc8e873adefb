"""Keys seen lately, so that a client polling with one key costs the database one key
lookup per few seconds rather than one per request.

The lookup was the largest share of what the polled route spends over a bare FastAPI +
SQLAlchemy endpoint (bench/README.md, "api_load.py"): a query, a session and a trip to a
worker thread. Keys are immutable but for their revocation, so a cached principal can
only be wrong in one way: a key revoked by another process (``modelpress keys revoke``)
is still accepted by this one for up to ``MODELPRESS_API_KEY_CACHE_SECONDS``, as an
authorizer's cache behaves in API gateways. A revocation in this process forgets the
key at once. Only accepted keys are kept: an unknown key always reaches the database,
so nobody fills the cache with guesses.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.auth.service import Principal

# Enough for every key of a large deployment; past it the oldest entry goes first.
MAX_ENTRIES = 10_000


@dataclass(frozen=True)
class _Entry:
    principal: Principal
    expires: float


class KeyCache:
    """Principals by key hash, each for ``ttl`` seconds from its lookup.

    Read and written from the event loop's thread (app.guard) and by a revocation in any
    thread; each operation is one dict operation, atomic under the GIL."""

    def __init__(self, *, max_entries: int = MAX_ENTRIES) -> None:
        self._entries: dict[str, _Entry] = {}
        self._max = max_entries

    def get(self, key_hash: str, *, now: float | None = None) -> Principal | None:
        entry = self._entries.get(key_hash)
        if entry is None:
            return None
        if entry.expires <= (time.monotonic() if now is None else now):
            self._entries.pop(key_hash, None)
            return None
        return entry.principal

    def put(
        self, key_hash: str, principal: Principal, *, ttl: float, now: float | None = None
    ) -> None:
        if ttl <= 0:
            return
        now = time.monotonic() if now is None else now
        if key_hash not in self._entries and len(self._entries) >= self._max:
            self._evict(now)
        self._entries[key_hash] = _Entry(principal, now + ttl)

    def forget(self, *, key_id: str) -> None:
        for key_hash, entry in list(self._entries.items()):
            if entry.principal.key_id == key_id:
                self._entries.pop(key_hash, None)

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def _evict(self, now: float) -> None:
        for key_hash, entry in list(self._entries.items()):
            if entry.expires <= now:
                self._entries.pop(key_hash, None)
        while len(self._entries) >= self._max:
            # Dicts keep insertion order: the first entry is the oldest lookup.
            self._entries.pop(next(iter(self._entries)), None)


KEYS = KeyCache()
