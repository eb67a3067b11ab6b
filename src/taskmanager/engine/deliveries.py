"""The callbacks' delivery loop (API.md B.5, ADR 0018): each server process drains the outbox.

A task with a ``callback_url`` that ends gets a row in the outbox in the transaction that ends it
(``Transitions.change``). Every server process runs a ``Deliverer`` in its lifespan: it takes due
rows under a lease (``Store.claim_deliveries``: ``SKIP LOCKED`` on PostgreSQL and MariaDB, the one
writer on SQLite; the lease moves the row's ``next_try_at`` past the longest a try can take, so
no other server sends the same try meanwhile), POSTs each task's JSON, signed, through the
server's ``Transport``, and writes what the try came to (``callbacks.outcome``) with its history
event. A server that dies mid-try leaves its rows leased: another (or the next start) takes them
once the lease ends — *at least once*, the same ``X-TaskManager-Delivery`` id each time.

Never in a request's way: sends run as tasks of their own, at most ``MAX_CONCURRENT`` per process,
each bounded by ``DELIVERY_TIMEOUT``; the loop holds no database connection while it waits on a
receiver, and its statements run one at a time (``_db``), so it uses at most one pooled
connection at any moment, however many receivers hang. Idle, it costs one indexed ``MIN`` per
``MAX_SLEEP`` (woken at once when a task with a callback ends in this process).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta

from taskmanager.engine import callbacks
from taskmanager.engine.records import Delivery
from taskmanager.engine.retention import removed
from taskmanager.engine.store import DeliveryClaim, DeliveryOutcome
from taskmanager.engine.transitions import Transitions
from taskmanager.engine.wire import task_data
from taskmanager.errors import Unavailable

log = logging.getLogger("taskmanager.callbacks")

#: Deliveries one server process sends at once (more wait in the outbox).
MAX_CONCURRENT = 8
#: Seconds a try holds its delivery: far longer than a try can take (``DELIVERY_TIMEOUT`` bounds
#: resolving, connecting, sending and the answer), so no other server sends the same try.
LEASE_SECONDS = 60
#: Most seconds the loop sleeps before it looks for due deliveries again: deliveries written or
#: retried by other servers, and retries falling due, are seen within this.
MAX_SLEEP = 2.0
#: Seconds the loop waits when due rows were all being taken by another server.
CONTENDED_SLEEP = 0.2


class Deliverer:
    """The delivery loop of one server process; ``start`` and ``stop`` belong to its lifespan."""

    def __init__(
        self,
        core: Transitions,
        webhooks: callbacks.Webhooks,
        *,
        limit: int = MAX_CONCURRENT,
        max_sleep: float = MAX_SLEEP,
    ) -> None:
        assert webhooks.secret, "deliveries are signed: a server without a secret sends none"
        self.core = core
        self.secret = webhooks.secret
        self.transport = webhooks.transport
        self.first_retry = webhooks.first_retry
        self.limit = limit
        self.max_sleep = max_sleep
        self._db = asyncio.Lock()
        self._sending: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None
        self._unavailable = False

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="taskmanager-callbacks")

    async def stop(self, grace: float = callbacks.DELIVERY_TIMEOUT) -> None:
        """Stop looking; give the sends under way up to ``grace`` seconds to end, then cancel
        them (their rows stay leased and are tried again once the lease ends: at least once)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._sending:
            await asyncio.wait(list(self._sending), timeout=grace)
        running = list(self._sending)
        for each in running:
            each.cancel()
        for each in running:
            with contextlib.suppress(asyncio.CancelledError):
                await each

    async def drain(self) -> None:
        """Wait for the sends under way to end (tests)."""
        while self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)

    async def _run(self) -> None:
        signal = self.core.delivering
        while True:
            ticket = signal.ticket()  # taken before the pass: an end during it wakes the wait
            delay = await self.pass_once()
            await signal.wait(ticket, delay)

    async def pass_once(self) -> float:
        """Start sending the due deliveries there is room for; the seconds until the next look."""
        try:
            return await self._pass()
        except Unavailable:
            if not self._unavailable:
                log.warning("database unavailable: callbacks are delivered once it is back")
            self._unavailable = True
        except Exception:  # never end the loop: the next pass tries again
            log.exception("looking for due callbacks failed; trying again in %.0f s", self.max_sleep)
        return self.max_sleep

    async def _pass(self) -> float:
        room = self.limit - len(self._sending)
        if room <= 0:
            return self.max_sleep  # a send that ends wakes the loop
        async with self._db:
            due = await self.core.store.next_delivery_at()
        self._unavailable = False
        now = self.core.clock.now()
        if due is None:
            return self.max_sleep
        if due > now:
            return min(self.max_sleep, (due - now).total_seconds())
        claim = DeliveryClaim(now, now + timedelta(seconds=LEASE_SECONDS), room)
        async with self._db:
            taken = await self.core.store.claim_deliveries(claim)
        for delivery in taken:
            send = asyncio.create_task(self._send(delivery), name=f"taskmanager-callback-{delivery.id}")
            self._sending.add(send)
            send.add_done_callback(self._sent)
        return 0.0 if taken else CONTENDED_SLEEP

    def _sent(self, send: asyncio.Task[None]) -> None:
        self._sending.discard(send)
        self.core.delivering.notify()  # a slot is free

    async def _send(self, delivery: Delivery) -> None:
        try:
            await self._finish(await self._try(delivery))
        except Exception:  # the row stays leased and is tried again after the lease
            log.exception("callback delivery %s: recording its try failed", delivery.id)

    async def _try(self, delivery: Delivery) -> DeliveryOutcome:
        """One try: the task as it is now, signed and POSTed; what it came to."""
        core = self.core
        async with self._db:
            task = await core.store.get_task(delivery.task_id)
        if task is None or removed(task, core.clock.now()):  # deleted meanwhile: nothing to say
            return DeliveryOutcome(
                delivery.id, delivery.task_id, delivery.tries, None, None, None, core.clock.now()
            )
        body = callbacks.body_of(task_data(task))
        headers = callbacks.headers(self.secret, body, delivery.id)
        status: int | None = None
        error: str | None = None
        try:
            async with asyncio.timeout(callbacks.DELIVERY_TIMEOUT):
                status = await self.transport.send(delivery.url, body, headers, callbacks.DELIVERY_TIMEOUT)
        except TimeoutError:
            error = f"no answer within {callbacks.DELIVERY_TIMEOUT:.0f} s"
        except Exception as exc:  # a refused address, a name that does not resolve, a network error
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        history = core.defaults.enable_history
        return callbacks.outcome(
            delivery, status, error, now=core.clock.now(), history=history, first_retry=self.first_retry
        )

    async def _finish(self, outcome: DeliveryOutcome) -> None:
        async with self._db:
            if not await self.core.store.finish_delivery(outcome):
                log.info("callback delivery %s: taken again meanwhile (a lease ran out)", outcome.delivery_id)


__all__ = ["LEASE_SECONDS", "MAX_CONCURRENT", "MAX_SLEEP", "Deliverer"]
