"""MySQLStore: MySQL and MariaDB, where a claim locks its rows first, then reads them.

Concurrent claimers must never wait on, or take, the same row: the pick locks with ``FOR UPDATE
SKIP LOCKED``. MySQL cannot limit that lock to one table of a join (it would lock the shared
task_types row), so the claim locks task ids first, then reads the tasks.

MySQL has no NOTIFY: a request waiting for a task to end (``GET /tasks/{id}/wait``) that another
server process ends reads its task again every ``END_POLL_INTERVAL`` (1 s); one this process
ends wakes it at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.engine import Connection

from taskmanager.engine.records import Task
from taskmanager.engine.store import ClaimQuery
from taskmanager.store import operations as ops
from taskmanager.store import verbs
from taskmanager.store.base import SqlStore
from taskmanager.store.rows import T


class MySQLStore(SqlStore):
    def build_claim(self, query: ClaimQuery, skip: bool) -> Select[Any]:
        # MariaDB would otherwise join task_types first and sort every pending row, locking them
        # all (SKIP LOCKED then hands concurrent claimers nothing); STRAIGHT_JOIN keeps it on the
        # claim index, reading rows in order and stopping at the limit.
        return (
            select(T.id)
            .prefix_with("STRAIGHT_JOIN")
            .where(*verbs.claim_conditions(query, verbs.SharedBinds()), *verbs.skipping(skip))
            .order_by(*verbs.claim_order(query))
            .limit(query.limit)
            .with_for_update(skip_locked=True)
        )

    def pick(self, conn: Connection, query: ClaimQuery, skip_types: Sequence[int] = ()) -> list[Task]:
        statement, values = self.claim_statement(query, skip_types), verbs.claim_values(query, skip_types)
        return ops.load(conn, self.q, list(conn.execute(statement, values).scalars()))


__all__ = ["MySQLStore"]
