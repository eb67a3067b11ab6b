"""The SQL of the callbacks' outbox (API.md B.5, ADR 0018): finding due deliveries, taking them
for a try under a lease, and writing what the try came to.

A terminal change of a task with a ``callback_url`` inserts its row (``verbs.update_tasks``,
PostgreSQL's statements); these functions are the delivery loop's. Every read walks
``ix_callback_deliveries_next_try_at``, so the loop's cost does not grow with the outbox, nor
with ``tasks``.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Select, delete, func, insert, select, update
from sqlalchemy.engine import Connection

from taskmanager.engine.records import Delivery
from taskmanager.engine.store import DeliveryClaim, DeliveryOutcome
from taskmanager.store.rows import event_row
from taskmanager.store.tables import callback_deliveries, task_history

D = callback_deliveries.c


#: The earliest ``next_try_at``: the index's first entry.
NEXT_AT = select(func.min(D.next_try_at))


def due(claim: DeliveryClaim) -> Select[tuple[int]]:
    """The ids of up to ``claim.limit`` due rows, locked ``SKIP LOCKED`` (rows another server is
    taking are left to it; SQLite's single writer needs no lock): a range of the index."""
    return (
        select(D.id)
        .where(D.next_try_at <= claim.now)
        .order_by(D.next_try_at)
        .limit(claim.limit)
        .with_for_update(skip_locked=True)
    )


def next_at(conn: Connection) -> datetime | None:
    found: datetime | None = conn.execute(NEXT_AT).scalar()
    return found


def claim(claim: DeliveryClaim, conn: Connection) -> list[Delivery]:
    """Lock the due rows, count their try and move ``next_try_at`` to the lease's end, and read
    them back."""
    ids = sorted(conn.execute(due(claim)).scalars())
    if not ids:
        return []
    conn.execute(
        update(callback_deliveries)
        .where(D.id.in_(ids))
        .values(tries=D.tries + 1, next_try_at=claim.lease_until)
    )
    taken = select(D.id, D.task_id, D.url, D.tries, D.created_at).where(D.id.in_(ids)).order_by(D.id)
    return [Delivery(*row) for row in conn.execute(taken)]


def finish(outcome: DeliveryOutcome, conn: Connection) -> bool:
    """Delete or reschedule the delivery where it is still at ``outcome.tries``; its event with it."""
    mine = (D.id == outcome.delivery_id, D.tries == outcome.tries)
    if outcome.next_try_at is None:
        written = conn.execute(delete(callback_deliveries).where(*mine)).rowcount
    else:
        values = {"next_try_at": outcome.next_try_at, "last_error": outcome.last_error}
        written = conn.execute(update(callback_deliveries).where(*mine).values(values)).rowcount
    if not written:
        return False
    if outcome.event is not None:
        conn.execute(insert(task_history), [event_row(outcome.task_id, outcome.event, outcome.now)])
    return True


__all__ = ["NEXT_AT", "claim", "due", "finish", "next_at"]
