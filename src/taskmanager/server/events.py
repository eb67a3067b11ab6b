"""``GET /events``: the engine's history feed as Server-Sent Events.

The stream ends when its client disconnects (Starlette's streaming response listens for it and
cancels the feed) and when the server shuts down: ``Shutdown`` is set by SIGINT/SIGTERM before
uvicorn starts waiting for open connections (uvicorn waits for every open response before it
runs the app's shutdown, so a stream that waited for that would hang the exit), and by the
lifespan's shutdown for hosts that stop it otherwise.
"""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import AsyncIterator
from types import FrameType
from typing import Any

from prometheus_client import Gauge
from starlette.responses import StreamingResponse

from taskmanager.engine.observe import Dropped, FeedFilter, FeedItem, FeedTiming, KeepAlive
from taskmanager.engine.service import TaskService

EVENT_STREAM = "text/event-stream"


class Shutdown:
    """Set once the server is stopping; open streams end at their next look."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def on_signals(self) -> None:
        """Also set it on SIGINT/SIGTERM, before the handlers already installed (uvicorn's) run.
        Only the main thread may install handlers; elsewhere (a server in a thread) this does
        nothing and the lifespan's shutdown sets it."""
        if threading.current_thread() is not threading.main_thread():
            return
        for number in (signal.SIGINT, signal.SIGTERM):
            previous = signal.getsignal(number)
            if not callable(previous):
                continue

            def chained(signum: int, frame: FrameType | None, previous: Any = previous) -> None:
                self.set()
                previous(signum, frame)

            signal.signal(number, chained)


def frame(item: FeedItem | KeepAlive | Dropped) -> bytes:
    """One SSE message."""
    if isinstance(item, KeepAlive):
        return b": keep-alive\n\n"
    if isinstance(item, Dropped):
        data = {"reason": "reader fell behind", "last_event_id": item.last_id, "newest_id": item.newest_id}
        return f"event: dropped\ndata: {json.dumps(data)}\n\n".encode()
    data_text = json.dumps(item.data, separators=(",", ":"))
    return f"id: {item.id}\nevent: {item.event}\ndata: {data_text}\n\n".encode()


def event_stream(
    engine: TaskService,
    after: int | None,
    wanted: FeedFilter,
    timing: FeedTiming,
    shutdown: Shutdown,
    open_streams: Gauge,
) -> StreamingResponse:
    async def body() -> AsyncIterator[bytes]:
        open_streams.inc()
        try:
            # "From now on" is fixed before the client learns the stream is open.
            cursor = await engine.event_cursor(after)
            yield b": connected\n\n"  # the headers and a first byte at once: clients see it open
            async for item in engine.follow(cursor, wanted, timing, shutdown.is_set):
                yield frame(item)
        finally:  # ended, or cancelled when the client went away
            open_streams.dec()

    headers = {"X-Accel-Buffering": "no"}  # nginx: pass each event on at once
    return StreamingResponse(body(), media_type=EVENT_STREAM, headers=headers)
