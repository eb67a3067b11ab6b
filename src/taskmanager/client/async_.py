"""``AsyncTaskManagerClient``: the asyncio twin of ``TaskManagerClient`` — the same calls from the
same core, sent through one ``aiohttp.ClientSession`` (``client/aio.py``; an ``httpx.AsyncClient``
where aiohttp does not install) or the in-process engine, and awaited."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from types import TracebackType
from typing import Any, Concatenate, ParamSpec, TypeVar

import httpx

from taskmanager._server_extra import embedded_needs_server, is_server_module
from taskmanager.client.base import ClientBase
from taskmanager.client.config import TaskManagerConfig
from taskmanager.client.core import ClientCore
from taskmanager.client.errors import TaskManagerConnectionError
from taskmanager.client.models import CreatedTask, Task, WaitedTask
from taskmanager.client.protocol import AsyncTransport, Call, Request, Response, Retry
from taskmanager.client.sync import connection_error

P = ParamSpec("P")
T = TypeVar("T")


class AsyncHTTPTransport:
    """Sends requests over one ``httpx.AsyncClient`` (a pool of kept-alive connections)."""

    def __init__(self, config: TaskManagerConfig, headers: dict[str, str]) -> None:
        self._http = httpx.AsyncClient(base_url=config.base_url, headers=headers, timeout=config.timeout)

    async def send(self, request: Request) -> Response:
        started = time.perf_counter()
        try:
            answer = await self._http.request(
                request.method,
                request.target,  # not params=: httpx would group a repeated name's values
                content=request.content,
                headers={"Content-Type": "application/json"} if request.content is not None else None,
                timeout=request.timeout if request.timeout is not None else httpx.USE_CLIENT_DEFAULT,
            )
        except httpx.TransportError as exc:
            raise connection_error(exc) from exc
        return Response(answer.status_code, answer.headers, answer.content, time.perf_counter() - started)

    async def aclose(self) -> None:
        await self._http.aclose()


def _awaitable(
    op: Callable[Concatenate[ClientCore, P], Call[T]],
) -> Callable[Concatenate[AsyncTaskManagerClient, P], Coroutine[Any, Any, T]]:
    """A client coroutine method that builds the core's call and sends it."""

    async def method(self: AsyncTaskManagerClient, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await self.send(op(self.core, *args, **kwargs))

    functools.update_wrapper(method, op)  # its name, docstring and signature (for help())
    method.__qualname__ = f"AsyncTaskManagerClient.{op.__name__}"
    method.__module__ = __name__
    return method


class AsyncTaskManagerClient(ClientBase[AsyncTransport]):
    """The asyncio client: every method of ``TaskManagerClient``, awaited.

    ``AsyncTaskManagerClient("sqlite:///local.db")`` runs the engine in the caller's event loop.
    Use it with ``async with``, or call ``aclose()``.
    """

    def _default_transport(self) -> AsyncTransport:
        if self.config.embedded:
            try:
                from taskmanager.client.embedded import EmbeddedTransport
            except ModuleNotFoundError as exc:
                if not is_server_module(exc.name):
                    raise
                raise embedded_needs_server(exc) from exc
            return EmbeddedTransport(self.config.api_url or "")
        try:
            from taskmanager.client.aio import AioHTTPTransport
        except ImportError:  # no aiohttp for this platform: httpx does the same, dearer
            return AsyncHTTPTransport(self.config, self.core.headers())
        return AioHTTPTransport(self.config, self.core.headers())

    async def send(self, call: Call[T]) -> T:
        """Send one call, retrying it as the core decides; its value or its error."""
        attempt = 0
        while True:
            try:
                outcome: Response | TaskManagerConnectionError = await self._transport.send(call.request)
            except TaskManagerConnectionError as exc:
                outcome = exc
            step = self.core.settle(call, outcome, attempt)
            if not isinstance(step, Retry):
                return step.value
            await asyncio.sleep(step.delay)
            attempt += 1

    health_check = _awaitable(ClientCore.health_check)
    register_task_type = _awaitable(ClientCore.register_task_type)
    get_task_type = _awaitable(ClientCore.get_task_type)
    list_task_types = _awaitable(ClientCore.list_task_types)
    deactivate_task_type = _awaitable(ClientCore.deactivate_task_type)
    _create_task = _awaitable(ClientCore.create_task)

    async def create_task(
        self,
        /,
        task_type: str,
        params: Mapping[str, Any] | None = None,
        priority: int = 0,
        *,
        wait: bool = False,
        wait_timeout: float | None = None,
        **options: Any,
    ) -> CreatedTask | WaitedTask:
        created = await self._create_task(task_type, params, priority, **options)
        return await self.wait_for(created.id, wait_timeout) if wait else created

    create_task.__doc__ = ClientCore.create_task.__doc__

    # The API's name (wait_for(task_id, timeout)); the limit spans several requests.
    async def wait_for(self, task_id: int, timeout: float | None = None) -> WaitedTask:  # noqa: ASYNC109
        """The task once it has ended, or as it is when ``timeout`` seconds (None: no limit)
        have passed: ``done`` says which. Waits on the server, never polls."""
        loop = asyncio.get_running_loop()
        waiter = self.core.task_waiter(task_id, timeout, loop.time())
        while (call := waiter.next_call(loop.time())) is not None:
            waiter.take(await self.send(call))
        return waiter.result

    wait_task = _awaitable(ClientCore.wait_task)
    create_tasks = _awaitable(ClientCore.create_tasks)
    get_task = _awaitable(ClientCore.get_task)
    #: PrismQ's name for ``get_task``.
    get_task_status = _awaitable(ClientCore.get_task)
    get_task_history = _awaitable(ClientCore.get_task_history)
    list_tasks_page = _awaitable(ClientCore.list_tasks_page)
    cancel_task = _awaitable(ClientCore.cancel_task)
    retry_task = _awaitable(ClientCore.retry_task)
    delete_task = _awaitable(ClientCore.delete_task)
    bulk = _awaitable(ClientCore.bulk)
    stats = _awaitable(ClientCore.stats)
    workers = _awaitable(ClientCore.workers)
    save_schedule = _awaitable(ClientCore.save_schedule)
    list_schedules = _awaitable(ClientCore.list_schedules)
    get_schedule = _awaitable(ClientCore.get_schedule)
    delete_schedule = _awaitable(ClientCore.delete_schedule)
    claim_task = _awaitable(ClientCore.claim_task)
    claim_tasks = _awaitable(ClientCore.claim_tasks)
    complete_task = _awaitable(ClientCore.complete_task)
    complete_tasks = _awaitable(ClientCore.complete_tasks)
    fail_task = _awaitable(ClientCore.fail_task)
    report_progress = _awaitable(ClientCore.report_progress)
    heartbeat = _awaitable(ClientCore.heartbeat)

    async def list_tasks(
        self,
        status: str | Sequence[str] | None = None,
        task_type: str | None = None,
        worker_id: str | None = None,
        *,
        page_size: int = 100,
        limit: int | None = None,
        offset: int = 0,
    ) -> AsyncIterator[Task]:
        """Tasks, newest first, fetched a page at a time as the iteration goes (``async for``)."""
        pager = self.core.task_pager(
            status, task_type, worker_id, page_size=page_size, limit=limit, offset=offset
        )
        while (call := pager.next_call()) is not None:
            for task in pager.take(await self.send(call)):
                yield task

    async def aclose(self) -> None:
        await self._transport.aclose()

    async def __aenter__(self) -> AsyncTaskManagerClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


__all__ = ["AsyncHTTPTransport", "AsyncTaskManagerClient"]
