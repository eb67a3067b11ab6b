"""A worker's start before its server's: ``GET /health`` is asked until the server answers, one
log line per failed try, the pause between tries doubling from 1 s to 30 s (as Celery workers
wait for their broker), until it answers or the worker is told to stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import replace

from taskmanager.client import AsyncTaskManagerClient, TaskManagerConfig
from taskmanager.client.errors import TaskManagerConnectionError, TaskManagerServerError

log = logging.getLogger("taskmanager.worker")

#: Pause after the first failed try to reach the server; it doubles up to the maximum.
START_RETRY_DELAY = 1.0
START_RETRY_MAX_DELAY = 30.0


async def wait_for_server(config: TaskManagerConfig, stopping: asyncio.Event) -> bool:
    """True once the server at ``config.api_url`` answers healthy; False when ``stopping`` is set
    first. Each try is one request (the client's own retries are off for it)."""
    delay, tries = START_RETRY_DELAY, 1
    async with AsyncTaskManagerClient(replace(config, retry_attempts=0)) as probe:
        while True:
            try:
                await probe.health_check()
                return True
            except (TaskManagerConnectionError, TaskManagerServerError) as exc:
                log.warning(
                    "cannot reach the server at %s (try %d: %s); trying again in %.0f s",
                    config.api_url,
                    tries,
                    exc,
                    delay,
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), delay)
            if stopping.is_set():
                return False
            delay, tries = min(delay * 2, START_RETRY_MAX_DELAY), tries + 1


__all__ = ["START_RETRY_DELAY", "START_RETRY_MAX_DELAY", "wait_for_server"]
