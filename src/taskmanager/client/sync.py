"""``TaskManagerClient``: the blocking client, a thin loop that moves the core's calls through a
transport (HTTP over libcurl, ``client/curl.py``, or over one pooled ``httpx.Client`` where no
pycurl installs; or the in-process engine) and sleeps between retries."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, Concatenate, ParamSpec, TypeVar

import httpx

from taskmanager._server_extra import embedded_needs_server, is_server_module
from taskmanager.client.base import ClientBase
from taskmanager.client.config import TaskManagerConfig
from taskmanager.client.core import ClientCore
from taskmanager.client.errors import TaskManagerConnectionError
from taskmanager.client.models import CreatedTask, Task, WaitedTask
from taskmanager.client.protocol import Call, Request, Response, Retry, SyncTransport

P = ParamSpec("P")
T = TypeVar("T")

#: httpx failures after which the request certainly never reached the server.
UNSENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def connection_error(exc: httpx.TransportError) -> TaskManagerConnectionError:
    """An httpx transport failure as the client's connection error."""
    return TaskManagerConnectionError(
        f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__,
        request_sent=not isinstance(exc, UNSENT),
    )


class HTTPTransport:
    """Sends requests over one ``httpx.Client`` (a pool of kept-alive connections)."""

    def __init__(self, config: TaskManagerConfig, headers: dict[str, str]) -> None:
        self._http = httpx.Client(base_url=config.base_url, headers=headers, timeout=config.timeout)

    def send(self, request: Request) -> Response:
        started = time.perf_counter()
        try:
            answer = self._http.request(
                request.method,
                request.target,  # not params=: httpx would group a repeated name's values
                content=request.content,
                headers={"Content-Type": "application/json"} if request.content is not None else None,
                timeout=request.timeout if request.timeout is not None else httpx.USE_CLIENT_DEFAULT,
            )
        except httpx.TransportError as exc:
            raise connection_error(exc) from exc
        return Response(answer.status_code, answer.headers, answer.content, time.perf_counter() - started)

    def close(self) -> None:
        self._http.close()


def _blocking(
    op: Callable[Concatenate[ClientCore, P], Call[T]],
) -> Callable[Concatenate[TaskManagerClient, P], T]:
    """A client method that builds the core's call and sends it."""

    def method(self: TaskManagerClient, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self.send(op(self.core, *args, **kwargs))

    functools.update_wrapper(method, op)  # its name, docstring and signature (for help())
    method.__qualname__ = f"TaskManagerClient.{op.__name__}"
    method.__module__ = __name__
    return method


class TaskManagerClient(ClientBase[SyncTransport]):
    """A blocking client for the TaskManager API (or, given a database URL, the embedded engine).

    ``TaskManagerClient()`` reads ``TASKMANAGER_API_URL``/``TASKMANAGER_API_KEY``;
    ``TaskManagerClient("http://host:8000", "key")``, ``TaskManagerClient(TaskManagerConfig(...))``
    and ``TaskManagerClient("sqlite:///local.db")`` (no server) work too. Safe to share between
    threads. Use it as a context manager, or call ``close()``.
    """

    def _default_transport(self) -> SyncTransport:
        if self.config.embedded:
            try:
                from taskmanager.client.embedded import SyncEmbeddedTransport
            except ModuleNotFoundError as exc:
                if not is_server_module(exc.name):
                    raise
                raise embedded_needs_server(exc) from exc
            return SyncEmbeddedTransport(self.config.api_url or "")
        try:
            from taskmanager.client.curl import CurlTransport
        except ImportError:  # no pycurl wheel for this platform: httpx does the same, dearer
            return HTTPTransport(self.config, self.core.headers())
        return CurlTransport(self.config, self.core.headers())

    def send(self, call: Call[T]) -> T:
        """Send one call, retrying it as the core decides; its value or its error."""
        attempt = 0
        while True:
            try:
                outcome: Response | TaskManagerConnectionError = self._transport.send(call.request)
            except TaskManagerConnectionError as exc:
                outcome = exc
            step = self.core.settle(call, outcome, attempt)
            if not isinstance(step, Retry):
                return step.value
            time.sleep(step.delay)
            attempt += 1

    health_check = _blocking(ClientCore.health_check)
    register_task_type = _blocking(ClientCore.register_task_type)
    get_task_type = _blocking(ClientCore.get_task_type)
    list_task_types = _blocking(ClientCore.list_task_types)
    deactivate_task_type = _blocking(ClientCore.deactivate_task_type)
    _create_task = _blocking(ClientCore.create_task)

    def create_task(
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
        created = self._create_task(task_type, params, priority, **options)
        return self.wait_for(created.id, wait_timeout) if wait else created

    create_task.__doc__ = ClientCore.create_task.__doc__

    def wait_for(self, task_id: int, timeout: float | None = None) -> WaitedTask:
        """The task once it has ended, or as it is when ``timeout`` seconds (None: no limit)
        have passed: ``done`` says which. Waits on the server, never polls."""
        waiter = self.core.task_waiter(task_id, timeout, time.monotonic())
        while (call := waiter.next_call(time.monotonic())) is not None:
            waiter.take(self.send(call))
        return waiter.result

    wait_task = _blocking(ClientCore.wait_task)
    create_tasks = _blocking(ClientCore.create_tasks)
    get_task = _blocking(ClientCore.get_task)
    #: PrismQ's name for ``get_task``.
    get_task_status = _blocking(ClientCore.get_task)
    get_task_history = _blocking(ClientCore.get_task_history)
    list_tasks_page = _blocking(ClientCore.list_tasks_page)
    cancel_task = _blocking(ClientCore.cancel_task)
    retry_task = _blocking(ClientCore.retry_task)
    delete_task = _blocking(ClientCore.delete_task)
    bulk = _blocking(ClientCore.bulk)
    stats = _blocking(ClientCore.stats)
    workers = _blocking(ClientCore.workers)
    save_schedule = _blocking(ClientCore.save_schedule)
    list_schedules = _blocking(ClientCore.list_schedules)
    get_schedule = _blocking(ClientCore.get_schedule)
    delete_schedule = _blocking(ClientCore.delete_schedule)
    claim_task = _blocking(ClientCore.claim_task)
    claim_tasks = _blocking(ClientCore.claim_tasks)
    complete_task = _blocking(ClientCore.complete_task)
    complete_tasks = _blocking(ClientCore.complete_tasks)
    fail_task = _blocking(ClientCore.fail_task)
    report_progress = _blocking(ClientCore.report_progress)
    heartbeat = _blocking(ClientCore.heartbeat)

    def list_tasks(
        self,
        status: str | Sequence[str] | None = None,
        task_type: str | None = None,
        worker_id: str | None = None,
        *,
        page_size: int = 100,
        limit: int | None = None,
        offset: int = 0,
    ) -> Iterator[Task]:
        """Tasks, newest first, fetched a page at a time as the iteration goes (``limit``: at most
        that many in all)."""
        pager = self.core.task_pager(
            status, task_type, worker_id, page_size=page_size, limit=limit, offset=offset
        )
        while (call := pager.next_call()) is not None:
            yield from pager.take(self.send(call))

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> TaskManagerClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


__all__ = ["HTTPTransport", "TaskManagerClient", "connection_error"]
