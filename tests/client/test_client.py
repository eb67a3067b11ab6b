"""The client's methods, the same cases over the sync, async and both embedded clients, against a
real server (or engine) on every database."""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Any

import pytest

from taskmanager import (
    APIError,
    AuthenticationError,
    LeaseLostError,
    RateLimitError,
    ResourceNotFoundError,
    Task,
    TaskManagerAPIError,
    TaskManagerAuthError,
    TaskManagerError,
    TaskManagerForbiddenError,
    TaskManagerNotFoundError,
    TaskManagerQueueFullError,
    TaskManagerRateLimitError,
    TaskManagerValidationError,
    TaskType,
    ValidationError,
    errors,
)
from tests.client.conftest import WORKER, ClientFactory
from tests.conftest import START, Api

SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}


def setup_type(client: Any, name: str = "demo.echo", **settings: Any) -> TaskType:
    registered: TaskType = client.register_task_type(name, "1.0.0", SCHEMA, **settings)
    return registered


# -- health and task types ----------------------------------------------------------------------


def test_health_check_reports_a_connected_database(client: Any) -> None:
    health = client.health_check()
    assert health.status == "healthy"
    assert health["database"] == "connected"
    assert health.version


def test_register_get_and_list_task_types(client: Any) -> None:
    created = setup_type(client, max_attempts=5, claim_timeout=60, description="echoes")
    assert isinstance(created, TaskType)
    assert created.created is True
    assert (created.name, created.version, created.max_attempts, created.claim_timeout) == (
        "demo.echo",
        "1.0.0",
        5,
        60,
    )
    assert created.created_at == START
    assert created["param_schema"] == SCHEMA

    updated = client.register_task_type("demo.echo", "2.0.0", {"type": "object"})
    assert updated.updated is True
    assert updated.id == created.id
    assert updated.max_attempts == 5, "settings left out keep their value"

    setup_type(client, "PrismQ.Script.Generate")
    assert client.get_task_type("PrismQ.Script.Generate").name == "PrismQ.Script.Generate"
    names = [t.name for t in client.list_task_types()]
    assert names == ["PrismQ.Script.Generate", "demo.echo"]

    client.deactivate_task_type("demo.echo")
    assert [t.name for t in client.list_task_types(active_only=True)] == ["PrismQ.Script.Generate"]


def test_an_unknown_type_is_not_found(client: Any) -> None:
    with pytest.raises(TaskManagerNotFoundError) as caught:
        client.get_task_type("nope")
    error = caught.value
    assert error.status_code == 404
    assert error.error_code == "not_found"
    assert error.message == "Task type not found"
    assert error.response_data["success"] is False
    assert isinstance(error, ResourceNotFoundError)
    assert isinstance(error, errors.TaskManagerError)


def test_a_bad_schema_is_a_validation_error_with_details(client: Any) -> None:
    with pytest.raises(TaskManagerValidationError) as caught:
        client.register_task_type("bad", "1", {"properties": {}})
    assert caught.value.message == 'JSON schema must have a "type" property'
    with pytest.raises(ValidationError, match="Missing required field: version"):
        client.register_task_type("bad", "", {"type": "object"})


# -- creating and reading -----------------------------------------------------------------------


def test_create_task_and_its_duplicate(client: Any) -> None:
    setup_type(client)
    first = client.create_task("demo.echo", {"n": 1}, priority=5)
    assert first.duplicate is False
    assert first["status"] == "pending"
    assert first["priority"] == 5
    assert first.get("params") == {"n": 1}, "a new task's fields are all there, by key"
    again = client.create_task("demo.echo", {"n": 1})
    assert (again.duplicate, again.id, again["deduplicated"]) == (True, first.id, True)
    assert again.dedupe_key == first.dedupe_key


def test_create_task_options_reach_the_server(client: Any, api: Api) -> None:
    setup_type(client)
    later = START + timedelta(hours=1)
    created = client.create_task(
        "demo.echo", {"n": 2}, dedupe_key="mine", max_attempts=7, run_at=later, assigned_to="w9"
    )
    task = client.get_task(created.id)
    assert (task.dedupe_key, task.max_attempts, task.run_after, task.assigned_to) == (
        "mine",
        7,
        later,
        "w9",
    )


def test_create_task_depends_on(client: Any) -> None:
    setup_type(client)
    first = client.create_task("demo.echo", {"n": 1})
    waiting = client.create_task("demo.echo", {"n": 2}, depends_on=[first.id])
    task = client.get_task(waiting.id)
    assert (task.depends_on, task.blocked) == ([first.id], True)
    assert (client.get_task(first.id).depends_on, client.get_task(first.id).blocked) == ([], False)


def test_create_errors_map_to_their_classes(client: Any) -> None:
    with pytest.raises(TaskManagerNotFoundError, match="Task type not found"):
        client.create_task("missing", {"n": 1})
    setup_type(client)
    with pytest.raises(TaskManagerValidationError) as caught:
        client.create_task("demo.echo", {"n": "one"})
    assert caught.value.message.startswith("Parameter validation failed")
    assert caught.value.details
    assert "n" in caught.value.details[0]


def test_a_full_queue_is_a_rate_limit_error_that_is_not_retried(client: Any) -> None:
    setup_type(client, max_pending=1)
    client.create_task("demo.echo", {"n": 1})
    with pytest.raises(TaskManagerQueueFullError) as caught:
        client.create_task("demo.echo", {"n": 2})
    assert isinstance(caught.value, RateLimitError)
    assert caught.value.status_code == 429
    assert caught.value.error_code == "queue_full"


def test_create_tasks_in_a_batch(client: Any) -> None:
    setup_type(client)
    result = client.create_tasks(
        [
            {"type": "demo.echo", "params": {"n": 1}},
            {"type": "demo.echo", "params": {"n": 1}},
            {"type": "demo.echo", "params": {"n": "x"}},
        ]
    )
    assert (result.created, result.duplicates, result.failed) == (1, 1, 1)
    assert result.results[1]["duplicate"] is True
    assert result.results[2].error
    assert result.results[2].id is None


def test_get_task_gives_typed_fields_and_dict_access(client: Any) -> None:
    setup_type(client)
    created = client.create_task("demo.echo", {"n": 3})
    task = client.get_task(created.id)
    assert isinstance(task, Task)
    assert task.created_at == START, "timestamps are parsed, aware UTC datetimes"
    assert task["id"] == task.id == created.id
    assert task["params"]["n"] == 3
    assert task.get("result") is None
    assert task.get("no such field", "fallback") == "fallback"
    assert "params" in task
    assert "nope" not in task
    with pytest.raises(KeyError):
        task["nope"]
    assert task.to_dict()["created_at"].startswith("2026-01-01T12:00:00")
    assert client.get_task_status(created.id).status == "pending"
    with pytest.raises(TaskManagerNotFoundError, match="Task not found"):
        client.get_task(99999)


def test_list_tasks_walks_the_pages_lazily(client: Any) -> None:
    setup_type(client)
    client.create_tasks([{"type": "demo.echo", "params": {"n": n}} for n in range(25)])
    listing = client.list_tasks(page_size=10)
    first = next(listing)
    assert first.params == {"n": 24}, "newest first"
    rest = list(listing)
    assert [t.params["n"] for t in [first, *rest]] == list(range(24, -1, -1))
    assert [t.params["n"] for t in client.list_tasks(page_size=10, limit=15)] == list(range(24, 9, -1))
    assert len(list(itertools.islice(client.list_tasks(page_size=3), 4))) == 4
    claimed = client.claim_task("demo.echo")
    assert [t.id for t in client.list_tasks(["claimed", "completed"])] == [claimed.id]
    assert [t.id for t in client.list_tasks("claimed", worker_id=WORKER)] == [claimed.id]
    assert len(list(client.list_tasks(task_type="demo.%"))) == 25
    page = client.list_tasks_page(limit=5, offset=20)
    assert (page.count, page.total, page.offset) == (5, 25, 20)


def test_history_lists_the_events(client: Any) -> None:
    setup_type(client)
    created = client.create_task("demo.echo", {"n": 1})
    client.claim_task("demo.echo")
    client.complete_task(created.id, {"ok": True})
    events = client.get_task_history(created.id)
    assert [e.event for e in events] == ["created", "claimed", "completed"]
    assert events[1]["worker_id"] == WORKER
    assert events[0].created_at == START


def test_stats_and_workers(client: Any) -> None:
    setup_type(client)
    created = client.create_task("demo.echo", {"n": 1})
    client.create_task("demo.echo", {"n": 2})
    client.claim_task("demo.echo")
    client.complete_task(created.id, {"ok": True})
    stats = client.stats()
    assert stats.by_status["completed"] == stats["by_status"]["completed"] == 1
    (line,) = stats.by_type
    assert (line.type, line["pending"], line.completed_last_hour) == ("demo.echo", 1, 1)
    assert len(stats.throughput) == 60
    assert stats.throughput[-1].completed == 1
    (worker,) = client.workers()
    assert (worker.worker_id, worker["completed"], worker.claimed) == (WORKER, 1, 0)
    assert worker.last_seen_at == START


# -- claiming and reporting ---------------------------------------------------------------------


def test_claim_returns_none_when_nothing_is_claimable(client: Any) -> None:
    setup_type(client)
    assert client.claim_task() is None
    assert client.claim_task("demo.echo") is None
    assert client.claim_tasks(limit=5) == []


def test_claim_and_complete_with_the_remembered_lease(client: Any, api: Api) -> None:
    setup_type(client)
    created = client.create_task("demo.echo", {"n": 1})
    task = client.claim_task("demo.echo")
    assert task is not None
    assert (task.id, task.claimed_by, task.attempts) == (created.id, WORKER, 1)
    assert task.lease_token
    done = client.complete_task(task.id, {"answer": 42})
    assert (done.status, done.attempts) == ("completed", 1)
    stored = client.get_task(task.id)
    assert stored.result == {"answer": 42}
    history = api.get(f"/api/tasks/{task.id}/history").json()["data"]["events"]
    assert history[-1]["worker_id"] == WORKER


def test_the_remembered_lease_token_is_sent(client: Any, api: Api) -> None:
    """The lease expires and the same worker id claims the task again: a complete from the first
    attempt carries the old token, so it is refused instead of finishing the new attempt."""
    setup_type(client, claim_timeout=30)
    client.create_task("demo.echo", {"n": 1})
    first = client.claim_task("demo.echo")
    api.clock.advance(31)
    second = api.post("/api/tasks/claim", json={"worker_id": WORKER}).json()["data"]
    assert second["id"] == first.id
    assert second["lease_token"] != first.lease_token
    with pytest.raises(LeaseLostError) as caught:
        client.complete_task(first.id, {"late": True})
    assert caught.value.status_code == 409
    assert caught.value.error_code == "lease_lost"
    assert client.get_task(first.id).status == "claimed", "the new attempt is untouched"


def test_claim_by_type_id_list_and_batch(client: Any) -> None:
    demo = setup_type(client)
    other = setup_type(client, "demo.other")
    client.create_tasks([{"type": "demo.echo", "params": {"n": n}} for n in range(3)])
    client.create_task("demo.other", {"n": 9})
    assert client.claim_task(other.id).type == "demo.other"
    batch = client.claim_tasks(["demo.echo"], limit=2)
    assert [t.type for t in batch] == ["demo.echo", "demo.echo"]
    assert all(t.lease_token for t in batch)
    assert client.claim_tasks([demo.id], limit=5, worker_id="someone-else")[0].claimed_by == "someone-else"
    for task in batch:
        assert client.complete_task(task.id).status == "completed"


def test_complete_tasks_reports_many_outcomes_in_one_request(client: Any, api: Api) -> None:
    setup_type(client, max_attempts=2, retry_delay=0)
    for n in range(4):
        client.create_task("demo.echo", {"n": n})
    first = client.claim_task(lease_seconds=10)
    second, third, fourth = client.claim_tasks(limit=3)
    api.clock.advance(11)  # the first lease expires and another worker claims that task again
    assert api.post("/api/tasks/claim", json={"worker_id": "other"}).json()["data"]["id"] == first.id
    outcomes = client.complete_tasks(
        [
            {"id": second.id, "result": {"ok": 2}},
            {"id": third.id, "status": "failed", "error": "boom"},
            {"id": first.id, "success": True},
            {"id": 999_999, "success": True},
        ]
    )
    assert [(o.id, o.status, o.code) for o in outcomes] == [
        (second.id, "completed", None),
        (third.id, "pending (retry)", None),
        (first.id, None, "lease_lost"),
        (999_999, None, "not_found"),
    ]
    assert outcomes[2]["error"] == "Lease lost"
    assert client.get_task(second.id).result == {"ok": 2}
    assert client.get_task(third.id).error_message == "boom"
    assert client.get_task(first.id).claimed_by == "other", "the other worker's attempt is untouched"
    # The remembered leases of settled items are forgotten; the unreported task's is kept.
    assert client.core.leases.get(second.id) is None
    assert client.core.leases.get(fourth.id) is not None
    assert client.complete_tasks([{"id": fourth.id}])[0].status == "completed"


def test_complete_tasks_refuses_bad_batches_before_sending(client: Any) -> None:
    with pytest.raises(ValueError, match="1 to 1000"):
        client.complete_tasks([])
    with pytest.raises(ValueError, match="status must be"):
        client.complete_tasks([{"id": 1, "status": "done"}])


def test_fail_task_retries_then_fails(client: Any) -> None:
    setup_type(client, max_attempts=2, retry_delay=0)
    created = client.create_task("demo.echo", {"n": 1})
    client.claim_task()
    first = client.fail_task(created.id, "boom 1")
    assert first.status == "pending (retry)"
    client.claim_task()
    second = client.complete_task(created.id, status="failed", error="boom 2")
    assert second.status == "failed"
    task = client.get_task(created.id)
    assert (task.status, task.error_message, task.attempts) == ("failed", "boom 2", 2)
    with pytest.raises(ValueError, match="status must be"):
        client.complete_task(created.id, status="done")


def test_progress_and_heartbeat_extend_the_lease(client: Any, api: Api) -> None:
    setup_type(client, claim_timeout=60)
    client.create_task("demo.echo", {"n": 1})
    task = client.claim_task()
    api.clock.advance(30)
    progress = client.report_progress(task.id, 40, "reading")
    assert progress.progress == 40
    assert progress.lease_expires_at == START + timedelta(seconds=90)
    beat = client.heartbeat(task.id, lease_seconds=120)
    assert beat.lease_expires_at == START + timedelta(seconds=150)
    assert beat.cancel_requested is False
    assert client.get_task(task.id).progress == 40


def test_a_cancelled_task_shows_on_the_heartbeat_and_refuses_the_complete(client: Any) -> None:
    setup_type(client)
    client.create_task("demo.echo", {"n": 1})
    task = client.claim_task()
    cancelled = client.cancel_task(task.id, "not needed")
    assert (cancelled.status, cancelled.error_message) == ("cancelled", "not needed")
    assert client.heartbeat(task.id).cancel_requested is True
    with pytest.raises(LeaseLostError):
        client.complete_task(task.id, {"ok": True})
    with pytest.raises(TaskManagerValidationError, match="cannot be cancelled"):
        client.cancel_task(task.id)
    retried = client.retry_task(task.id)
    assert (retried.status, retried.attempts) == ("pending", 0)


def test_another_workers_task_is_forbidden(client: Any, api: Api) -> None:
    setup_type(client)
    client.create_task("demo.echo", {"n": 1})
    theirs = api.post("/api/tasks/claim", json={"worker_id": "someone-else"}).json()["data"]
    with pytest.raises(TaskManagerForbiddenError) as caught:
        client.complete_task(theirs["id"], {"mine": True})
    assert caught.value.status_code == 403
    assert caught.value.message == "Task is claimed by another worker"


def test_a_bad_claim_is_a_validation_error(client: Any) -> None:
    with pytest.raises(TaskManagerValidationError, match="Invalid sort_by field"):
        client.claim_task(sort_by="name")


def test_delete_task(client: Any) -> None:
    setup_type(client)
    created = client.create_task("demo.echo", {"n": 1})
    assert client.delete_task(created.id) is True
    with pytest.raises(TaskManagerNotFoundError):
        client.get_task(created.id)


def test_bulk_actions_by_filter(client: Any) -> None:
    setup_type(client)
    ids = [client.create_task("demo.echo", {"n": n}).id for n in range(3)]
    cancelled = client.bulk("cancel", type="demo.echo", created_before=START + timedelta(seconds=1))
    assert (cancelled.matched, cancelled["changed"]) == (3, 3)
    assert client.bulk("retry", ids=ids[:2]).changed == 2
    assert [client.get_task(i).status for i in ids] == ["pending", "pending", "cancelled"]
    assert client.bulk("delete", status="cancelled").changed == 1
    with pytest.raises(TaskManagerNotFoundError):
        client.get_task(ids[2])
    with pytest.raises(TaskManagerValidationError):
        client.bulk("cancel")


# -- the exception tree -------------------------------------------------------------------------


def test_prismq_names_are_the_same_classes() -> None:
    assert APIError is TaskManagerAPIError
    assert AuthenticationError is TaskManagerAuthError
    assert ValidationError is TaskManagerValidationError
    assert ResourceNotFoundError is TaskManagerNotFoundError
    assert RateLimitError is TaskManagerRateLimitError
    assert TaskManagerError is errors.TaskManagerError
    for cls in (TaskManagerAPIError, LeaseLostError, TaskManagerQueueFullError):
        assert issubclass(cls, TaskManagerError)


def test_errors_are_the_same_from_every_kind_of_client(make: ClientFactory) -> None:
    client = make()
    with pytest.raises(TaskManagerNotFoundError) as caught:
        client.retry_task(12345)
    assert repr(caught.value) == "TaskManagerNotFoundError(404, 'Task not found', code='not_found')"


def test_save_list_get_and_delete_schedules(client: Any) -> None:
    setup_type(client)
    saved = client.save_schedule(
        "nightly", "demo.echo", cron="0 3 * * *", params={"n": 1}, timezone="Europe/Prague"
    )
    assert saved.created is True
    assert (saved.name, saved.type, saved.cron, saved.interval_seconds) == (
        "nightly",
        "demo.echo",
        "0 3 * * *",
        None,
    )
    again = client.save_schedule("nightly", "demo.echo", interval_seconds=60, params={"n": 1}, priority=2)
    assert again.created is False
    assert (again.cron, again.interval_seconds, again["params"]) == (None, 60, {"n": 1})
    assert [s.name for s in client.list_schedules()] == ["nightly"]
    assert client.get_schedule("nightly").priority == 2
    assert client.delete_schedule("nightly") is True
    assert client.list_schedules() == []
    with pytest.raises(TaskManagerNotFoundError):
        client.get_schedule("nightly")
    with pytest.raises(TaskManagerValidationError):
        client.save_schedule("bad", "demo.echo", cron="nope")
