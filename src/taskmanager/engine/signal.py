"""Waking long-polling claimers the moment work appears, instead of making them poll fast.

A claimer takes a ``ticket`` *before* it tries to claim; if the claim finds nothing it waits on
that ticket. Any ``notify`` after the ticket was taken — even one that raced with the claim —
wakes it, so no wake-up is lost between "found nothing" and "started waiting".
"""

from __future__ import annotations

import asyncio
import threading


class WorkSignal:
    """In-process broadcast: "new work may be claimable". Used from the event loop's thread."""

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self._waiting = 0
        #: Set while at least one claimer waits: a store that must poll to hear of other
        #: processes' work (SQLite) polls only then. A thread-safe event, so its thread can block.
        self.waiting = threading.Event()

    def ticket(self) -> asyncio.Event:
        return self._event

    def notify(self) -> None:
        """Wake every claimer holding a ticket taken before this call."""
        event, self._event = self._event, asyncio.Event()
        event.set()

    async def wait(self, ticket: asyncio.Event, seconds: float) -> None:
        """Return when ``ticket`` is notified or after ``seconds``, whichever is first."""
        if seconds <= 0:
            return
        self._waiting += 1
        self.waiting.set()
        try:
            await asyncio.wait_for(ticket.wait(), seconds)
        except TimeoutError:
            return
        finally:
            self._waiting -= 1
            if not self._waiting:
                self.waiting.clear()
