"""The sans-I/O core alone: configuration, error mapping, the retry policy and paging — answers
fed in by hand, no transport."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime
from typing import Any

import pytest

from taskmanager.client.config import TaskManagerConfig, is_database_url, server_root
from taskmanager.client.core import ClientCore
from taskmanager.client.errors import (
    LeaseLostError,
    TaskManagerAPIError,
    TaskManagerAuthError,
    TaskManagerConflictError,
    TaskManagerConnectionError,
    TaskManagerForbiddenError,
    TaskManagerNotFoundError,
    TaskManagerQueueFullError,
    TaskManagerRateLimitError,
    TaskManagerServerError,
    TaskManagerUnavailableError,
    TaskManagerValidationError,
    error_from_response,
    parse_retry_after,
)
from taskmanager.client.models import TaskPage
from taskmanager.client.paging import TaskPager
from taskmanager.client.protocol import Call, Done, Lease, Leases, Request, Response, Retry, encode
from taskmanager.errors import STATUS_BY_CODE


def core(**options: Any) -> ClientCore:
    config = TaskManagerConfig("http://x", "k", worker_id="w", **options).resolved()
    return ClientCore(config, rng=random.Random(1))


def answer(status: int, body: Any, **headers: str) -> Response:
    return Response(status, {k.replace("_", "-"): v for k, v in headers.items()}, json.dumps(body).encode())


def failure(code: str, status: int = 400) -> Response:
    return answer(status, {"success": False, "error": code, "message": code, "code": code, "timestamp": 1})


def test_server_root_and_database_urls() -> None:
    for given in ("http://h:8000", "http://h:8000/", "http://h:8000/api", "http://h:8000/api/"):
        assert server_root(given) == "http://h:8000"
    assert is_database_url("sqlite:///local.db")
    assert is_database_url("postgresql+asyncpg://u@h/db")
    assert is_database_url("mysql://root@h/db")
    assert not is_database_url("http://h")
    assert not is_database_url("local.db")
    assert TaskManagerConfig("sqlite:///x.db").resolved().embedded


def test_config_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="timeout"):
        TaskManagerConfig(timeout=0)
    with pytest.raises(ValueError, match="retry_attempts"):
        TaskManagerConfig(retry_attempts=-1)


def test_backoff_is_1_2_4_seconds_with_jitter_and_capped() -> None:
    config = TaskManagerConfig()
    rng = random.Random(7)
    for attempt, base in enumerate((1.0, 2.0, 4.0, 8.0)):
        delays = {config.backoff(attempt, rng) for _ in range(50)}
        assert all(base * 0.9 <= d <= base * 1.1 for d in delays)
        assert len(delays) > 1, "jittered"
    assert config.backoff(20, rng) <= config.retry_max_delay * 1.1


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        ("invalid_json", TaskManagerValidationError),
        ("validation_failed", TaskManagerValidationError),
        ("payload_too_large", TaskManagerValidationError),
        ("unauthorized", TaskManagerAuthError),
        ("forbidden", TaskManagerForbiddenError),
        ("not_found", TaskManagerNotFoundError),
        ("no_tasks", TaskManagerNotFoundError),
        ("conflict", TaskManagerConflictError),
        ("lease_lost", LeaseLostError),
        ("rate_limited", TaskManagerRateLimitError),
        ("queue_full", TaskManagerQueueFullError),
        ("unavailable", TaskManagerUnavailableError),
        ("internal", TaskManagerServerError),
    ],
)
def test_every_wire_code_has_its_class(code: str, cls: type[TaskManagerAPIError]) -> None:
    status = STATUS_BY_CODE[code]
    error = error_from_response(status, {"code": code, "message": "m", "error": "e", "details": ["a: b"]})
    assert type(error) is cls
    assert (error.status_code, error.error_code, error.message, error.error) == (status, code, "m", "e")
    assert error.details == ["a: b"]


def test_every_code_the_server_knows_is_mapped() -> None:
    for code, status in STATUS_BY_CODE.items():
        assert error_from_response(status, {"code": code, "message": "m"}).error_code == code


def test_an_answer_without_an_envelope_is_mapped_by_status() -> None:
    assert type(error_from_response(502, None)) is TaskManagerServerError
    assert type(error_from_response(404, "<html>")) is TaskManagerNotFoundError
    assert type(error_from_response(418, None)) is TaskManagerAPIError
    limited = error_from_response(429, None, {"retry-after": "3"})
    assert isinstance(limited, TaskManagerRateLimitError)
    assert limited.retry_after == 3
    assert limited.message == "HTTP 429 from the TaskManager server"


def test_retry_after_as_seconds_or_http_date() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("5") == 5
    assert parse_retry_after("Thu, 01 Jan 2026 12:00:30 GMT", now) == 30
    assert parse_retry_after("Thu, 01 Jan 2026 11:00:00 GMT", now) == 0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_settle_decodes_success_and_recovers_no_tasks() -> None:
    c = core()
    assert c.claim_task().request.idempotent is False
    nothing = c.settle(c.claim_task(), failure("no_tasks", 404), 0)
    assert nothing == Done(None)
    with pytest.raises(TaskManagerNotFoundError):
        c.settle(c.get_task(1), failure("not_found", 404), 0)


def test_retry_decisions() -> None:
    c = core(retry_attempts=2)
    read, claim = c.get_task(1), c.claim_task()
    busy = failure("unavailable", 503)
    assert isinstance(c.settle(read, busy, 0), Retry)
    assert isinstance(c.settle(read, busy, 1), Retry)
    with pytest.raises(TaskManagerUnavailableError):
        c.settle(read, busy, 2)
    with pytest.raises(TaskManagerUnavailableError):
        c.settle(claim, busy, 0)
    refused = TaskManagerConnectionError("refused", request_sent=False)
    broken = TaskManagerConnectionError("reset", request_sent=True)
    assert isinstance(c.settle(claim, refused, 0), Retry)
    with pytest.raises(TaskManagerConnectionError):
        c.settle(claim, broken, 0)
    assert isinstance(c.settle(read, broken, 0), Retry)
    limited = answer(429, {"success": False, "code": "rate_limited", "message": "m"}, retry_after="2")
    assert c.settle(claim, limited, 0) == Retry(2.0)
    with pytest.raises(TaskManagerQueueFullError):
        c.settle(read, failure("queue_full", 429), 0)
    asked = answer(503, {"success": False, "code": "unavailable", "message": "m"}, retry_after="10")
    assert c.settle(read, asked, 0) == Retry(10.0), "Retry-After wins when longer than the backoff"
    with pytest.raises(TaskManagerValidationError):
        c.settle(read, failure("validation_failed"), 0)


def test_which_requests_are_safe_to_repeat() -> None:
    c = core()
    assert c.create_task("t", {}).request.idempotent
    assert c.create_tasks([]).request.idempotent
    assert c.register_task_type("t", "1", {"type": "object"}).request.idempotent
    assert c.heartbeat(1).request.idempotent
    assert not c.complete_task(1).request.idempotent, "no lease token: not safe"
    assert c.complete_task(1, lease_token="tok").request.idempotent
    assert not c.cancel_task(1).request.idempotent
    assert not c.retry_task(1).request.idempotent


def test_a_claim_remembers_the_lease_and_a_complete_uses_then_forgets_it() -> None:
    c = core()
    claimed = {
        "tasks": [
            task_data(5, claimed_by="w", lease_token="tok-5"),
            task_data(6, claimed_by="w", lease_token="tok-6"),
        ],
        "count": 2,
    }
    c.settle(c.claim_tasks(limit=2), answer(200, {"success": True, "data": claimed}), 0)
    complete = c.complete_task(5, {"ok": 1})
    assert complete.request.content is not None
    sent = json.loads(complete.request.content)
    assert sent == {"worker_id": "w", "lease_token": "tok-5", "success": True, "result": {"ok": 1}}
    done = {"id": 5, "status": "completed", "message": "m", "attempts": 1, "run_after": None}
    c.settle(complete, answer(200, {"success": True, "data": done}), 0)
    assert c.leases.get(5) is None
    assert "lease_token" not in json.loads(c.complete_task(5).request.content or b"")
    other = c.complete_task(6, worker_id="someone-else")
    assert "lease_token" not in json.loads(other.request.content or b""), "not that worker's lease"
    with pytest.raises(LeaseLostError):
        c.settle(c.complete_task(6), failure("lease_lost", 409), 0)
    assert c.leases.get(6) is None, "a refused complete ends the attempt"


def task_data(task_id: int, **fields: Any) -> dict[str, Any]:
    now = "2026-01-01T12:00:00.000000Z"
    return {
        "id": task_id,
        "type": "t",
        "type_id": 1,
        "status": "claimed",
        "params": {},
        "error_message": None,
        "priority": 0,
        "progress": 0,
        "attempts": 1,
        "max_attempts": 3,
        "claimed_by": None,
        "claimed_at": now,
        "lease_expires_at": now,
        "completed_at": None,
        "run_after": None,
        "expires_at": None,
        "assigned_to": None,
        "created_at": now,
        "updated_at": now,
        "dedupe_key": "k",
        **fields,
    }


def test_encode_writes_datetimes_as_utc_and_refuses_what_json_cannot_hold() -> None:
    when = datetime(2026, 1, 1, 13, 0, tzinfo=UTC)
    assert encode({"at": when}) == b'{"at":"2026-01-01T13:00:00Z"}'
    with pytest.raises(ValueError, match="JSON"):
        encode({"x": float("nan")})
    with pytest.raises(TypeError):
        encode({"x": object()})


def test_the_pager_stops_at_the_limit_and_at_the_end() -> None:
    asked: list[tuple[int, int]] = []

    def page(offset: int, size: int) -> Call[TaskPage]:
        asked.append((offset, size))
        return Call(Request("GET", "/tasks"), TaskPage.model_validate)

    def result(count: int, total: int, limit: int) -> TaskPage:
        tasks = [task_data(n) for n in range(count)]
        return TaskPage.model_validate(
            {"tasks": tasks, "count": count, "total": total, "limit": limit, "offset": 0}
        )

    pager = TaskPager(page, page_size=10, limit=25)
    taken = 0
    while pager.next_call() is not None:
        taken += len(pager.take(result(10 if asked[-1][1] == 10 else 5, 100, asked[-1][1])))
    assert taken == 25
    assert asked == [(0, 10), (10, 10), (20, 5)]

    asked.clear()
    pager = TaskPager(page, page_size=10)
    assert pager.next_call() is not None
    assert len(pager.take(result(4, 4, 10))) == 4
    assert pager.next_call() is None, "a short page is the last"
    with pytest.raises(ValueError, match="page_size"):
        TaskPager(page, page_size=0)


def test_a_complete_with_an_older_lease_does_not_forget_the_newer_one() -> None:
    leases = Leases()
    leases.remember(7, Lease("b", "token-b"))
    leases.forget(7, "token-a")  # the refused complete was sent with a's expired lease
    assert leases.get(7) == Lease("b", "token-b")
    leases.forget(7, "token-b")
    assert leases.get(7) is None
