"""``Worker``: register handlers with a decorator, then ``run()``.

    worker = Worker(concurrency=4)

    @worker.task("thumbnails.make", version="1", schema={"type": "object"}, timeout=60)
    def make_thumbnail(ctx: TaskContext) -> dict:
        ctx.progress(50, "resized")
        return {"path": ...}

``taskmanager worker mymodule:worker`` runs it. On start the worker registers its task types,
then claims tasks of those types and runs them: blocking handlers in threads, ``async`` ones as
asyncio tasks, ``concurrency`` at a time. SIGTERM or SIGINT stops the claims and lets the running
tasks finish (exit 0); a second signal abandons them (exit 1) and their leases bring them back.
A server that does not answer yet when the worker starts is waited for: the worker tries again
with a growing pause (one log line per try) until it answers or the worker is told to stop.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from taskmanager.client import AsyncTaskManagerClient
from taskmanager.worker.logs import configure_logging
from taskmanager.worker.loop import DEFAULT_CLAIM_WAIT, ClaimLoop, LoopOptions
from taskmanager.worker.registry import HandlerFn, Registry
from taskmanager.worker.schedule import Schedule
from taskmanager.worker.startup import wait_for_server

log = logging.getLogger("taskmanager.worker")

F = TypeVar("F", bound=HandlerFn)
SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop when it is installed, else None (asyncio's own)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - installed with the project on Linux and macOS
        return None
    return uvloop.new_event_loop


class Worker:
    """A set of task handlers and how to run them.

    ``client`` (an ``AsyncTaskManagerClient``) is used as given; without one, the worker makes
    its own from ``api_url``/``api_key`` (else ``TASKMANAGER_API_URL``/``TASKMANAGER_API_KEY``),
    and a database URL runs the engine in-process. ``task_timeout`` is the time limit of a
    handler that sets none; ``lease_seconds`` overrides the types' ``claim_timeout`` for claims;
    ``claim_wait`` is how long a claim waits on the server for work (0: do not long-poll).
    ``retries`` is how many times the client it makes sends a failed report (complete, progress,
    heartbeat) or read again after a 500, 502, 503, 504 or a broken connection (None: the client's
    default, 3; 0: never); claims are not among them (``client.settle``).
    """

    def __init__(
        self,
        concurrency: int = 1,
        *,
        client: AsyncTaskManagerClient | None = None,
        api_url: str | None = None,
        api_key: str | None = None,
        worker_id: str | None = None,
        lease_seconds: int | None = None,
        task_timeout: float | None = None,
        claim_wait: float | None = DEFAULT_CLAIM_WAIT,
        register_types: bool = True,
        retries: int | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be 1 or more")
        self.concurrency = concurrency
        self.client = client
        self.api_url = api_url
        self.api_key = api_key
        self.worker_id = worker_id
        self.lease_seconds = lease_seconds
        self.task_timeout = task_timeout
        self.claim_wait = claim_wait
        self.register_types = register_types
        if retries is not None and retries < 0:
            raise ValueError("retries must be 0 or more")
        self.retries = retries
        self.registry = Registry()
        self._loop: ClaimLoop | None = None
        self._event_loop: asyncio.AbstractEventLoop | None = None

    def task(
        self,
        name: str,
        *,
        version: str = "1",
        schema: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        schedule: Schedule | None = None,
        **settings: Any,
    ) -> Callable[[F], F]:
        """Decorator: ``fn(ctx)`` handles tasks of type ``name`` (registered with ``version``,
        ``schema`` and task-type ``settings`` such as ``max_attempts`` or ``claim_timeout``).
        ``schedule`` (``Cron(...)`` or ``Every(...)``) is saved when the worker starts, so the
        servers create a task of the type at each of its ticks."""
        return self.registry.task(
            name, version=version, schema=schema, timeout=timeout, schedule=schedule, **settings
        )

    def run(self) -> int:
        """Run until SIGTERM/SIGINT (blocking); the exit code (0, or 1 when tasks were abandoned).

        Logs go to stderr as ``taskmanager worker`` sends them (``configure_logging``), unless the
        program has set up logging of its own. The event loop is uvloop's where it is installed
        (a dependency of the package on CPython outside Windows): a worker's own CPU per task is
        mostly event-loop work — timers, futures and socket calls for every claim, handler and
        report — which uvloop does in C.
        """
        if not logging.getLogger().handlers and not logging.getLogger("taskmanager").handlers:
            configure_logging()
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            return runner.run(self.run_async(handle_signals=True))

    async def run_async(self, *, handle_signals: bool = False) -> int:
        """Run in the current event loop until ``stop()`` (or a signal, with ``handle_signals``)."""
        if not len(self.registry):
            raise RuntimeError("this worker has no handlers: register some with @worker.task(...)")
        client = self.client or AsyncTaskManagerClient(
            self.api_url, self.api_key, worker_id=self.worker_id, retries=self.retries
        )
        options = LoopOptions(
            concurrency=self.concurrency,
            worker_id=self.worker_id or client.worker_id,
            lease_seconds=self.lease_seconds,
            task_timeout=self.task_timeout,
            claim_wait=self.claim_wait,
        )
        claim_loop = ClaimLoop(client, self.registry, options)
        self._loop, self._event_loop = claim_loop, asyncio.get_running_loop()
        installed = self._install_signals() if handle_signals else []
        try:
            # A client of the worker's own making (not an injected one, nor the embedded engine)
            # waits for a server that does not answer yet.
            waits = self.client is None and not client.config.embedded
            if waits and not await wait_for_server(client.config, claim_loop.stopping):
                return 0
            if self.register_types:
                await self._register(client)
            log.info(
                "worker %s started: %d handlers (%s), concurrency %d",
                options.worker_id,
                len(self.registry),
                ", ".join(self.registry.names()),
                options.concurrency,
                extra={"worker_id": options.worker_id},
            )
            code = await claim_loop.run()
            log.info("worker %s stopped", options.worker_id, extra={"worker_id": options.worker_id})
            return code
        finally:
            for signum in installed:
                asyncio.get_running_loop().remove_signal_handler(signum)
            self._loop = self._event_loop = None
            if self.client is None:
                await client.aclose()

    async def _register(self, client: AsyncTaskManagerClient) -> None:
        for handler in self.registry:
            await client.register_task_type(
                handler.name, handler.version, handler.schema, **dict(handler.settings)
            )
            if handler.schedule is not None:
                name = handler.schedule.name or handler.name
                await client.save_schedule(name, handler.name, **handler.schedule.body())

    def _install_signals(self) -> list[signal.Signals]:
        if threading.current_thread() is not threading.main_thread():
            return []
        loop = asyncio.get_running_loop()
        for signum in SIGNALS:
            loop.add_signal_handler(signum, self._on_signal, signum)
        return list(SIGNALS)

    def _on_signal(self, signum: signal.Signals) -> None:
        log.info("received %s", signum.name)
        self.stop()

    def stop(self) -> None:
        """Stop claiming and finish the running tasks; called again, abandon them.
        Safe to call from any thread."""
        claim_loop, event_loop = self._loop, self._event_loop
        if claim_loop is None or event_loop is None:
            return
        try:
            running_here = asyncio.get_running_loop() is event_loop
        except RuntimeError:
            running_here = False
        if running_here:
            claim_loop.stop()
        else:
            event_loop.call_soon_threadsafe(claim_loop.stop)


__all__ = ["Worker"]
