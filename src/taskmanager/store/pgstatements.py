"""PostgreSQL's statements for raw asyncpg: built with SQLAlchemy Core, compiled once per shape.

``PostgresStore`` runs create, claim, compare-and-set, get-task and get-type on asyncpg directly
(ADR 0012). Each statement is a SQLAlchemy Core construct whose *shape* (which filters, which
columns change, how many events) decides its text; it is compiled once per shape with the asyncpg
dialect to ``$n`` placeholders and cached, and each call only gathers its values in the compiled
order. So asyncpg prepares each shape once per connection, and no SQL text is numbered by hand.

Values bypass SQLAlchemy's type processing: timestamps are bound as the naive UTC the columns
hold (``naive``) and read back through ``timezone('UTC', …)``, which asyncpg returns as aware UTC.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Integer,
    String,
    Text,
    any_,
    bindparam,
    case,
    cast,
    delete,
    exists,
    func,
    insert,
    literal_column,
    not_,
    or_,
    select,
    true,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import asyncpg as asyncpg_dialect
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.sql.elements import BindParameter
from sqlalchemy.sql.expression import Grouping

from taskmanager.engine.policy import Defaults
from taskmanager.engine.records import TaskStatus
from taskmanager.engine.store import ClaimParams, ClaimQuery, InsertTask, PurgeQuery, TaskChange
from taskmanager.store.compiled import Compiled
from taskmanager.store.operations import ENDS_CHANNEL, WORK_CHANNEL, task_values
from taskmanager.store.rows import TASKS_JOIN, TT, H, T, dump, encode_changes, task_columns, type_columns
from taskmanager.store.tables import (
    UTCDateTime,
    callback_deliveries,
    naive_utc,
    task_dependencies,
    task_history,
    tasks,
)
from taskmanager.store.verbs import ClaimValues, claim_conditions, claim_order, limited_types

D = task_dependencies.c
_DIALECT = asyncpg_dialect.dialect()  # type: ignore[no-untyped-call]
#: Task columns holding timestamps (bound as naive UTC).
_TIMESTAMPS = frozenset(c.name for c in tasks.columns if isinstance(c.type, UTCDateTime))
#: History columns a statement writes, in order (``id`` is the database's).
HISTORY_COLUMNS = tuple(c.name for c in task_history.columns if c.name != "id")
#: Outbox columns a terminal change with a callback writes, in order (B.5).
DELIVERY_COLUMNS = ("task_id", "url", "tries", "next_try_at", "created_at")
#: What each of a change's events carries (its task and instant are the change's).
_EVENT_VALUES = ("event", "worker_id", "message", "metadata")


def naive(value: Any) -> Any:
    """Datetimes as the naive UTC the columns hold; anything else as it is."""
    return naive_utc(value) if isinstance(value, datetime) else value


def _utc(column: Any) -> Any:
    return func.timezone(literal_column("'UTC'"), column)


def _bind(name: str, column: Any) -> BindParameter[Any]:
    """A parameter of ``column``'s type (so asyncpg is told it: ``$n::TYPE``)."""
    return bindparam(name, type_=column.type)


def _compile(statement: Any) -> Compiled:
    return Compiled.of(statement, _DIALECT)


@dataclass(frozen=True)
class Statement:
    """A compiled statement and its parameters for one call."""

    compiled: Compiled
    args: list[Any]

    @property
    def sql(self) -> str:
        return self.compiled.sql


class _Binds(ClaimValues):
    """A claim's values as parameters (arrays for the lists), for a statement compiled once."""

    TYPES: Mapping[str, Any] = {
        "now": UTCDateTime(),
        "worker_id": T.claimed_by.type,
        "type_like": TT.name.type,
        "type_names": ARRAY(Text),
        "type_scope": ARRAY(Text),
        "type_ids": ARRAY(BigInteger),
    }

    def value(self, name: str, value: Any) -> Any:
        return bindparam(name, type_=self.TYPES[name])

    def member(self, column: ColumnElement[Any], name: str, values: tuple[Any, ...]) -> ColumnElement[bool]:
        return column == any_(bindparam(name, type_=self.TYPES[name]))

    def like_any(
        self, column: ColumnElement[str], name: str, patterns: tuple[str, ...]
    ) -> ColumnElement[bool]:
        # LIKE ANY takes no ESCAPE clause; PostgreSQL's default escape is the patterns' backslash.
        return column.like(any_(bindparam(name, type_=self.TYPES[name])))


class PgStatements:
    """The statements of one store (its defaults are part of every task read), by shape."""

    def __init__(self, defaults: Defaults) -> None:
        self.defaults = defaults
        self._cache: dict[Hashable, Compiled] = {}
        read = task_columns(defaults, _utc)
        self._task_by_id = _compile(select(*read).select_from(TASKS_JOIN).where(T.id == _bind("id", T.id)))
        self._task_by_lock = _compile(
            select(*read)
            .select_from(TASKS_JOIN)
            .where(
                T.type_id == _bind("type_id", T.type_id), T.dedupe_lock == _bind("dedupe_lock", T.dedupe_lock)
            )
        )
        self._type_by_name = _compile(
            select(*type_columns(defaults, _utc)).where(TT.name == _bind("name", TT.name))
        )
        by_ids = (
            select(*read)
            .select_from(TASKS_JOIN)
            .where(T.id == any_(bindparam("ids", type_=ARRAY(BigInteger))))
            .order_by(T.id)
        )
        self._tasks_by_ids = _compile(by_ids)
        self._tasks_locked = _compile(by_ids.with_for_update(of=tasks))
        self._history_rows = _compile(
            insert(task_history).from_select(
                HISTORY_COLUMNS,
                select(*(func.unnest(_array(f"h_{name}", H[name])) for name in HISTORY_COLUMNS)),
            )
        )
        self._delivery_rows = _compile(
            insert(callback_deliveries).from_select(
                DELIVERY_COLUMNS,
                select(
                    *(
                        func.unnest(_array(f"d_{name}", callback_deliveries.c[name]))
                        for name in DELIVERY_COLUMNS
                    )
                ),
            )
        )
        self._purge = _compile(_purge_statement())
        self._notify = _compile(
            select(func.pg_notify(literal_column(f"'{WORK_CHANNEL}'"), literal_column("''")))
        )
        self._notify_ended = _compile(
            select(func.pg_notify(literal_column(f"'{ENDS_CHANNEL}'"), literal_column("''")))
        )
        self._await_end = _compile(
            update(tasks).where(T.id == _bind("id", T.id), T.awaited.is_(False)).values(awaited=True)
        )

    def _shaped(self, shape: Hashable, build: Callable[[], Any]) -> Compiled:
        found = self._cache.get(shape)
        if found is None:
            found = self._cache[shape] = _compile(build())
        return found

    # -- reads ----------------------------------------------------------------------------------

    def task_by_id(self, task_id: int) -> Statement:
        return Statement(self._task_by_id, self._task_by_id.args({"id": task_id}))

    def task_by_dedupe_lock(self, type_id: int, lock: str) -> Statement:
        return Statement(
            self._task_by_lock, self._task_by_lock.args({"type_id": type_id, "dedupe_lock": lock})
        )

    def type_by_name(self, name: str) -> Statement:
        return Statement(self._type_by_name, self._type_by_name.args({"name": name}))

    def tasks_by_ids(self, ids: Sequence[int], *, lock: bool = False) -> Statement:
        """The tasks of ``ids`` in id order; with ``lock``, their rows locked (``FOR UPDATE``)."""
        compiled = self._tasks_locked if lock else self._tasks_by_ids
        return Statement(compiled, compiled.args({"ids": list(ids)}))

    # -- a batch of compare-and-sets, judged on its locked rows (verbs.plan_updates) ------------

    def update_rows(self, columns: tuple[str, ...], rows: Sequence[Mapping[str, Any]]) -> Statement:
        """One UPDATE of many rows that change the same ``columns``. A value every row shares (a
        batch's status, timestamps, holder) is bound once; only what differs is unnested."""
        values: dict[str, Any] = {"a_id": [row["_id"] for row in rows]}
        varying = []
        for name in columns:
            column = [row[name] for row in rows]
            first = column[0]
            timestamps = name in _TIMESTAMPS
            if column.count(first) == len(column):  # each column holds one type: == is enough
                values[f"s_{name}"] = naive(first) if timestamps else first
            else:
                values[f"a_{name}"] = [naive(v) for v in column] if timestamps else column
                varying.append(name)
        shape = ("update rows", columns, tuple(varying))
        compiled = self._shaped(shape, lambda: _update_rows_statement(columns, tuple(varying)))
        return Statement(compiled, compiled.args(values))

    def history_rows(self, events: Sequence[Mapping[str, Any]]) -> Statement:
        """One INSERT of many history rows, unnested."""
        values = {f"h_{name}": [event[name] for event in events] for name in HISTORY_COLUMNS}
        times = values["h_created_at"]  # a batch's events mostly share one instant: convert it once
        converted = {at: naive(at) for at in set(times)}
        values["h_created_at"] = [converted[at] for at in times]
        return Statement(self._history_rows, self._history_rows.args(values))

    def delivery_rows(self, rows: Sequence[Mapping[str, Any]]) -> Statement:
        """One INSERT of many outbox rows (B.5), unnested."""
        values = {f"d_{name}": [naive(row[name]) for row in rows] for name in DELIVERY_COLUMNS}
        return Statement(self._delivery_rows, self._delivery_rows.args(values))

    def purge(self, query: PurgeQuery) -> Statement:
        """One DELETE of up to ``query.limit`` tasks past their retention and their history: the
        rules unnested as (status, type, cutoff) rows, the due rows locked ``SKIP LOCKED``."""
        rules = [
            (status, naive_utc(cutoff), type_id)
            for statuses, cutoff, type_ids in query.retention.due
            for status in statuses
            for type_id in type_ids
        ]
        statuses, cutoffs, type_ids = (
            (list(column) for column in zip(*rules, strict=True)) if rules else ([], [], [])
        )
        values = {"r_status": statuses, "r_cutoff": cutoffs, "r_type_id": type_ids, "limit": query.limit}
        return Statement(self._purge, self._purge.args(values))

    def notify(self) -> Statement:
        """Wake long-polling claimers in every server process when the transaction commits."""
        return Statement(self._notify, [])

    def notify_ended(self) -> Statement:
        """Wake the requests waiting for tasks to end, in every server process, at commit."""
        return Statement(self._notify_ended, [])

    def await_end(self, task_id: int) -> Statement:
        """Mark a task awaited, so that the statement that ends it NOTIFYs the ends channel."""
        return Statement(self._await_end, self._await_end.args({"id": task_id}))

    # -- create ---------------------------------------------------------------------------------

    def create(self, item: InsertTask) -> Statement:
        """One INSERT of the task (unless a task holds its dedupe key, its type's queue is full,
        or its type is no longer at ``type_revision``), its history event and the NOTIFY that
        wakes claimers; it returns the new id (NULL: not inserted), how many claimers were
        notified and whether the type had moved on from ``type_revision``."""
        task_values_of = task_values(item)
        values = {name: naive(value) for name, value in task_values_of.items()}
        event = item.event
        values["max_pending"] = item.max_pending
        values["type_revision"] = item.type_revision
        values["event"] = None if event is None else event.event.value
        values["event_worker_id"] = None if event is None else event.worker_id
        values["event_message"] = None if event is None else event.message
        values["event_metadata"] = None if event is None else dump(event.metadata)
        columns = tuple(task_values_of)
        compiled = self._shaped(("create", columns), lambda: _create_statement(columns))
        return Statement(compiled, compiled.args(values))

    # -- claim ----------------------------------------------------------------------------------

    def claim(self, query: ClaimQuery, params: ClaimParams) -> Statement:
        """One statement picking the claimable rows (``FOR UPDATE OF tasks SKIP LOCKED``),
        claiming each as ``ClaimParams.applied`` says and recording its event, returning the
        claimed tasks (then, per row, its id and attempt)."""
        changes = encode_changes(params.changes)
        event = params.event
        shape = (
            "claim",
            query.type_like is not None,
            query.type_names is not None,
            query.type_scope is not None,
            query.type_ids is not None,
            query.order,
            tuple(changes),
            event is not None,
        )
        compiled = self._shaped(
            shape, lambda: self._claim_statement(query, tuple(changes), event is not None)
        )
        values: dict[str, Any] = {f"c_{name}": naive(value) for name, value in changes.items()}
        values.update(
            now=naive_utc(query.now),
            worker_id=query.worker_id,
            type_like=query.type_like,
            type_names=None if query.type_names is None else list(query.type_names),
            type_scope=None if query.type_scope is None else list(query.type_scope),
            type_ids=None if query.type_ids is None else list(query.type_ids),
            limit=query.limit,
            lease_seconds=params.lease_seconds,
            tokens=list(params.tokens),
            claimed_at_now=naive_utc(params.now),
        )
        if event is not None:
            values.update(e_event=event.event.value, e_worker_id=event.worker_id, e_message=event.message)
        return Statement(compiled, compiled.args(values))

    def _claim_statement(self, query: ClaimQuery, changed: tuple[str, ...], evented: bool) -> Any:
        # A claim that may take a type with a max_running claims nothing here and says so
        # (``limited``): the store runs it as a locked transaction instead (B.9).
        # The gate is evaluated once: the pick reads it from its CTE rather than asking again.
        gate = select(limited_types(query, _Binds()).exists().label("limited")).cte("gate")
        picked = (
            select(T.id)
            .where(*claim_conditions(query, _Binds()), ~select(gate.c.limited).scalar_subquery())
            .order_by(*claim_order(query))
            .limit(bindparam("limit", type_=Integer))
            .with_for_update(skip_locked=True, of=tasks)
            .cte("picked")
        )
        numbered = select(picked.c.id, func.row_number().over().label("n")).cte("numbered")
        now = bindparam("claimed_at_now", type_=UTCDateTime())
        seconds = func.coalesce(
            bindparam("lease_seconds", type_=Integer),
            TT.claim_timeout,
            bindparam("default_claim_timeout", self.defaults.claim_timeout, type_=Integer),
        )
        sets: dict[str, Any] = {name: _bind(f"c_{name}", T[name]) for name in changed}
        sets["attempts"] = T.attempts + 1
        sets["lease_expires_at"] = now.op("+")(literal_column("interval '1 second'").op("*")(seconds))
        sets["lease_token"] = Grouping(bindparam("tokens", type_=ARRAY(Text)))[numbered.c.n]
        changed_rows = (
            update(tasks)
            .where(T.id == numbered.c.id, TT.id == T.type_id)
            .values(sets)
            .returning(
                *task_columns(self.defaults, _utc),
                T.id.label("claimed_id"),
                T.attempts.label("claimed_attempt"),
            )
            .cte("changed")
        )
        claimed = select(*changed_rows.c)
        if evented:
            metadata = (
                literal_column("""'{"attempt":'""")
                .op("||")(cast(changed_rows.c.claimed_attempt, Text))
                .op("||")(literal_column("'}'"))
            )
            source = select(
                changed_rows.c.claimed_id,
                _bind("e_event", H.event),
                _bind("e_worker_id", H.worker_id),
                _bind("e_message", H.message),
                metadata,
                now,
            )
            history = insert(task_history).from_select(HISTORY_COLUMNS, source).cte("history")
            claimed = claimed.add_cte(history)
        return claimed.add_columns(gate.c.limited).select_from(gate.outerjoin(changed_rows, true()))

    # -- compare-and-set ------------------------------------------------------------------------

    def update(self, change: TaskChange) -> Statement:
        """One UPDATE … WHERE <expected> RETURNING the task, its history rows (written only if it
        matched) and, when the task becomes claimable again, the NOTIFY that wakes claimers."""
        expected = change.expected
        compared = encode_changes(expected.columns)
        changes = encode_changes(change.changes)
        shape = self.update_shape(change, compared)
        compiled = self._shaped(shape, lambda: self._update_statement(shape))
        values: dict[str, Any] = {"id": change.task_id, "event_at": naive_utc(change.now)}
        values.update((f"x_{name}", naive(value)) for name, value in compared.items() if value is not None)
        values.update((f"c_{name}", naive(value)) for name, value in changes.items())
        if expected.lease_alive_at is not None:
            values["alive_at"] = naive_utc(expected.lease_alive_at)
        if expected.dedupe_scopes:
            values["scopes"] = [scope.value for scope in expected.dedupe_scopes]
        for n, event in enumerate(change.events):
            values[f"e{n}_event"] = event.event.value
            values[f"e{n}_worker_id"] = event.worker_id
            values[f"e{n}_message"] = event.message
            values[f"e{n}_metadata"] = dump(event.metadata)
        return Statement(compiled, compiled.args(values))

    @staticmethod
    def update_shape(change: TaskChange, compared: Mapping[str, Any] | None = None) -> tuple[Any, ...]:
        """What decides the text of a change's statement: which columns it compares (and which
        with NULL), whether it checks the lease and the dedupe scopes, which columns it writes,
        how many events it records, whether it wakes claimers, whether it ends the task (then
        the statement NOTIFYs the ends channel, once, if a row it ended is awaited), whether that
        end is POSTed to the task's callback (then it inserts the outbox row, B.5).
        (``compared``: the expected columns encoded, when the caller has them already.)"""
        expected = change.expected
        if compared is None:
            compared = encode_changes(expected.columns)
        return (
            "update",
            tuple((name, value is None) for name, value in compared.items()),
            expected.lease_alive_at is not None,
            tuple(scope.value for scope in expected.dedupe_scopes),
            tuple(change.changes),
            len(change.events),
            change.wakes,
            change.ends,
            change.callback,
        )

    def update_many(self, changes: Sequence[TaskChange]) -> Statement:
        """``update`` for many tasks at once, as one statement: changes of one ``shape`` (see
        ``update_shape``) on distinct tasks, each row's values unnested beside its id. It returns
        the tasks that matched, as they are after the change; a task it does not return did not
        match (or is gone)."""
        first = changes[0]
        shape = self.update_shape(first)
        _, compared, lease_alive, _scopes, changed, events, _wakes, _ends, _callback = shape
        compiled = self._shaped(("update many", *shape), lambda: self._update_many_statement(shape))
        values: dict[str, Any] = {"a_id": [change.task_id for change in changes]}
        expected = [encode_changes(change.expected.columns) for change in changes]
        times = {change.now for change in changes}
        converted = {at: naive_utc(at) for at in times}  # a batch mostly shares one instant
        values["a_event_at"] = [converted[change.now] for change in changes]
        for name, is_null in compared:
            if not is_null:
                values[f"a_x_{name}"] = [naive(row[name]) for row in expected]
        encoded = [encode_changes(change.changes) for change in changes]
        for name in changed:
            column = [row[name] for row in encoded]
            values[f"a_c_{name}"] = [naive(v) for v in column] if name in _TIMESTAMPS else column
        if lease_alive:
            values["a_alive_at"] = [naive(change.expected.lease_alive_at) for change in changes]
        if first.expected.dedupe_scopes:
            values["scopes"] = [scope.value for scope in first.expected.dedupe_scopes]
        for n in range(events):
            happened = [change.events[n] for change in changes]
            values[f"a_e{n}_event"] = [event.event.value for event in happened]
            values[f"a_e{n}_worker_id"] = [event.worker_id for event in happened]
            values[f"a_e{n}_message"] = [event.message for event in happened]
            values[f"a_e{n}_metadata"] = [dump(event.metadata) for event in happened]
        return Statement(compiled, compiled.args(values))

    def _update_many_statement(self, shape: tuple[Any, ...]) -> Any:
        _, compared, lease_alive, scopes, changed, events, wakes, ends, callback = shape
        # The rows are found by their primary keys alone (``id = ANY(ids)``), and each row's
        # values are the arrays' elements at its id's position. Joined to the unnested batch
        # instead, the rows were found however the planner guessed best: on a table not yet
        # analysed, through the type's index (the type's every task read to update a hundred)
        # or a scan of the whole table nested inside the batch (lab notes, issue 15). No index
        # serves ``type_id + 0``, so the type cannot lead the join either.
        ids = _array("a_id", T.id)
        position = func.array_position(ids, T.id)

        def of_row(name: str, column: Any) -> Any:
            """The row's own value of the array parameter ``name``."""
            return Grouping(_array(name, column))[position]

        where: list[Any] = [T.id == any_(ids), TT.id == T.type_id + literal_column("0")]
        for name, is_null in compared:
            where.append(T[name].is_(None) if is_null else T[name] == of_row(f"a_x_{name}", T[name]))
        if lease_alive:
            alive_at = of_row("a_alive_at", T.lease_expires_at)
            where.append(or_(T.lease_expires_at.is_(None), T.lease_expires_at > alive_at))
        if scopes:
            where.append(TT.dedupe == any_(bindparam("scopes", type_=ARRAY(Text))))
        event_columns = [of_row("a_event_at", H.created_at).label("event_at")] + [
            of_row(f"a_e{n}_{name}", H[name]).label(f"e{n}_{name}")
            for n in range(events)
            for name in _EVENT_VALUES
        ]
        changed_rows = (
            update(tasks)
            .where(*where)
            .values({name: of_row(f"a_c_{name}", T[name]) for name in changed})
            .returning(*task_columns(self.defaults, _utc), *event_columns)
            .cte("changed")
        )
        sources = [
            select(
                changed_rows.c.id,
                *(changed_rows.c[f"e{n}_{name}"] for name in _EVENT_VALUES),
                changed_rows.c.event_at,
            )
            for n in range(events)
        ]
        event_at = changed_rows.c.event_at
        return _written(changed_rows, sources, wakes=wakes, ends=ends, callback=callback, at=event_at)

    def _update_statement(self, shape: tuple[Any, ...]) -> Any:
        _, compared, lease_alive, scoped, changed, events, wakes, ends, callback = shape
        where: list[Any] = [T.id == _bind("id", T.id), TT.id == T.type_id]
        for name, is_null in compared:
            where.append(T[name].is_(None) if is_null else T[name] == _bind(f"x_{name}", T[name]))
        if lease_alive:
            alive = bindparam("alive_at", type_=UTCDateTime())
            where.append(or_(T.lease_expires_at.is_(None), T.lease_expires_at > alive))
        if scoped:
            where.append(TT.dedupe == any_(bindparam("scopes", type_=ARRAY(Text))))
        changed_rows = (
            update(tasks)
            .where(*where)
            .values({name: _bind(f"c_{name}", T[name]) for name in changed})
            .returning(*task_columns(self.defaults, _utc))
            .cte("changed")
        )
        now = bindparam("event_at", type_=UTCDateTime())
        sources = [
            select(changed_rows.c.id, *(_bind(f"e{n}_{name}", H[name]) for name in _EVENT_VALUES), now)
            for n in range(events)
        ]
        return _written(changed_rows, sources, wakes=wakes, ends=ends, callback=callback, at=now)


def _written(
    changed_rows: Any, sources: Sequence[Any], *, wakes: bool, ends: bool, callback: bool, at: Any
) -> Any:
    """A compare-and-set around its UPDATE (``changed_rows``): it returns the changed tasks,
    records the history rows ``sources`` select (one per event a change records) and, when asked,
    wakes claimers (``wakes``), the requests waiting for an end (``ends``), and adds the changed
    tasks' deliveries to the callbacks' outbox, due ``at`` (``callback``; only shapes of changes
    that end a task with a ``callback_url`` carry it, so no other statement pays for it)."""
    result = select(*changed_rows.c)
    if sources:
        source = sources[0] if len(sources) == 1 else union_all(*sources)
        result = result.add_cte(insert(task_history).from_select(HISTORY_COLUMNS, source).cte("history"))
    if callback:
        result = result.add_cte(_deliveries_of(changed_rows, at))
    if wakes:
        wake = select(func.pg_notify(literal_column(f"'{WORK_CHANNEL}'"), literal_column("''"))).select_from(
            changed_rows
        )
        result = result.add_columns(select(func.count()).select_from(wake.subquery()).scalar_subquery())
    if ends:
        result = result.add_columns(_notify_awaited_ends(changed_rows))
    return result


def _deliveries_of(changed_rows: Any, at: Any) -> Any:
    """The outbox rows (B.5) of the changed tasks that have a ``callback_url``, due ``at``."""
    source = select(changed_rows.c.id, changed_rows.c.callback_url, literal_column("0"), at, at).where(
        changed_rows.c.callback_url.is_not(None)
    )
    return insert(callback_deliveries).from_select(DELIVERY_COLUMNS, source).cte("deliveries")


def _notify_awaited_ends(changed_rows: Any) -> Any:
    """A column that NOTIFYs the ends channel for each awaited row of ``changed_rows`` (a request
    waits for it, ``await_end``), NULL for the others. PostgreSQL delivers a channel's identical
    notifications of one transaction once, so a batch that ends many awaited tasks still sends
    one; when nobody waits, none is sent (a NOTIFY serialises commits). A CASE per row costs
    less than an aggregate over the changed rows."""
    notify = func.pg_notify(literal_column(f"'{ENDS_CHANNEL}'"), literal_column("''"))
    return case((changed_rows.c.awaited, notify)).label("ends_notified")


def _array(name: str, column: Any) -> BindParameter[Any]:
    """An array parameter of ``column``'s type (``$n::TYPE[]``), to unnest or index. Strings go
    as ``TEXT[]``: asyncpg knows that array type, while a ``VARCHAR[]`` costs each new connection
    a catalogue query (asyncpg's type introspection) before its first use."""
    return bindparam(name, type_=ARRAY(Text if isinstance(column.type, String) else column.type))


def _update_rows_statement(columns: tuple[str, ...], varying: tuple[str, ...]) -> Any:
    """The statement of ``PgStatements.update_rows``: the ``varying`` columns' values unnested
    beside the ids, the others one parameter each."""
    unnested = select(
        func.unnest(_array("a_id", T.id)).label("id"),
        *(func.unnest(_array(f"a_{name}", T[name])).label(name) for name in varying),
    ).subquery("u")
    sets = {name: unnested.c[name] if name in varying else _bind(f"s_{name}", T[name]) for name in columns}
    return update(tasks).where(T.id == unnested.c.id).values(sets)


def _purge_statement() -> Any:
    """The statement of ``PgStatements.purge``: for each rule, its due tasks walked on
    ``ix_tasks_status_created`` (a LATERAL subquery per rule, bounded by the cutoff and the limit:
    a plain join with the unnested rules is planned as a scan of the whole table), then locked
    ``SKIP LOCKED`` and deleted with their history."""
    rules = select(
        func.unnest(_array("r_status", T.status)).label("status"),
        func.unnest(_array("r_cutoff", T.completed_at)).label("cutoff"),
        func.unnest(_array("r_type_id", T.type_id)).label("type_id"),
    ).subquery("rules")
    limit = bindparam("limit", type_=Integer)
    due = (
        select(T.id)
        .where(
            T.status == rules.c.status,
            T.created_at <= rules.c.cutoff,
            T.completed_at <= rules.c.cutoff,
            T.type_id == rules.c.type_id,
            T.dependant_marks == literal_column("0"),  # its dependants settled first
        )
        .order_by(T.status, T.created_at)
        .limit(limit)
        .lateral("due")
    )
    doomed = (
        select(T.id)
        .where(T.id.in_(select(due.c.id).select_from(rules.join(due, true()))))
        .limit(limit)
        .with_for_update(of=tasks, skip_locked=True)
        .cte("doomed")
    )
    history = (
        delete(task_history).where(H.task_id.in_(select(doomed.c.id))).returning(H.task_id).cte("history")
    )
    # Their dependency edges, both ways (a dependant of theirs was settled before they ended
    # up here: a task with dependant marks is not purged), and their callback deliveries.
    edges = [
        delete(task_dependencies).where(column.in_(select(doomed.c.id))).returning(column).cte(name)
        for column, name in ((D.task_id, "edges_out"), (D.depends_on_id, "edges_in"))
    ]
    outbox = (
        delete(callback_deliveries)
        .where(callback_deliveries.c.task_id.in_(select(doomed.c.id)))
        .returning(callback_deliveries.c.id)
        .cte("outbox")
    )
    return delete(tasks).where(T.id.in_(select(doomed.c.id))).returning(T.id).add_cte(history, *edges, outbox)


def _create_statement(columns: tuple[str, ...]) -> Any:
    """The statement of ``PgStatements.create`` for the columns a create writes."""
    type_id = _bind("type_id", T.type_id)
    max_pending = bindparam("max_pending", type_=Integer)
    pending = (
        select(func.count())
        .select_from(tasks)
        .where(T.type_id == type_id, T.status == literal_column(f"'{TaskStatus.PENDING.value}'"))
        .scalar_subquery()
    )
    type_revision = bindparam("type_revision", type_=Integer)
    current = or_(type_revision.is_(None), exists().where(TT.id == type_id, TT.revision == type_revision))
    source = select(*(_bind(name, T[name]) for name in columns)).where(
        current,
        ~exists().where(T.type_id == type_id, T.dedupe_lock == _bind("dedupe_lock", T.dedupe_lock)),
        or_(max_pending.is_(None), pending < max_pending),
    )
    created = (
        pg_insert(tasks).from_select(columns, source).on_conflict_do_nothing().returning(T.id).cte("created")
    )
    event = bindparam("event", type_=H.event.type)
    history = (
        insert(task_history)
        .from_select(
            HISTORY_COLUMNS,
            select(
                created.c.id,
                event,
                _bind("event_worker_id", H.worker_id),
                _bind("event_message", H.message),
                _bind("event_metadata", H.metadata),
                _bind("created_at", T.created_at),
            ).where(event.is_not(None)),
        )
        .cte("history")
    )
    wake = select(func.pg_notify(literal_column(f"'{WORK_CHANNEL}'"), literal_column("''"))).select_from(
        created
    )
    return select(
        select(created.c.id).scalar_subquery(),
        select(func.count()).select_from(wake.subquery()).scalar_subquery(),
        not_(current),
    ).add_cte(history)
