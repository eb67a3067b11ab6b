"""The database schema as SQLAlchemy Core tables (the models the migrations must match)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING)

#: Integer primary keys: 64-bit everywhere, but SQLite's rowid alias must be exactly INTEGER.
Id = BigInteger().with_variant(Integer(), "sqlite")
#: Long text: MySQL's TEXT holds only 64 KiB, params and results may be larger.
LongText = Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")
#: Names, keys and worker ids compare byte for byte everywhere: MySQL's default collations are
#: case-insensitive, which would make "Foo" and "foo" one task type and one dedupe key.
Key = String(255).with_variant(mysql.VARCHAR(255, collation="utf8mb4_bin"), "mysql", "mariadb")
#: A callback URL (API.md B.5: at most 2048 characters).
CallbackUrl = String(2048)
Token = String(64).with_variant(mysql.VARCHAR(64, collation="utf8mb4_bin"), "mysql", "mariadb")


def naive_utc(value: datetime) -> datetime:
    """An aware datetime as the naive UTC every database stores (a naive one is refused)."""
    if value.tzinfo is UTC:  # the engine's own timestamps: no conversion needed
        return value.replace(tzinfo=None)
    if value.tzinfo is None:
        raise ValueError("naive datetime given to a UTC column")
    return value.astimezone(UTC).replace(tzinfo=None)


class UTCDateTime(TypeDecorator[datetime]):
    """Stored as naive UTC with microseconds on every database; read back as aware UTC."""

    impl = DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(DateTime(timezone=False))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else naive_utc(value)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


# A NULL setting means "not set by the type": the server's default applies, read live (section C).
task_types = Table(
    "task_types",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", Key, nullable=False),
    Column("version", String(50), nullable=False),
    Column("param_schema", LongText, nullable=False),
    Column("is_active", Boolean, nullable=False, default=True),
    Column("description", Text, nullable=True),
    Column("max_attempts", Integer, nullable=True),
    Column("claim_timeout", Integer, nullable=True),
    Column("retry_delay", Float, nullable=True),
    Column("retry_max_delay", Float, nullable=True),
    Column("dedupe", String(16), nullable=False),
    Column("max_pending", Integer, nullable=True),
    Column("max_running", Integer, nullable=True),
    Column("keep_completed_seconds", Integer, nullable=True),
    Column("keep_failed_seconds", Integer, nullable=True),
    # The URL its tasks' ends are POSTed to when a create names none (B.5); NULL: none.
    Column("callback_url", CallbackUrl, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    # Counts the type's changes (every save and every activation change adds one): a create that
    # validated its task against the type at one revision is inserted only while it is still at
    # that revision (a server's cached type never validates a task against an older schema).
    Column("revision", Integer, nullable=False, default=1, server_default=text("1")),
    UniqueConstraint("name"),
    # Ids are never reused on SQLite either (a deleted task's id must not name a new one).
    sqlite_autoincrement=True,
)

tasks = Table(
    "tasks",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("type_id", Id, ForeignKey("task_types.id"), nullable=False),
    Column("status", String(16), nullable=False),
    Column("params", LongText, nullable=False),
    Column("result", LongText, nullable=True),
    Column("error_message", Text, nullable=True),
    Column("priority", Integer, nullable=False, default=0),
    Column("progress", Integer, nullable=False, default=0),
    Column("attempts", Integer, nullable=False, default=0),
    Column("max_attempts", Integer, nullable=False),
    Column("claimed_by", Key, nullable=True),
    Column("claimed_at", UTCDateTime, nullable=True),
    Column("lease_expires_at", UTCDateTime, nullable=True),
    Column("lease_token", Token, nullable=True),
    Column("completed_at", UTCDateTime, nullable=True),
    Column("run_after", UTCDateTime, nullable=True),
    Column("expires_at", UTCDateTime, nullable=True),
    Column("assigned_to", Key, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("dedupe_key", Key, nullable=True),
    # The dedupe key while it still blocks a new task with the same key (NULL once released):
    # its unique index is what makes racing identical creates return the same task.
    Column("dedupe_lock", Key, nullable=True),
    # The schedule (by name) that created the task and its tick (API.md B.8); NULL otherwise.
    Column("schedule", Key, nullable=True),
    Column("scheduled_for", UTCDateTime, nullable=True),
    # Dependencies (API.md B.5): the ids the task waits for as a JSON list (NULL: none; the
    # edges themselves are rows of ``task_dependencies``), whether it still waits (a blocked
    # task is pending but never claimed), and on a dependency, how many times dependants were
    # attached since its dependants were last settled (0: nothing to do when it ends).
    Column("depends_on", Text, nullable=True),
    Column("blocked", Boolean, nullable=False, server_default=false()),
    Column("dependant_marks", Integer, nullable=False, server_default=text("0")),
    # Whether a request has waited for the task's end (GET /tasks/{id}/wait): on PostgreSQL only
    # an awaited task's end is announced to other processes (NOTIFY serialises commits).
    Column("awaited", Boolean, nullable=False, server_default=false()),
    # Where the task is POSTed once it ends (B.5: its own, else its type's at create); NULL: nowhere.
    Column("callback_url", CallbackUrl, nullable=True),
    UniqueConstraint("type_id", "dedupe_lock"),
    # Listing newest first, with or without a status filter; FIFO/LIFO claims.
    Index("ix_tasks_status_created", "status", "created_at", "id"),
    Index("ix_tasks_created", "created_at", "id"),
    sqlite_autoincrement=True,
)


def _stamped(name: str, stamp: Column[Any], *columns: Column[Any]) -> Index:
    """An index of the rows whose ``stamp`` is set, where the database can (PostgreSQL, SQLite;
    migration 0011): it is read only with a comparison on ``stamp``, and a row without one (a
    pending task, mostly) writes no entry at create, claim or complete."""
    where = stamp.is_not(None)
    return Index(name, *columns, postgresql_where=where, sqlite_where=where)


# Finding expired leases and expired pending tasks without scanning.
_stamped("ix_tasks_status_lease", tasks.c.lease_expires_at, tasks.c.status, tasks.c.lease_expires_at)
_stamped("ix_tasks_status_expires", tasks.c.expires_at, tasks.c.status, tasks.c.expires_at)

# Claim: the next pending task that is not blocked, by priority (highest first), then first in
# first out; the column directions match the default claim order so the database walks the index
# and stops early, never stepping over blocked tasks (``blocked`` is an equality after ``status``).
Index(
    "ix_tasks_claim",
    tasks.c.status,
    tasks.c.blocked,
    tasks.c.priority.desc(),
    tasks.c.created_at,
    tasks.c.id,
)
# The same restricted to one type; also serves per-type pending counts (max_pending).
Index(
    "ix_tasks_type_claim",
    tasks.c.type_id,
    tasks.c.status,
    tasks.c.blocked,
    tasks.c.priority.desc(),
    tasks.c.created_at,
    tasks.c.id,
)
# The tasks whose dependants are not settled yet (the sweep's pass, resuming a cascade). Partial
# where the database can (PostgreSQL, SQLite): a row without marks has no entry, so a claim or a
# complete of a plain task writes nothing to it — PostgreSQL writes an entry in every full index
# of a row it updates. MariaDB/MySQL index all rows but touch this one only when the marks change.
Index(
    "ix_tasks_dependant_marks",
    tasks.c.dependant_marks,
    postgresql_where=tasks.c.dependant_marks > 0,
    sqlite_where=tasks.c.dependant_marks > 0,
)
# Observing (GET /stats, /workers, /metrics): counts per type and status and the oldest pending
# task of a type are read from this narrow index, never from the table.
Index("ix_tasks_type_status_created", tasks.c.type_id, tasks.c.status, tasks.c.created_at)
# The tasks that ended recently, with what the last hour's throughput and run times need.
_stamped(
    "ix_tasks_status_completed",
    tasks.c.completed_at,
    tasks.c.status,
    tasks.c.completed_at,
    tasks.c.type_id,
    tasks.c.claimed_at,
    tasks.c.claimed_by,
)

task_history = Table(
    "task_history",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("task_id", Id, nullable=False),
    Column("event", String(32), nullable=False),
    Column("worker_id", Key, nullable=True),
    Column("message", Text, nullable=True),
    Column("metadata", Text, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_task_history_task_id", "task_id", "id"),
    # The workers seen recently (GET /workers): a range of the last day's events.
    Index("ix_task_history_created", "created_at", "worker_id", "event"),
)

# Dependencies (API.md B.5): one row per (dependant, dependency). The primary key finds a task's
# dependencies; the index finds a dependency's dependants.
task_dependencies = Table(
    "task_dependencies",
    metadata,
    Column("task_id", Id, primary_key=True, autoincrement=False),
    Column("depends_on_id", Id, primary_key=True, autoincrement=False),
    Index("ix_task_dependencies_depends_on_id", "depends_on_id", "task_id"),
)

# API keys (docs/reference/api.md, API keys): only the SHA-256 of a key is stored; ``prefix``
# is its public start, shown in listings and logs. ``scopes`` is a JSON list; a NULL
# ``rate_limit`` follows the server's default.
api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", String(255), nullable=False),
    Column("prefix", String(32), nullable=False),
    Column("key_hash", Token, nullable=False),
    Column("scopes", Text, nullable=False),
    Column("rate_limit", Integer, nullable=True),
    Column("is_active", Boolean, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("last_used_at", UTCDateTime, nullable=True),
    Column("revoked_at", UTCDateTime, nullable=True),
    #: JSON list of the task-type name patterns the key is limited to; NULL: every type.
    Column("types", Text, nullable=True),
    UniqueConstraint("key_hash"),
    sqlite_autoincrement=True,
)

# Periodic tasks (API.md B.8). ``next_run_at`` is the next tick not yet fired (NULL: disabled);
# firing a tick is a compare-and-set on it, in the transaction that inserts the tick's task.
schedules = Table(
    "schedules",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", Key, nullable=False),
    Column("type", Key, nullable=False),
    Column("cron", String(255), nullable=True),
    Column("interval_seconds", Integer, nullable=True),
    Column("params", LongText, nullable=False),
    Column("priority", Integer, nullable=False),
    Column("timezone", String(64), nullable=False),
    Column("enabled", Boolean, nullable=False),
    Column("next_run_at", UTCDateTime, nullable=True),
    Column("last_run_at", UTCDateTime, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    UniqueConstraint("name"),
    Index("ix_schedules_next_run_at", "next_run_at"),
    sqlite_autoincrement=True,
)

# The callbacks' outbox (API.md B.5, ADR 0018): one row per end of a task with a callback_url,
# inserted in the transaction that ends it and deleted once delivered or given up. ``tries`` is
# the tries taken so far; ``next_try_at`` is when the next is due — and, while a server sends a
# try, the end of its lease (a claim moves it forward), so one index finds due rows and skips
# rows being sent. Ids are never reused (``X-TaskManager-Delivery`` is a receiver's dedupe key).
callback_deliveries = Table(
    "callback_deliveries",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("task_id", Id, nullable=False),
    Column("url", CallbackUrl, nullable=False),
    Column("tries", Integer, nullable=False),
    Column("next_try_at", UTCDateTime, nullable=False),
    Column("last_error", Text, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_callback_deliveries_next_try_at", "next_try_at"),
    Index("ix_callback_deliveries_task_id", "task_id"),
    sqlite_autoincrement=True,
)
