"""What the contract suite feeds the store: task types and tasks with plain defaults, and raw
database access that does not go through the store under test."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import create_engine
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from taskmanager.engine import lifecycle
from taskmanager.engine.policy import compute_dedupe_key, dedupe_lock
from taskmanager.engine.queries import DEFAULT_ORDER
from taskmanager.engine.records import DedupeScope, HistoryEvent, NewEvent, Task, TaskType, TypePolicy
from taskmanager.engine.store import (
    ClaimParams,
    ClaimQuery,
    Expected,
    InsertOutcome,
    InsertTask,
    SaveType,
    Store,
    TaskChange,
)

R = TypeVar("R")

SCHEMA: dict[str, Any] = {"type": "object"}
SETTINGS: dict[str, Any] = {
    "max_attempts": 3,
    "claim_timeout": 300,
    "retry_delay": 2.0,
    "retry_max_delay": 3600.0,
    "dedupe": "all",
    "max_pending": None,
    "description": None,
    "max_running": None,
    "keep_completed_seconds": None,
    "keep_failed_seconds": None,
}
_serial = itertools.count(1)


def save_type(
    name: str, now: datetime, *, version: str = "1.0.0", schema: Any = None, **settings: Any
) -> SaveType:
    return SaveType(name, version, SCHEMA if schema is None else schema, {**SETTINGS, **settings}, now)


async def make_type(store: Store, name: str, now: datetime, **settings: Any) -> TaskType:
    saved, created = await store.save_type(save_type(name, now, **settings))
    assert created
    return saved


def new_task(
    task_type: TaskType,
    now: datetime,
    *,
    params: Any = None,
    dedupe_key: str | bool | None = True,
    scope: DedupeScope | None = None,
    event: bool = True,
    **fields: Any,
) -> InsertTask:
    """An insert for ``task_type``; params default to a fresh object (so no two dedupe),
    ``dedupe_key=True`` computes the key of A.6 from the params."""
    params = {"n": next(_serial)} if params is None else params
    key = compute_dedupe_key(task_type.name, params) if dedupe_key is True else dedupe_key
    assert key is None or isinstance(key, str)
    values: dict[str, Any] = {
        "priority": 0,
        "max_attempts": task_type.max_attempts,
        "max_pending": task_type.max_pending,
        "run_after": None,
        "expires_at": None,
        "assigned_to": None,
        **fields,
    }
    return InsertTask(
        type_id=task_type.id,
        params=params,
        params_json=compact(params),
        dedupe_key=key,
        dedupe_lock=dedupe_lock(task_type.dedupe if scope is None else scope, key),
        type_name=task_type.name,
        policy=TypePolicy(
            task_type.claim_timeout,
            task_type.retry_delay,
            task_type.retry_max_delay,
            task_type.dedupe,
            task_type.keep_completed_seconds,
            task_type.keep_failed_seconds,
        ),
        now=now,
        event=NewEvent(HistoryEvent.CREATED) if event else None,
        **values,
    )


def compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


async def add_task(store: Store, task_type: TaskType, now: datetime, **kwargs: Any) -> Task:
    (result,) = await store.insert_tasks([new_task(task_type, now, **kwargs)])
    assert result.outcome == InsertOutcome.CREATED
    assert result.task is not None
    return result.task


def claim_query(now: datetime, worker_id: str = "w1", limit: int = 1, **fields: Any) -> ClaimQuery:
    return ClaimQuery(
        now=now, worker_id=worker_id, limit=limit, order=fields.pop("order", DEFAULT_ORDER), **fields
    )


def claim_params(
    now: datetime, worker_id: str = "w1", *, lease_seconds: int | None = None, count: int = 10
) -> ClaimParams:
    return lifecycle.claim_params(now=now, worker_id=worker_id, lease_seconds=lease_seconds, count=count)


async def claim(
    store: Store, now: datetime, worker_id: str = "w1", limit: int = 1, **fields: Any
) -> list[Task]:
    """Claim as the engine does (``lease_seconds`` in ``fields`` goes to the params)."""
    lease_seconds = fields.pop("lease_seconds", None)
    params = claim_params(now, worker_id, lease_seconds=lease_seconds, count=limit)
    return await store.claim_tasks(claim_query(now, worker_id, limit, **fields), params)


def change(
    task_id: int, now: datetime, *, expected: dict[str, Any] | None = None, events: Any = (), **changes: Any
) -> TaskChange:
    """A compare-and-set of ``changes`` on a row holding ``expected`` (default: any row)."""
    return TaskChange(task_id, Expected(expected or {}), changes, tuple(events), now)


async def set_columns(store: Store, task_id: int, now: datetime, **changes: Any) -> Task:
    """Write ``changes`` to the task whatever its row holds (test setup)."""
    after = await store.update_task(change(task_id, now, **changes))
    assert after is not None
    return after


# -- raw access, on connections of their own ------------------------------------------------------

#: Async drivers for a raw connection to the server databases (SQLite is opened synchronously).
RAW_DRIVERS = {"postgresql": "postgresql+asyncpg", "mysql": "mysql+asyncmy", "mariadb": "mysql+asyncmy"}


def raw_url(url: str) -> URL:
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    return parsed if backend == "sqlite" else parsed.set(drivername=RAW_DRIVERS[backend])


def raw_async_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """An engine for PostgreSQL or MySQL that shares nothing with the store under test."""
    return create_async_engine(raw_url(url), **kwargs)


async def run_raw(url: str, fn: Callable[[Connection], R]) -> R:
    """``fn(connection)`` in one committed transaction on a connection of its own."""
    target = raw_url(url)
    if target.get_backend_name() == "sqlite":
        engine = create_engine(target)
        try:
            with engine.begin() as conn:
                return fn(conn)
        finally:
            engine.dispose()
    async_engine = create_async_engine(target)
    try:
        async with async_engine.begin() as conn:
            return await conn.run_sync(fn)
    finally:
        await async_engine.dispose()
