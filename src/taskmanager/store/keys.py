"""The API-key half of the store: the SQL behind ``engine.keys.KeyStore``."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import func, insert, or_, select, update
from sqlalchemy.engine import Connection

from taskmanager.engine.keys import ApiKey, NewApiKey
from taskmanager.store.database import Database
from taskmanager.store.tables import api_keys

K = api_keys.c
R = TypeVar("R")


def key_from_row(row: Any) -> ApiKey:
    return ApiKey(
        id=row.id,
        name=row.name,
        prefix=row.prefix,
        key_hash=row.key_hash,
        scopes=tuple(json.loads(row.scopes)),
        rate_limit=row.rate_limit,
        is_active=bool(row.is_active),
        created_at=row.created_at,
        last_used_at=row.last_used_at,
        revoked_at=row.revoked_at,
        types=None if row.types is None else tuple(json.loads(row.types)),
    )


def _one(conn: Connection, key_id: int) -> ApiKey | None:
    row = conn.execute(select(api_keys).where(K.id == key_id)).first()
    return None if row is None else key_from_row(row)


def _insert(key: NewApiKey, conn: Connection) -> ApiKey:
    result = conn.execute(
        insert(api_keys).values(
            name=key.name,
            prefix=key.prefix,
            key_hash=key.key_hash,
            scopes=json.dumps(list(key.scopes)),
            rate_limit=key.rate_limit,
            types=None if key.types is None else json.dumps(list(key.types)),
            is_active=True,
            created_at=key.now,
        )
    )
    (key_id,) = result.inserted_primary_key or (None,)
    assert key_id is not None
    found = _one(conn, int(key_id))
    assert found is not None
    return found


def _revoke(key_id: int, now: datetime, conn: Connection) -> ApiKey | None:
    active = update(api_keys).where(K.id == key_id, K.is_active.is_(True))
    conn.execute(active.values(is_active=False, revoked_at=now))
    return _one(conn, key_id)


def _touch(used: Mapping[int, datetime], conn: Connection) -> None:
    # One statement per key, in id order so two servers flushing at once cannot deadlock.
    for key_id, when in sorted(used.items()):
        conn.execute(
            update(api_keys)
            .where(K.id == key_id, or_(K.last_used_at.is_(None), K.last_used_at < when))
            .values(last_used_at=when)
        )


class SqlKeyStore:
    """``engine.keys.KeyStore`` on a store's database, each method one transaction: a part of
    every store (``store.keys``)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def _keys_read(self, fn: Callable[[Connection], R]) -> R:
        return await self.db.run(fn, write=False)

    async def _keys_write(self, fn: Callable[[Connection], R]) -> R:
        return await self.db.run(fn, write=True)

    async def insert_api_key(self, key: NewApiKey) -> ApiKey:
        return await self._keys_write(lambda conn: _insert(key, conn))

    async def list_api_keys(self) -> list[ApiKey]:
        query = select(api_keys).order_by(K.id)
        return await self._keys_read(lambda conn: [key_from_row(r) for r in conn.execute(query)])

    async def find_api_key(self, key_hash: str) -> ApiKey | None:
        query = select(api_keys).where(K.key_hash == key_hash)

        def find(conn: Connection) -> ApiKey | None:
            row = conn.execute(query).first()
            return None if row is None else key_from_row(row)

        return await self._keys_read(find)

    async def revoke_api_key(self, key_id: int, now: datetime) -> ApiKey | None:
        return await self._keys_write(lambda conn: _revoke(key_id, now, conn))

    async def touch_api_keys(self, used: Mapping[int, datetime]) -> None:
        if used:
            await self._keys_write(lambda conn: _touch(used, conn))

    async def count_api_keys(self) -> int:
        query = select(func.count()).select_from(api_keys)
        return await self._keys_read(lambda conn: int(conn.execute(query).scalar_one()))


def stored_key_count(url: str) -> int:
    """Keys in the database at ``url`` without creating or migrating anything (0 when the
    database, or its keys table, does not exist yet). Synchronous: for the command line."""
    import asyncio
    from pathlib import Path

    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and not (parsed.database and Path(parsed.database).exists()):
        return 0
    return asyncio.run(_count_keys(url))


async def _count_keys(url: str) -> int:
    from taskmanager.store.database import connect

    database = connect(url, pool_size=1)
    query = select(func.count()).select_from(api_keys)
    try:
        return await database.run(lambda conn: int(conn.execute(query).scalar_one()), write=False)
    except Exception:  # no such table yet (an unmigrated database): no keys
        return 0
    finally:
        await database.dispose()
