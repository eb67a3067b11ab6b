"""The routes of the API (docs/reference/api.md), each declared once in `ROUTES`: its handler
parses what the route's declaration does not (path values), makes one engine call and returns the
engine's reply."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field
from starlette.responses import Response

from taskmanager import models
from taskmanager.engine import scope as type_scope
from taskmanager.engine.keys import ADMIN
from taskmanager.engine.observe import FeedFilter
from taskmanager.engine.service import Reply
from taskmanager.engine.waiting import DEFAULT_WAIT_SECONDS, MAX_WAIT_SECONDS
from taskmanager.server.body import MAX_ID, check_text, flag, task_id
from taskmanager.server.events import EVENT_STREAM, event_stream
from taskmanager.server.key_routes import KEY_ROUTES
from taskmanager.server.metrics import TEXT_FORMAT
from taskmanager.server.table import Call, QueryParam, Route

REGISTER_MISSING = "Missing required field: {}"

# -- health ---------------------------------------------------------------------------------


async def health(call: Call[None]) -> Reply:
    """Probe the database: 200 when it answers, 503 `unavailable` when it does not."""
    return await call.engine.health()


# -- task types -----------------------------------------------------------------------------


async def register_type(call: Call[models.RegisterTaskType]) -> Reply:
    """Register a task type, or replace the version and schema of an existing one."""
    return await call.engine.register_type(call.body)


async def list_types(call: Call[None]) -> Reply:
    """All task types, sorted by name."""
    return await call.engine.list_types(flag(call.query["active_only"]))


async def get_type(call: Call[None]) -> Reply:
    """One task type by name (names may contain dots)."""
    return await call.engine.get_type(check_text("name", call.path("name")))


async def deactivate_type(call: Call[None]) -> Reply:
    """Pause a type: its tasks stay but are not claimed until it is registered again."""
    return await call.engine.deactivate_type(check_text("name", call.path("name")))


# -- tasks: create and read -----------------------------------------------------------------


async def create_task(call: Call[models.CreateTask]) -> Reply:
    """Create a task; an identical one (same dedupe key) is returned instead of a new one."""
    return await call.engine.create_task(call.body)


async def create_tasks(call: Call[models.CreateTasksBatch]) -> Reply:
    """Create up to 1000 tasks in one transaction; each item succeeds or fails on its own."""
    return await call.engine.create_tasks(call.body)


async def claim(call: Call[models.ClaimTasks]) -> Reply:
    """Claim the next task (or up to `limit` tasks) under a lease."""
    return await call.engine.claim(call.body, gone=call.request.is_disconnected)


async def complete_batch(call: Call[models.CompleteBatch]) -> Reply:
    """Complete up to 1000 claimed tasks in one request; each item is judged on its own."""
    return await call.engine.complete_batch(call.body)


async def list_tasks(call: Call[None]) -> Reply:
    """Tasks, newest first."""
    q: dict[str, Any] = dict(call.query)
    for name in ("status", "type", "worker_id"):
        check_text(name, q[name] or "")
    return await call.engine.list_tasks(
        status=q["status"], type=q["type"], worker_id=q["worker_id"], limit=q["limit"], offset=q["offset"]
    )


async def get_task(call: Call[None]) -> Reply:
    """One task."""
    return await call.engine.get_task(task_id(call.path("id")))


async def wait_task(call: Call[None]) -> Reply:
    """Hold the request until the task is terminal (at once if it is), or `timeout` seconds;
    `data` is the task with `done`. Not counted against the server's request cap."""
    return await call.engine.wait(
        task_id(call.path("id")), call.query["timeout"], gone=call.request.is_disconnected
    )


async def history(call: Call[None]) -> Reply:
    """The task's audit trail, oldest first."""
    return await call.engine.history(task_id(call.path("id")))


# -- tasks: worker reports ------------------------------------------------------------------


async def complete(call: Call[models.CompleteTask]) -> Reply:
    """Report the outcome of the worker's attempt."""
    return await call.engine.complete(task_id(call.path("id")), call.body)


async def progress(call: Call[models.ReportProgress]) -> Reply:
    """Report progress (0-100); also extends the lease."""
    return await call.engine.progress(task_id(call.path("id")), call.body)


async def heartbeat(call: Call[models.Heartbeat]) -> Reply:
    """Extend the lease; says whether the task was cancelled meanwhile."""
    return await call.engine.heartbeat(task_id(call.path("id")), call.body)


# -- tasks: operator actions ----------------------------------------------------------------


async def cancel(call: Call[models.CancelTask]) -> Reply:
    """Cancel a pending or claimed task."""
    return await call.engine.cancel(task_id(call.path("id")), call.body)


async def retry(call: Call[None]) -> Reply:
    """Send a failed or cancelled task back to pending with its attempts reset."""
    return await call.engine.retry(task_id(call.path("id")))


async def bulk(call: Call[models.BulkAction]) -> Reply:
    """Cancel, retry or (with an admin key) delete every task a filter matches, in batches."""
    if call.body.action == "delete":
        await call.services.auth.require(call.request, ADMIN)
    return await call.engine.bulk(call.body)


async def delete(call: Call[None]) -> Reply:
    """Remove a task and its history (admin)."""
    return await call.engine.delete(task_id(call.path("id")))


# -- observing ------------------------------------------------------------------------------


async def stats(call: Call[None]) -> Reply:
    """Counts per status and per type, the oldest pending task's age, the last hour's throughput
    (read from indexes: fast on millions of tasks)."""
    return await call.engine.stats()


async def workers(call: Call[None]) -> Reply:
    """Every worker seen in the last 24 hours: tasks held now, completed, failed, last seen."""
    return await call.engine.workers()


async def events(call: Call[None]) -> Response:
    """A live stream (Server-Sent Events) of task state changes from every server process;
    resumes after `Last-Event-ID`; a comment line every 15 s keeps proxies from closing it."""
    q = call.query
    resume = call.request.headers.get("last-event-id", "").strip()
    after = int(resume) if resume.isdigit() and int(resume) <= MAX_ID else None
    names = {n.strip() for n in (q["types"] or "").split(",") if n.strip()}
    # The key's type limit is read now: the stream runs after this request's context is gone.
    wanted = FeedFilter(frozenset(names) if names else None, q["task_id"], type_scope.current.get())
    services = call.services
    return event_stream(
        call.engine, after, wanted, services.feed, services.shutdown, services.metrics.streams
    )


async def metrics(call: Call[None]) -> Response:
    """Prometheus text: queue depth and oldest pending age from the database, claims,
    completions, failures and request latency counted by the server processes."""
    queue = (await call.engine.stats()).data
    return Response(call.services.metrics.render(queue), media_type=TEXT_FORMAT)


# -- schedules ------------------------------------------------------------------------------


async def save_schedule(call: Call[models.SaveScheduleBody]) -> Reply:
    """Create or update a periodic schedule by name: a task of its type at each tick, exactly
    one however many servers run."""
    return await call.engine.schedules.save(call.body)


async def list_schedules(call: Call[None]) -> Reply:
    """Every schedule, by name."""
    return await call.engine.schedules.list()


async def get_schedule(call: Call[None]) -> Reply:
    """One schedule by name."""
    return await call.engine.schedules.get(check_text("name", call.path("name")))


async def delete_schedule(call: Call[None]) -> Reply:
    """Delete a schedule: no more ticks (its tasks stay)."""
    return await call.engine.schedules.delete(check_text("name", call.path("name")))


# -- the table ------------------------------------------------------------------------------

TYPES, TASKS = ("Task Types",), ("Tasks",)
TYPE_NAME, TASK = "/api/task-types/{name:path}", "/api/tasks/{id}"
#: ``GET /tasks``'s query parameters (docs/reference/api.md, Reading tasks).
LIST_TASKS_QUERY = (
    QueryParam("status", str | None, description="One status or a comma list"),
    QueryParam("type", str | None, description="Type name; with % a LIKE pattern"),
    QueryParam("worker_id", str | None),
    QueryParam("limit", Annotated[int, Field(ge=1, le=1000)], 50),
    QueryParam("offset", Annotated[int, Field(ge=0, le=2**62)], 0),
)
OBSERVE = ("Observing",)
METRICS_PATH = "/api/metrics"
EVENTS_QUERY = (
    QueryParam("types", str | None, description="Only these types' events (comma list of names)"),
    QueryParam(
        "task_id", Annotated[int, Field(ge=1, le=MAX_ID)] | None, description="Only this task's events"
    ),
)
WAIT_QUERY = (
    QueryParam(
        "timeout",
        Annotated[float, Field(ge=0, le=MAX_WAIT_SECONDS)],
        DEFAULT_WAIT_SECONDS,
        description="Seconds to wait at most (0-60)",
    ),
)
SCHEDULES, SCHEDULE_NAME = ("Schedules",), "/api/schedules/{name:path}"
ACTIVE_ONLY = QueryParam("active_only", str | None, description="true or 1: active types only")

#: Every route of the API, in matching order: the first whose path and method match answers.
ROUTES: list[Route[Any]] = [
    Route(
        "GET",
        "/api/health",
        health,
        operation_id="healthCheck",
        tags=("Health",),
        scope=None,
        data=models.HealthData,
        errors=(503,),
    ),
    Route(
        "POST",
        "/api/task-types/register",
        register_type,
        operation_id="registerTaskType",
        tags=TYPES,
        scope="types:write",
        data=models.RegisterData,
        errors=(400, 401, 403, 413),
        body=models.RegisterTaskType,
        missing_message=REGISTER_MISSING,
    ),
    Route(
        "GET",
        "/api/task-types",
        list_types,
        operation_id="listTaskTypes",
        tags=TYPES,
        scope="types:read",
        data=models.TaskTypeList,
        errors=(401, 403),
        query=(ACTIVE_ONLY,),
    ),
    Route(
        "GET",
        TYPE_NAME,
        get_type,
        operation_id="getTaskType",
        tags=TYPES,
        scope="types:read",
        data=models.TaskTypeOut,
        errors=(401, 403, 404),
    ),
    Route(
        "DELETE",
        TYPE_NAME,
        deactivate_type,
        operation_id="deactivateTaskType",
        tags=TYPES,
        scope="types:write",
        data=models.TaskTypeOut,
        errors=(401, 403, 404),
    ),
    Route(
        "POST",
        "/api/tasks",
        create_task,
        operation_id="createTask",
        tags=TASKS,
        scope="tasks:write",
        data=models.CreatedTask,
        errors=(400, 401, 403, 404, 409, 413, 429),
        body=models.CreateTask,
    ),
    Route(
        "POST",
        "/api/tasks/batch",
        create_tasks,
        operation_id="createTasks",
        tags=TASKS,
        scope="tasks:write",
        data=models.BatchCreated,
        errors=(400, 401, 403, 409, 413),
        body=models.CreateTasksBatch,
    ),
    Route(
        "POST",
        "/api/tasks/claim",
        claim,
        operation_id="claimTask",
        tags=TASKS,
        scope="tasks:work",
        data=models.ClaimedTask | models.ClaimedTasks,
        errors=(400, 401, 403, 404, 413),
        body=models.ClaimTasks,
    ),
    Route(
        "POST",
        "/api/tasks/complete-batch",
        complete_batch,
        operation_id="completeTasks",
        tags=TASKS,
        scope="tasks:work",
        data=models.CompleteBatchResult,
        errors=(400, 401, 403, 413),
        body=models.CompleteBatch,
    ),
    Route(
        "GET",
        "/api/tasks",
        list_tasks,
        operation_id="listTasks",
        tags=TASKS,
        scope="tasks:read",
        data=models.TaskList,
        errors=(400, 401, 403),
        query=LIST_TASKS_QUERY,
    ),
    Route(
        "GET",
        TASK,
        get_task,
        operation_id="getTask",
        tags=TASKS,
        scope="tasks:read",
        data=models.TaskOut,
        errors=(401, 403, 404),
    ),
    Route(
        "GET",
        f"{TASK}/wait",
        wait_task,
        operation_id="waitForTask",
        tags=TASKS,
        scope="tasks:read",
        data=models.WaitedTask,
        errors=(400, 401, 403, 404),
        query=WAIT_QUERY,
    ),
    Route(
        "GET",
        f"{TASK}/history",
        history,
        operation_id="getTaskHistory",
        tags=TASKS,
        scope="tasks:read",
        data=models.TaskHistory,
        errors=(401, 403, 404),
    ),
    Route(
        "POST",
        f"{TASK}/complete",
        complete,
        operation_id="completeTask",
        tags=TASKS,
        scope="tasks:work",
        data=models.CompletedTask,
        errors=(400, 401, 403, 404, 409, 413),
        body=models.CompleteTask,
    ),
    Route(
        "POST",
        f"{TASK}/progress",
        progress,
        operation_id="reportProgress",
        tags=TASKS,
        scope="tasks:work",
        data=models.ProgressData,
        errors=(400, 401, 403, 404, 409, 413),
        body=models.ReportProgress,
    ),
    Route(
        "POST",
        f"{TASK}/heartbeat",
        heartbeat,
        operation_id="heartbeat",
        tags=TASKS,
        scope="tasks:work",
        data=models.HeartbeatData,
        errors=(400, 401, 403, 404, 409, 413),
        body=models.Heartbeat,
    ),
    Route(
        "POST",
        f"{TASK}/cancel",
        cancel,
        operation_id="cancelTask",
        tags=TASKS,
        scope="tasks:write",
        data=models.TaskOut,
        errors=(400, 401, 403, 404, 413),
        body=models.CancelTask,
        body_required=False,
    ),
    Route(
        "POST",
        f"{TASK}/retry",
        retry,
        operation_id="retryTask",
        tags=TASKS,
        scope="tasks:write",
        data=models.TaskOut,
        errors=(400, 401, 403, 404),
    ),
    Route(
        "POST",
        "/api/tasks/bulk",
        bulk,
        operation_id="bulkTasks",
        tags=TASKS,
        scope="tasks:write",
        data=models.BulkResult,
        errors=(400, 401, 403, 413),
        body=models.BulkAction,
    ),
    Route(
        "DELETE",
        TASK,
        delete,
        operation_id="deleteTask",
        tags=TASKS,
        scope=ADMIN,
        data=models.Deleted,
        errors=(401, 403, 404),
    ),
    Route(
        "GET",
        "/api/stats",
        stats,
        operation_id="getStats",
        tags=OBSERVE,
        scope="tasks:read",
        data=models.StatsData,
        errors=(401, 403),
    ),
    Route(
        "GET",
        "/api/workers",
        workers,
        operation_id="listWorkers",
        tags=OBSERVE,
        scope="tasks:read",
        data=models.WorkerList,
        errors=(401, 403),
    ),
    Route(
        "GET",
        "/api/events",
        events,
        operation_id="streamEvents",
        tags=OBSERVE,
        scope="tasks:read",
        data=None,
        errors=(400, 401, 403),
        query=EVENTS_QUERY,
        produces=EVENT_STREAM,
    ),
    Route(
        "GET",
        METRICS_PATH,
        metrics,
        operation_id="getMetrics",
        tags=OBSERVE,
        scope=ADMIN,
        data=None,
        errors=(401, 403),
        produces=TEXT_FORMAT,
    ),
    Route(
        "POST",
        "/api/schedules",
        save_schedule,
        operation_id="saveSchedule",
        tags=SCHEDULES,
        scope="types:write",
        data=models.SavedSchedule,
        errors=(400, 401, 403, 409, 413),
        body=models.SaveScheduleBody,
    ),
    Route(
        "GET",
        "/api/schedules",
        list_schedules,
        operation_id="listSchedules",
        tags=SCHEDULES,
        scope="types:read",
        data=models.ScheduleList,
        errors=(401, 403),
    ),
    Route(
        "GET",
        SCHEDULE_NAME,
        get_schedule,
        operation_id="getSchedule",
        tags=SCHEDULES,
        scope="types:read",
        data=models.ScheduleOut,
        errors=(401, 403, 404),
    ),
    Route(
        "DELETE",
        SCHEDULE_NAME,
        delete_schedule,
        operation_id="deleteSchedule",
        tags=SCHEDULES,
        scope="types:write",
        data=models.Deleted,
        errors=(401, 403, 404),
    ),
    *KEY_ROUTES,
]
