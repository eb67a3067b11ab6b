"""The sans-I/O pieces every client shares: requests, responses, calls and the leases it holds.

A *call* is one API operation with no I/O in it: the ``Request`` to send and how to turn the
answer's ``data`` into the value the caller gets. A *transport* sends a ``Request`` and returns a
``Response`` (over HTTP, or to the in-process engine); the sync and async clients only move calls
through a transport and sleep between retries. Everything else is decided here and in ``core``.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Generic, Protocol, TypeVar
from urllib.parse import urlencode

from taskmanager.client.errors import TaskManagerAPIError, TaskManagerConnectionError

T = TypeVar("T")

#: Tasks whose lease a client remembers at most; the oldest is forgotten first.
MAX_REMEMBERED_LEASES = 10_000


@dataclass(frozen=True, slots=True)
class Request:
    """One HTTP request, relative to the API root (``/tasks/5/complete``)."""

    method: str
    path: str
    params: tuple[tuple[str, str], ...] = ()
    #: The JSON body, already encoded (None: no body).
    content: bytes | None = None
    #: Safe to send again when the first send may have reached the server (reads, creates with
    #: a dedupe key, completes with a lease token, heartbeats...).
    idempotent: bool = False
    #: Seconds this request may take when it is not the client's timeout (long-poll claims).
    timeout: float | None = None

    @property
    def target(self) -> str:
        """The path and its query as sent (``/tasks?status=failed&status=ended``): the query's
        pairs in their order, a repeated name repeated."""
        return f"{self.path}?{urlencode(self.params)}" if self.params else self.path


@dataclass(frozen=True, slots=True)
class Response:
    """One answer: status, headers (lower-case names) and the body's bytes."""

    status_code: int
    headers: Mapping[str, str]
    content: bytes
    #: Seconds the round trip took, for the request log.
    elapsed: float = 0.0


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """An operation: the request, how to read a success's ``data``, and (optionally) how to turn
    an error answer into a value instead of raising it (``claim_task`` → None on ``no_tasks``)."""

    request: Request
    parse: Callable[[Any], T]
    recover: Callable[[TaskManagerAPIError], T] | None = None


@dataclass(frozen=True, slots=True)
class Retry:
    """Send the call again after ``delay`` seconds."""

    delay: float


@dataclass(frozen=True, slots=True)
class Done(Generic[T]):
    """The call is finished with ``value``."""

    value: T


Outcome = Response | TaskManagerConnectionError


class SyncTransport(Protocol):
    """Sends a request and waits for its answer; raises ``TaskManagerConnectionError`` on no answer."""

    def send(self, request: Request) -> Response: ...

    def close(self) -> None: ...


class AsyncTransport(Protocol):
    async def send(self, request: Request) -> Response: ...

    async def aclose(self) -> None: ...


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        aware = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return aware.isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def encode(body: Any) -> bytes:
    """A request body as compact UTF-8 JSON; datetimes become ISO 8601 UTC strings.

    Raises ``TypeError``/``ValueError`` for what JSON cannot hold (objects, NaN), before anything
    is sent.
    """
    text = json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=_json_default)
    return text.encode()


def decode(content: bytes) -> Any:
    """The body as JSON, or None when it is empty or not JSON (a proxy's HTML error page)."""
    try:
        return json.loads(content) if content else None
    except ValueError:
        return None


def fields(**values: Any) -> dict[str, Any]:
    """A request body of the given fields, leaving out those that are None."""
    return {name: value for name, value in values.items() if value is not None}


def get(path: str, parse: Callable[[Any], T], **params: Any) -> Call[T]:
    """A read: ``GET path?params`` (None values left out), always safe to repeat."""
    query = tuple((name, str(value)) for name, value in params.items() if value is not None)
    return Call(Request("GET", path, query, idempotent=True), parse)


def post(path: str, body: Any, parse: Callable[[Any], T], *, idempotent: bool = False) -> Call[T]:
    """A write: ``POST path`` with ``body`` as JSON."""
    return Call(Request("POST", path, content=encode(body), idempotent=idempotent), parse)


@dataclass(frozen=True, slots=True)
class Lease:
    """Who holds a claimed task, and the token that proves it."""

    worker_id: str
    token: str


class Leases:
    """The leases of the tasks this client claimed, kept until their complete is settled, so
    ``complete_task(task_id)`` sends the right worker id and lease token without being told."""

    def __init__(self, limit: int = MAX_REMEMBERED_LEASES) -> None:
        self._items: OrderedDict[int, Lease] = OrderedDict()
        self._limit = limit
        self._lock = threading.Lock()  # a sync client may be shared by a worker's threads

    def remember(self, task_id: int, lease: Lease) -> None:
        with self._lock:
            self._items[task_id] = lease
            self._items.move_to_end(task_id)
            while len(self._items) > self._limit:
                self._items.popitem(last=False)

    def get(self, task_id: int) -> Lease | None:
        with self._lock:
            return self._items.get(task_id)

    def forget(self, task_id: int, token: str | None = None) -> None:
        """Drop the lease of ``task_id`` — only if it is the one with ``token``, when given: a
        complete sent with an older lease must not make the client forget a newer one."""
        with self._lock:
            held = self._items.get(task_id)
            if held is not None and (token is None or held.token == token):
                del self._items[task_id]

    def __len__(self) -> int:
        return len(self._items)


__all__ = [
    "AsyncTransport",
    "Call",
    "Done",
    "Lease",
    "Leases",
    "Outcome",
    "Request",
    "Response",
    "Retry",
    "SyncTransport",
    "decode",
    "encode",
    "fields",
    "get",
    "post",
]
