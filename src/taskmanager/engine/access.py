"""KeyService: creating, listing and revoking API keys, and finding the key a request presents.

Lookups go by the key's SHA-256 (the unique index), so the time a wrong key takes does not depend
on how much of it was right; the stored hash is then compared with ``hmac.compare_digest``.
A found key is cached for ``cache_seconds`` of the engine clock: a key revoked on this server
stops working at once, on another server within that bound. ``last_used_at`` is not written on
every request: uses are collected and written in one batch at most every ``flush_seconds``.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from typing import Any

from taskmanager import models
from taskmanager.engine.clock import Clock, SystemClock
from taskmanager.engine.keys import (
    ApiKey,
    KeyStore,
    NewApiKey,
    Principal,
    checked_name,
    checked_rate_limit,
    checked_scopes,
    checked_types,
    generate_key,
    hashes_match,
    key_hash,
)
from taskmanager.engine.replies import Reply
from taskmanager.engine.wire import iso
from taskmanager.errors import NotFound

log = logging.getLogger("taskmanager.keys")

#: Seconds a found key is trusted without asking the database again (revocation bound across
#: servers; the server that revokes a key forgets it at once).
KEY_CACHE_SECONDS = 5.0
#: Seconds between batched writes of ``last_used_at``.
LAST_USED_FLUSH_SECONDS = 30.0
#: Keys kept in the cache before it is emptied (bounds memory, whatever the traffic).
KEY_CACHE_SIZE = 10_000
KEY_NOT_FOUND = "API key not found"


def key_data(key: ApiKey) -> dict[str, Any]:
    return {
        "id": key.id,
        "name": key.name,
        "prefix": key.prefix,
        "scopes": list(key.scopes),
        "rate_limit": key.rate_limit,
        "types": None if key.types is None else list(key.types),
        "is_active": key.is_active,
        "created_at": iso(key.created_at),
        "last_used_at": iso(key.last_used_at),
    }


class KeyService:
    """Stored API keys. One per process; safe to share between concurrent requests."""

    def __init__(
        self,
        store: KeyStore,
        *,
        clock: Clock | None = None,
        cache_seconds: float = KEY_CACHE_SECONDS,
        flush_seconds: float = LAST_USED_FLUSH_SECONDS,
    ) -> None:
        self.store = store
        self.clock = clock or SystemClock()
        self.cache_ttl = timedelta(seconds=cache_seconds)
        self.flush_interval = timedelta(seconds=flush_seconds)
        self._cache: dict[str, tuple[ApiKey, datetime]] = {}
        self._used: dict[int, datetime] = {}
        self._flushed_at: datetime | None = None
        self._flushing: asyncio.Task[None] | None = None
        self._any_keys: tuple[bool, datetime] | None = None

    # -- the admin routes ---------------------------------------------------------------------

    async def create(self, body: models.CreateApiKey) -> Reply:
        name = checked_name(body.name)
        scopes = checked_scopes(body.scopes)
        rate_limit = checked_rate_limit(body.rate_limit)
        types = checked_types(body.types)
        secret, prefix = generate_key()
        stored = await self.store.insert_api_key(
            NewApiKey(name, prefix, key_hash(secret), scopes, rate_limit, self.clock.now(), types)
        )
        self._any_keys = (True, self.clock.now())
        log.info("API key %s created (id %s, name %r, scopes %s)", prefix, stored.id, name, " ".join(scopes))
        data = {**key_data(stored), "key": secret}
        return Reply("API key created; store it now, it is not shown again", data)

    async def list(self) -> Reply:
        await self.flush()
        items = [key_data(k) for k in await self.store.list_api_keys()]
        data = {"api_keys": items, "items": items, "count": len(items)}
        return Reply("API keys retrieved successfully", data)

    async def revoke(self, key_id: int) -> Reply:
        revoked = await self.store.revoke_api_key(key_id, self.clock.now())
        if revoked is None:
            raise NotFound(KEY_NOT_FOUND)
        self._cache = {h: entry for h, entry in self._cache.items() if entry[0].id != key_id}
        log.info("API key %s revoked (id %s)", revoked.prefix, key_id)
        return Reply("API key revoked", key_data(revoked))

    # -- authentication -------------------------------------------------------------------------

    async def any_keys(self) -> bool:
        """Whether a key was ever stored (then the server is never in open mode)."""
        now = self.clock.now()
        if self._any_keys is not None and (self._any_keys[0] or now - self._any_keys[1] < self.cache_ttl):
            return self._any_keys[0]
        found = await self.store.count_api_keys() > 0
        self._any_keys = (found, now)
        return found

    def cached(self, presented: str) -> Principal | None:
        """The principal of a key this server looked up recently (no database access)."""
        entry = self._cache.get(key_hash(presented))
        if entry is None or self.clock.now() - entry[1] >= self.cache_ttl:
            return None
        self._record_use(entry[0].id)
        return Principal.of(entry[0])

    async def authenticate(self, presented: str) -> Principal | None:
        """The active key ``presented`` names, or None."""
        found = self.cached(presented)
        if found is not None:
            return found
        digest = key_hash(presented)
        stored = await self.store.find_api_key(digest)
        if stored is None or not stored.is_active or not hashes_match(digest, stored.key_hash):
            return None
        if len(self._cache) >= KEY_CACHE_SIZE:
            self._cache.clear()
        self._cache[digest] = (stored, self.clock.now())
        self._record_use(stored.id)
        return Principal.of(stored)

    def _record_use(self, key_id: int) -> None:
        now = self.clock.now()
        self._used[key_id] = now
        due = self._flushed_at is None or now - self._flushed_at >= self.flush_interval
        if due and (self._flushing is None or self._flushing.done()):
            self._flushed_at = now
            self._flushing = asyncio.get_running_loop().create_task(self.flush())

    async def close(self) -> None:
        """At shutdown: let a write under way finish (before the store closes under it), then
        write what is left."""
        if self._flushing is not None:
            await self._flushing
        await self.flush()

    async def flush(self) -> None:
        """Write the collected ``last_used_at`` times in one batch."""
        used, self._used = self._used, {}
        if not used:
            return
        try:
            await self.store.touch_api_keys(used)
        except Exception:  # a lost update of last_used_at must never fail a request
            log.warning("could not record API key use", exc_info=True)
