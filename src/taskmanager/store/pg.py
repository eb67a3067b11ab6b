"""PostgreSQL's hot path: create, claim and complete as prepared statements on asyncpg.

The rest of the store runs SQLAlchemy Core through its async bridge, which costs ~2 ms of CPU per
claim or complete here (statements rebuilt and their cache keys computed per request, the
greenlet bridge, four to seven round trips). The three operations every task goes through run
instead on asyncpg directly, with SQL written once per shape (so asyncpg prepares each once per
connection) and as few round trips as the rules allow:

* **create** — one statement: the INSERT (unless a task holds the dedupe key, checked first so a
  duplicate does not spend an id; ``ON CONFLICT DO NOTHING`` for one that commits meanwhile;
  guarded by the ``max_pending`` count), its history event and the NOTIFY that wakes claimers;
* **claim** — one statement when the engine decided it ahead (ADR 0008: pick with ``FOR UPDATE OF
  tasks SKIP LOCKED``, update, history, in CTEs); otherwise ``SELECT … FOR UPDATE OF tasks SKIP
  LOCKED``, the engine's ``decide`` on each row, then one statement writing every change and event
  (``unnest`` of arrays);
* **complete** — one ``UPDATE … WHERE <what the engine expects> RETURNING`` for a success decided
  ahead (ADR 0008); otherwise, and for batches, the rows locked by id in id order, ``decide``,
  one write.

The engine's rules are untouched: it decides every transition (ahead of the row or on it); only
the SQL differs.
Timestamps are stored as naive UTC, as the SQLAlchemy columns do: values are bound as naive UTC
and read back ``AT TIME ZONE 'UTC'``, which asyncpg returns as aware UTC datetimes. Row order
matches ``Selects`` so one converter (``rows.task_from_row``) serves both paths.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import datetime
from operator import attrgetter
from typing import Any, TypeVar

import asyncpg
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import URL

from taskmanager.engine.policy import Defaults
from taskmanager.engine.records import Task, TaskStatus, TaskType
from taskmanager.engine.store import (
    Ahead,
    ClaimAhead,
    ClaimQuery,
    Decide,
    InsertOutcome,
    InsertResult,
    InsertTask,
)
from taskmanager.errors import Unavailable
from taskmanager.store.database import CONNECT_TIMEOUT, DEADLOCK_RETRIES, STATEMENT_TIMEOUT
from taskmanager.store.operations import WORK_CHANNEL, created, dedupes
from taskmanager.store.pgpool import ConnectionPool
from taskmanager.store.rows import (
    Decided,
    decide_all,
    dump,
    encode_changes,
    event_row,
    task_from_row,
    type_from_row,
)
from taskmanager.store.tables import UTCDateTime, naive_utc, tasks

R = TypeVar("R")

#: A claim must walk the claim index in order and stop at its limit, however stale the table's
#: statistics: a queue table changes faster than autovacuum analyses it, and with estimates from
#: a nearly empty table the planner collects and sorts every pending row instead (17 ms a claim
#: at 5,000 pending, growing with the queue). The hot path's statements need no sort and no
#: bitmap scan, so on its connections both are discouraged.
PLANNER_SETTINGS = {"enable_sort": "off", "enable_bitmapscan": "off"}
#: Times a create whose dedupe key was released between its INSERT and its lookup is tried again.
CREATE_ATTEMPTS = 3

# The defaults of section C are the first three parameters of every statement reading tasks or
# types ($1 claim_timeout, $2 retry_delay, $3 retry_max_delay; types also $4 max_attempts).
_TASK_COLUMNS = ", ".join(
    [
        *(
            f"tasks.{c.name} AT TIME ZONE 'UTC'" if isinstance(c.type, UTCDateTime) else f"tasks.{c.name}"
            for c in tasks.columns
            if c.name != "dedupe_lock"
        ),
        "task_types.name",
        "COALESCE(task_types.claim_timeout, $1::integer)",
        "COALESCE(task_types.retry_delay, $2::float8)",
        "COALESCE(task_types.retry_max_delay, $3::float8)",
        "task_types.dedupe",
    ]
)
_TASKS_JOIN = "tasks JOIN task_types ON tasks.type_id = task_types.id"

_TYPE_BY_NAME = (
    "SELECT id, name, version, param_schema, is_active, description,"
    " COALESCE(max_attempts, $4::integer), COALESCE(claim_timeout, $1::integer),"
    " COALESCE(retry_delay, $2::float8), COALESCE(retry_max_delay, $3::float8),"
    " dedupe, max_pending, created_at AT TIME ZONE 'UTC', updated_at AT TIME ZONE 'UTC'"
    " FROM task_types WHERE name = $5"
)

_LOCK_BY_IDS = (
    f"SELECT {_TASK_COLUMNS} FROM {_TASKS_JOIN} WHERE tasks.id = ANY($4::bigint[])"
    " ORDER BY tasks.id FOR UPDATE OF tasks"
)

_BY_ID = f"SELECT {_TASK_COLUMNS} FROM {_TASKS_JOIN} WHERE tasks.id = $4"

_BY_DEDUPE_KEY = (
    f"SELECT {_TASK_COLUMNS} FROM {_TASKS_JOIN} WHERE tasks.type_id = $4 AND tasks.dedupe_lock = $5"
)

# $1.. the new row; $11 max_pending (NULL: no limit); $12.. the history event (NULL: none).
_CREATE = f"""
WITH created AS (
    INSERT INTO tasks (type_id, status, params, priority, progress, attempts, max_attempts,
                       run_after, expires_at, assigned_to, created_at, updated_at,
                       dedupe_key, dedupe_lock)
    SELECT $1::bigint, '{TaskStatus.PENDING.value}', $2::text, $3::integer, 0, 0, $4::integer,
           $5::timestamp, $6::timestamp, $7::varchar, $8::timestamp, $8::timestamp,
           $9::varchar, $10::varchar
    WHERE NOT EXISTS (SELECT 1 FROM tasks WHERE type_id = $1 AND dedupe_lock = $10::varchar)
      AND ($11::integer IS NULL
           OR (SELECT count(*) FROM tasks
               WHERE type_id = $1 AND status = '{TaskStatus.PENDING.value}') < $11::integer)
    ON CONFLICT DO NOTHING
    RETURNING id
), event AS (
    INSERT INTO task_history (task_id, event, worker_id, message, metadata, created_at)
    SELECT id, $12::varchar, $13::varchar, $14::text, $15::text, $8::timestamp
    FROM created WHERE $12::varchar IS NOT NULL
), wake AS (
    SELECT pg_notify('{WORK_CHANNEL}', '') FROM created
)
SELECT (SELECT id FROM created), (SELECT count(*) FROM wake)
"""

_HISTORY_COLUMNS = ("task_id", "event", "worker_id", "message", "metadata", "created_at")
_HISTORY_TYPES = ("bigint", "varchar", "varchar", "text", "text", "timestamp")


def _pg_type(name: str) -> str:
    column = tasks.columns[name]
    if isinstance(column.type, UTCDateTime):
        return "timestamp"
    return str(column.type.compile(dialect=postgresql.dialect())).lower()  # type: ignore[no-untyped-call]


#: The PostgreSQL type of each writable task column, for the arrays an UPDATE unnests.
_COLUMN_TYPES = {c.name: _pg_type(c.name) for c in tasks.columns}


def naive(value: Any) -> Any:
    """Datetimes as the naive UTC the columns hold (as ``UTCDateTime`` binds them); anything else
    as it is."""
    return naive_utc(value) if isinstance(value, datetime) else value


class _Params:
    """The parameters of a statement under construction, numbered as they are added."""

    def __init__(self) -> None:
        self.args: list[Any] = []

    def add(self, value: Any, pg_type: str) -> str:
        self.args.append(value)
        return f"${len(self.args)}::{pg_type}"


class _Placeholders:
    """Numbered placeholders for a statement's text, when its parameters are gathered apart."""

    def __init__(self, before: int) -> None:
        self.count = before

    def next(self, pg_type: str | None) -> str:
        """The next placeholder, cast to ``pg_type`` (None: no cast)."""
        self.count += 1
        return f"${self.count}" if pg_type is None else f"${self.count}::{pg_type}"


def _bind(params: _Params, values: list[Any], pg_type: str, *, array: bool = False) -> tuple[str, bool]:
    """One column of many rows: a scalar parameter when every row has the same value (most of a
    batch's changes: the status, the holder, the timestamps), else (or with ``array``) an array
    to unnest. Returns the placeholder and whether it is an array."""
    timestamps = pg_type == "timestamp"
    first = values[0]
    # Each column holds one type (JSON is text here), so equality is enough.
    if not array and values.count(first) == len(values):
        return params.add(naive_utc(first) if timestamps and first is not None else first, pg_type), False
    if timestamps:
        values = [None if v is None else naive_utc(v) for v in values]
    return params.add(values, pg_type + "[]"), True


def _write_sql(decided: Decided) -> tuple[str, list[Any]]:
    """One statement applying every UPDATE (one per shape of change), the history events and the
    NOTIFY: a data-modifying WITH clause runs whether or not it is read. A value every row of a
    group shares is bound once, so only what differs (lease tokens, attempts, ids) is unnested."""
    params = _Params()
    parts: list[str] = []
    for n, (columns, rows) in enumerate(decided.updates.items()):
        ids = params.add([row["_id"] for row in rows], "bigint[]")
        sets, arrays, names = [], [], []
        for c in columns:
            placeholder, varies = _bind(params, [row[c] for row in rows], _COLUMN_TYPES[c])
            if varies:
                arrays.append(placeholder)
                names.append(f'"{c}"')
                sets.append(f'"{c}" = u."{c}"')
            else:
                sets.append(f'"{c}" = {placeholder}')
        if arrays:
            source = f"unnest({ids}, {', '.join(arrays)}) AS u(id, {', '.join(names)})"
            parts.append(f"u{n} AS (UPDATE tasks SET {', '.join(sets)} FROM {source} WHERE tasks.id = u.id)")
        else:
            parts.append(f"u{n} AS (UPDATE tasks SET {', '.join(sets)} WHERE tasks.id = ANY({ids}))")
    if decided.events:
        selected, arrays, names = [], [], []
        for c, t in zip(_HISTORY_COLUMNS, _HISTORY_TYPES, strict=True):
            # The task ids are always unnested: they give the SELECT one row per event.
            values = [event[c] for event in decided.events]
            placeholder, varies = _bind(params, values, t, array=c == "task_id")
            if varies:
                arrays.append(placeholder)
                names.append(c)
                selected.append(f"e.{c}")
            else:
                selected.append(placeholder)
        parts.append(
            f"history AS (INSERT INTO task_history ({', '.join(_HISTORY_COLUMNS)})"
            f" SELECT {', '.join(selected)} FROM unnest({', '.join(arrays)}) AS e({', '.join(names)}))"
        )
    wake = f"pg_notify('{WORK_CHANNEL}', '')" if decided.wakes else "1"
    return f"WITH {', '.join(parts)} SELECT {wake}", params.args


def _ahead_sql(ahead: Ahead, first: list[Any], now: datetime) -> tuple[str, list[Any]]:
    """The UPDATE … WHERE <expected> RETURNING of ``transition_ahead`` with its history rows
    (``first``: the settings, $1-$3, and the task id, $4). The text depends only on the shape of
    the transition (which columns, which are NULL, how many events), so it is built once per shape
    (`_ahead_text`) and only the parameters are gathered per call, in the text's order."""
    expected = ahead.expected
    compared = encode_changes(expected.columns)
    changes = encode_changes(ahead.transition.changes)
    events = ahead.transition.events
    args = list(first)
    args += [naive(value) for value in compared.values() if value is not None]
    if expected.lease_alive_at is not None:
        args.append(naive_utc(expected.lease_alive_at))
    if expected.dedupe_scopes:
        args.append([scope.value for scope in expected.dedupe_scopes])
    args += [naive(value) for value in changes.values()]
    for event in events:
        values = event_row(0, event, now)
        args += [naive(values[c]) for c in _HISTORY_COLUMNS[1:]]
    shape = (
        len(first),
        tuple((column, value is None) for column, value in compared.items()),
        expected.lease_alive_at is not None,
        bool(expected.dedupe_scopes),
        tuple(changes),
        len(events),
    )
    return _ahead_text(shape), args


#: Shape of a transition decided ahead: (parameters before, (compared column, is NULL)…, lease
#: compared, dedupe scopes compared, changed columns, events).
_AheadShape = tuple[int, tuple[tuple[str, bool], ...], bool, bool, tuple[str, ...], int]


@functools.lru_cache(maxsize=256)
def _ahead_text(shape: _AheadShape) -> str:
    """The SQL of `_ahead_sql` for one shape; placeholders numbered in its parameters' order."""
    first, compared, lease_alive, scoped, changed, events = shape
    params = _Placeholders(first)
    where = ["tasks.id = $4", "task_types.id = tasks.type_id"]
    for column, is_null in compared:
        if is_null:
            where.append(f'tasks."{column}" IS NULL')
        else:
            where.append(f'tasks."{column}" = {params.next(_COLUMN_TYPES[column])}')
    if lease_alive:
        alive = params.next("timestamp")
        where.append(f"(tasks.lease_expires_at IS NULL OR tasks.lease_expires_at > {alive})")
    if scoped:
        where.append(f"task_types.dedupe = ANY({params.next('varchar[]')})")
    sets = ", ".join(f'"{column}" = {params.next(_COLUMN_TYPES[column])}' for column in changed)
    sql = (
        f"WITH changed AS (UPDATE tasks SET {sets} FROM task_types WHERE {' AND '.join(where)}"
        f" RETURNING {_TASK_COLUMNS})"
    )
    if events:
        rows = [
            "($4::bigint, " + ", ".join(params.next(t) for t in _HISTORY_TYPES[1:]) + ")"
            for _ in range(events)
        ]
        sql += (
            f", history AS (INSERT INTO task_history ({', '.join(_HISTORY_COLUMNS)})"
            f" SELECT * FROM (VALUES {', '.join(rows)}) AS event WHERE EXISTS (SELECT 1 FROM changed))"
        )
    return sql + " SELECT * FROM changed"


#: Shape of a claim's conditions: (type LIKE, type names, type ids, order).
_ClaimShape = tuple[bool, bool, bool, tuple[tuple[str, bool], ...]]


def _claim_args(query: ClaimQuery) -> tuple[_ClaimShape, list[Any]]:
    """The parameters of a claim's conditions from $4 ($4 now, $5 worker id, $6 limit, then the
    filters given; $1-$3 are the settings every task read starts with), and their shape."""
    args: list[Any] = [naive(query.now), query.worker_id, query.limit]
    if query.type_like is not None:
        args.append(query.type_like)
    if query.type_names is not None:
        args.append(list(query.type_names))
    if query.type_ids is not None:
        args.append(list(query.type_ids))
    shape = (
        query.type_like is not None,
        query.type_names is not None,
        query.type_ids is not None,
        query.order,
    )
    return shape, args


@functools.lru_cache(maxsize=256)
def _claim_where_text(shape: _ClaimShape) -> tuple[str, str]:
    """The conditions and order of a claim of this shape (placeholders as `_claim_args`)."""
    like, names, ids, order_by = shape
    params = _Placeholders(6)
    active = "SELECT id FROM task_types WHERE is_active"
    if like:
        active += f" AND name LIKE {params.next(None)}"
    if names:
        active += f" AND name = ANY({params.next('varchar[]')})"
    conditions = [
        f"tasks.status = '{TaskStatus.PENDING.value}'",
        "(tasks.run_after IS NULL OR tasks.run_after <= $4)",
        "(tasks.expires_at IS NULL OR tasks.expires_at > $4)",
        "(tasks.assigned_to IS NULL OR tasks.assigned_to = $5)",
        f"tasks.type_id IN ({active})",
    ]
    if ids:
        conditions.append(f"tasks.type_id = ANY({params.next('bigint[]')})")
    order = ", ".join(
        f"tasks.{tasks.columns[name].name} {'DESC' if descending else 'ASC'}" for name, descending in order_by
    )
    return " AND ".join(conditions), order


def _claim_where(query: ClaimQuery) -> tuple[str, str, list[Any]]:
    """The conditions and order of a claim, and their parameters (`_claim_args`)."""
    shape, args = _claim_args(query)
    where, order = _claim_where_text(shape)
    return where, order, args


def _claim_sql(query: ClaimQuery) -> tuple[str, list[Any]]:
    """The SELECT that picks and locks claimable rows, for the engine to decide on."""
    where, order, args = _claim_where(query)
    sql = (
        f"SELECT {_TASK_COLUMNS} FROM {_TASKS_JOIN} WHERE {where}"
        f" ORDER BY {order} LIMIT $6 FOR UPDATE OF tasks SKIP LOCKED"
    )
    return sql, args


#: Columns a claim decided ahead returns after the task's: the history CTE reads them by name.
_CLAIMED_EXTRA = ("claimed_id", "claimed_attempt")


def _claim_ahead_sql(query: ClaimQuery, ahead: ClaimAhead, first: list[Any]) -> tuple[str, list[Any]]:
    """One statement picking, locking and claiming the rows (``lifecycle.claimed`` as SQL: the
    claim's changes, attempts + 1, the lease from the claim or the type, the n-th token, the
    ``claimed`` event with the attempt), returning them (``first``: the settings, $1-$3). Its text
    is built once per shape (`_claim_ahead_text`), as `_ahead_sql`'s."""
    claim_shape, claim_args = _claim_args(query)
    changes = encode_changes(ahead.changes)
    event = ahead.event
    args = [*first, *claim_args, *(naive(value) for value in changes.values())]
    args += [ahead.lease_seconds, list(ahead.tokens)]
    if event is not None:
        args += [event.event.value, event.worker_id, event.message]
    shape = (len(first) + len(claim_args), claim_shape, tuple(changes), event is not None)
    return _claim_ahead_text(shape), args


@functools.lru_cache(maxsize=256)
def _claim_ahead_text(shape: tuple[int, _ClaimShape, tuple[str, ...], bool]) -> str:
    """The SQL of `_claim_ahead_sql` for one shape (parameters before, claim, changed columns,
    whether a history event is written); placeholders numbered in its parameters' order."""
    before, claim_shape, changed, evented = shape
    where, order = _claim_where_text(claim_shape)
    params = _Placeholders(before)
    sets = [f'"{column}" = {params.next(_COLUMN_TYPES[column])}' for column in changed]
    lease = params.next("integer")
    tokens = params.next("varchar[]")
    sets += [
        '"attempts" = tasks.attempts + 1',
        f'"lease_expires_at" = $4::timestamp'
        f" + make_interval(secs => COALESCE({lease}, task_types.claim_timeout, $1::integer))",
        f'"lease_token" = ({tokens})[numbered.n]',
    ]
    sql = (
        f"WITH picked AS (SELECT tasks.id FROM tasks WHERE {where}"
        f" ORDER BY {order} LIMIT $6 FOR UPDATE OF tasks SKIP LOCKED),"
        " numbered AS (SELECT id, row_number() OVER () AS n FROM picked),"
        f" changed AS (UPDATE tasks SET {', '.join(sets)} FROM numbered, task_types"
        " WHERE tasks.id = numbered.id AND task_types.id = tasks.type_id"
        f" RETURNING {_TASK_COLUMNS}, tasks.id AS claimed_id, tasks.attempts AS claimed_attempt)"
    )
    if evented:
        values = [params.next("varchar"), params.next("varchar"), params.next("text")]
        sql += (
            f", history AS (INSERT INTO task_history ({', '.join(_HISTORY_COLUMNS)})"
            f" SELECT claimed_id, {', '.join(values)}, '{{\"attempt\":' || claimed_attempt || '}}',"
            " $4::timestamp FROM changed)"
        )
    return sql + " SELECT * FROM changed"


def _in_order(claimed: list[Task], order: tuple[tuple[str, bool], ...]) -> list[Task]:
    """Claimed tasks in the claim's order (an UPDATE returns its rows in no particular order)."""
    for name, descending in reversed(order):  # a stable sort per key, the least significant first
        claimed.sort(key=attrgetter(name), reverse=descending)
    return claimed


#: Errors meaning the database or the connection to it is gone (a 503, never a 500).
_CONNECTION_ERRORS = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    asyncpg.PostgresConnectionError,
    asyncpg.OperatorInterventionError,
    asyncpg.InsufficientResourcesError,
)


class PgHotPath:
    """Create, claim and complete on PostgreSQL through a connection pool of their own."""

    def __init__(self, url: URL, defaults: Defaults, pool_size: int) -> None:
        self._dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._settings = (defaults.claim_timeout, defaults.retry_delay, defaults.retry_max_delay)
        self._max_attempts = defaults.max_attempts
        self._pool = ConnectionPool(self._connect, pool_size, timeout=CONNECT_TIMEOUT)

    async def _connect(self) -> asyncpg.Connection:
        return await asyncpg.connect(
            self._dsn,
            timeout=CONNECT_TIMEOUT,
            command_timeout=STATEMENT_TIMEOUT,
            server_settings=PLANNER_SETTINGS,
        )

    async def close(self) -> None:
        await self._pool.close()

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection; a database that cannot be reached is 503 ``unavailable``.

        An error the database reported for a statement leaves the connection usable (a
        transaction it was in has been rolled back by then), so it goes back to the pool; after
        anything else — the connection dropped, the operation cancelled, an error of ours —
        its state is unknown, and it is closed (the pool opens a fresh one when needed)."""
        pool = self._pool
        try:
            conn = await pool.acquire()
        except _CONNECTION_ERRORS as exc:
            raise Unavailable("Database unavailable") from exc
        try:
            yield conn
        except _CONNECTION_ERRORS as exc:
            pool.release(conn, discard=True)
            raise Unavailable("Database unavailable") from exc
        except asyncpg.PostgresError:
            pool.release(conn)
            raise
        except BaseException:
            pool.release(conn, discard=True)
            raise
        pool.release(conn)

    async def _transaction(self, fn: Callable[[asyncpg.Connection], Awaitable[R]]) -> R:
        """``fn`` in one transaction; run again if PostgreSQL chose it as a deadlock victim."""
        for attempt in range(DEADLOCK_RETRIES + 1):
            try:
                async with self._connection() as conn, conn.transaction():
                    return await fn(conn)
            except asyncpg.DeadlockDetectedError:
                if attempt == DEADLOCK_RETRIES:
                    raise
        raise AssertionError("unreachable")

    # -- reads and creates: one statement each ----------------------------------------------

    async def _read(self, sql: str, *args: Any) -> asyncpg.Record | None:
        """One row of a read. A read is safe to repeat, so one that met a connection the database
        had dropped while it sat in the pool (a restart, a killed backend) is tried once more."""
        for attempt in range(2):
            try:
                async with self._connection() as conn:
                    return await conn.fetchrow(sql, *args)
            except Unavailable:
                if attempt:
                    raise
        raise AssertionError("unreachable")

    async def ping(self) -> None:
        await self._read("SELECT 1")

    async def get_type(self, name: str) -> TaskType | None:
        row = await self._read(_TYPE_BY_NAME, *self._settings, self._max_attempts, name)
        return None if row is None else type_from_row(row)

    async def get_task(self, task_id: int) -> Task | None:
        row = await self._read(_BY_ID, *self._settings, task_id)
        return None if row is None else task_from_row(row)

    async def insert_one(self, item: InsertTask) -> InsertResult:
        event = item.event
        lock = item.dedupe_key if dedupes(item) else None
        args = (
            item.type_id,
            item.params_json,
            item.priority,
            item.max_attempts,
            naive(item.run_after),
            naive(item.expires_at),
            item.assigned_to,
            naive(item.now),
            item.dedupe_key,
            lock,
            item.max_pending,
            None if event is None else event.event.value,
            None if event is None else event.worker_id,
            None if event is None else event.message,
            None if event is None else dump(event.metadata),
        )
        async with self._connection() as conn:
            for _ in range(CREATE_ATTEMPTS):
                task_id, _woken = await conn.fetchrow(_CREATE, *args)
                if task_id is not None:
                    return created(item, task_id)
                if lock is not None:
                    row = await conn.fetchrow(_BY_DEDUPE_KEY, *self._settings, item.type_id, lock)
                    if row is not None:
                        return InsertResult(InsertOutcome.DUPLICATE, task_from_row(row))
                if item.max_pending is not None:
                    return InsertResult(InsertOutcome.QUEUE_FULL, None)
                # The key's holder let it go between the INSERT and the lookup: try again.
        raise RuntimeError("could not create the task: its dedupe key kept changing hands")

    # -- claim and complete: lock, decide, write in one statement -------------------------------

    def claim_statement(self, query: ClaimQuery) -> tuple[str, list[Any]]:
        """The SELECT a claim sends and its parameters (tests EXPLAIN it)."""
        sql, args = _claim_sql(query)
        return sql, [*self._settings, *args]

    async def explain(self, sql: str, args: Sequence[Any]) -> list[str]:
        async with self._connection() as conn:
            return [row[0] for row in await conn.fetch("EXPLAIN " + sql, *args)]

    def claim_ahead_statement(self, query: ClaimQuery, ahead: ClaimAhead) -> tuple[str, list[Any]]:
        """The statement a claim decided ahead sends, and its parameters (tests EXPLAIN it)."""
        return _claim_ahead_sql(query, ahead, [*self._settings])

    async def claim(self, query: ClaimQuery, decide: Decide, ahead: ClaimAhead | None = None) -> list[Task]:
        if ahead is not None:
            sql, args = self.claim_ahead_statement(query, ahead)
            async with self._connection() as conn:
                rows = await conn.fetch(sql, *args)
            width = len(rows[0]) - len(_CLAIMED_EXTRA) if rows else 0
            return _in_order([task_from_row(row[:width]) for row in rows], query.order)
        sql, args = self.claim_statement(query)

        async def claim(conn: asyncpg.Connection) -> list[Task]:
            rows = await conn.fetch(sql, *args)
            return await self._apply(conn, [task_from_row(r) for r in rows], decide, query.now)

        return await self._transaction(claim)

    async def transition(self, task_ids: Sequence[int], decide: Decide, now: datetime) -> list[Task]:
        ids = sorted(set(task_ids))

        async def transition(conn: asyncpg.Connection) -> list[Task]:
            rows = await conn.fetch(_LOCK_BY_IDS, *self._settings, ids)
            return await self._apply(conn, [task_from_row(r) for r in rows], decide, now)

        return await self._transaction(transition)

    async def transition_ahead(self, task_id: int, ahead: Ahead, now: datetime) -> Task | None:
        """Apply a transition decided ahead of its row in one statement (ADR 0008): the UPDATE's
        WHERE compares the row with ``ahead.expected`` — under the row lock, so it is the same
        compare-and-set as deciding on the locked row — and the history rows are written only if
        it matched. The task after, or None when it did not match (nothing written): the caller
        then locks and decides. A transition back to pending (which must wake claimers) is left
        to that path."""
        transition = ahead.transition
        if transition.changes.get("status") == TaskStatus.PENDING:
            return None
        sql, args = _ahead_sql(ahead, [*self._settings, task_id], now)
        async with self._connection() as conn:
            row = await conn.fetchrow(sql, *args)
        return None if row is None else task_from_row(row)

    @staticmethod
    async def _apply(
        conn: asyncpg.Connection, locked: list[Task], decide: Decide, now: datetime
    ) -> list[Task]:
        """Run ``decide`` on each locked task and write every change back in one statement."""
        decided = decide_all(locked, decide, now)
        if decided.updates or decided.events:
            sql, args = _write_sql(decided)
            await conn.execute(sql, *args)
        return decided.tasks
