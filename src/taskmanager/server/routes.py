"""The routes of API.md: each parses its input, makes one engine call and wraps the answer."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from starlette.requests import Request
from starlette.responses import Response

from taskmanager import models
from taskmanager.engine.service import TaskService
from taskmanager.server.body import body, check_text, query_bool, task_id
from taskmanager.server.docs import request_body, responses
from taskmanager.server.envelope import ok

router = APIRouter(prefix="/api")
REGISTER_MISSING = "Missing required field: {}"
TYPE_NOT_FOUND = "Task type not found"


async def service(request: Request, scope: str | None) -> TaskService:
    """The engine, after checking the caller may use ``scope`` now (None: public route)."""
    state = request.app.state
    if scope is not None:
        await state.auth.check(request, scope)
    engine: TaskService = state.service
    return engine


# -- health ---------------------------------------------------------------------------------


@router.get(
    "/health",
    tags=["Health"],
    operation_id="healthCheck",
    openapi_extra={"security": []},
    responses=responses(models.HealthData, 503),
)
async def health(request: Request) -> Response:
    """Probe the database: 200 when it answers, 503 `unavailable` when it does not."""
    return ok(await (await service(request, None)).health())


# -- task types -----------------------------------------------------------------------------


@router.post(
    "/task-types/register",
    tags=["Task Types"],
    operation_id="registerTaskType",
    openapi_extra=request_body(models.RegisterTaskType),
    responses=responses(models.RegisterData, 400, 401, 403, 413),
)
async def register_type(request: Request) -> Response:
    """Register a task type, or replace the version and schema of an existing one."""
    engine = await service(request, "types:write")
    parsed = await body(request, models.RegisterTaskType, missing_message=REGISTER_MISSING)
    return ok(await engine.register_type(parsed))


@router.get(
    "/task-types",
    tags=["Task Types"],
    operation_id="listTaskTypes",
    responses=responses(models.TaskTypeList, 401, 403),
)
async def list_types(
    request: Request,
    active_only: Annotated[str | None, Query(description="true or 1: active types only")] = None,
) -> Response:
    """All task types, sorted by name."""
    engine = await service(request, "types:read")
    return ok(await engine.list_types(query_bool(request, "active_only")))


@router.get(
    "/task-types/{name:path}",
    tags=["Task Types"],
    operation_id="getTaskType",
    responses=responses(models.TaskTypeOut, 401, 403, 404),
)
async def get_type(request: Request, name: str) -> Response:
    """One task type by name (names may contain dots)."""
    engine = await service(request, "types:read")
    return ok(await engine.get_type(check_text("name", name)))


@router.delete(
    "/task-types/{name:path}",
    tags=["Task Types"],
    operation_id="deactivateTaskType",
    responses=responses(models.TaskTypeOut, 401, 403, 404),
)
async def deactivate_type(request: Request, name: str) -> Response:
    """Pause a type: its tasks stay but are not claimed until it is registered again."""
    engine = await service(request, "types:write")
    return ok(await engine.deactivate_type(check_text("name", name)))


# -- tasks: create and read -----------------------------------------------------------------


@router.post(
    "/tasks",
    tags=["Tasks"],
    operation_id="createTask",
    openapi_extra=request_body(models.CreateTask),
    responses=responses(models.CreatedTask, 400, 401, 403, 404, 413, 429),
)
async def create_task(request: Request) -> Response:
    """Create a task; an identical one (same dedupe key) is returned instead of a new one."""
    engine = await service(request, "tasks:write")
    return ok(await engine.create_task(await body(request, models.CreateTask)))


@router.post(
    "/tasks/batch",
    tags=["Tasks"],
    operation_id="createTasks",
    openapi_extra=request_body(models.CreateTasksBatch),
    responses=responses(models.BatchCreated, 400, 401, 403, 413),
)
async def create_tasks(request: Request) -> Response:
    """Create up to 1000 tasks in one transaction; each item succeeds or fails on its own."""
    engine = await service(request, "tasks:write")
    return ok(await engine.create_tasks(await body(request, models.CreateTasksBatch)))


@router.post(
    "/tasks/claim",
    tags=["Tasks"],
    operation_id="claimTask",
    openapi_extra=request_body(models.ClaimTasks),
    responses=responses(models.ClaimedTask | models.ClaimedTasks, 400, 401, 403, 404, 413),
)
async def claim(request: Request) -> Response:
    """Claim the next task (or up to `limit` tasks) under a lease."""
    engine = await service(request, "tasks:work")
    return ok(await engine.claim(await body(request, models.ClaimTasks), gone=request.is_disconnected))


@router.post(
    "/tasks/complete-batch",
    tags=["Tasks"],
    operation_id="completeTasks",
    openapi_extra=request_body(models.CompleteBatch),
    responses=responses(models.CompleteBatchResult, 400, 401, 403, 413),
)
async def complete_batch(request: Request) -> Response:
    """Complete up to 1000 claimed tasks in one request; each item is judged on its own."""
    engine = await service(request, "tasks:work")
    return ok(await engine.complete_batch(await body(request, models.CompleteBatch)))


@router.get(
    "/tasks",
    tags=["Tasks"],
    operation_id="listTasks",
    responses=responses(models.TaskList, 400, 401, 403),
)
async def list_tasks(
    request: Request,
    status: Annotated[str | None, Query(description="One status or a comma list")] = None,
    type: Annotated[str | None, Query(description="Type name; with % a LIKE pattern")] = None,
    worker_id: Annotated[str | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    offset: Annotated[int, Query(ge=0, le=2**62)] = 0,
) -> Response:
    """Tasks, newest first."""
    engine = await service(request, "tasks:read")
    for name, value in (("status", status), ("type", type), ("worker_id", worker_id)):
        check_text(name, value or "")
    return ok(
        await engine.list_tasks(status=status, type=type, worker_id=worker_id, limit=limit, offset=offset)
    )


@router.get(
    "/tasks/{id}",
    tags=["Tasks"],
    operation_id="getTask",
    responses=responses(models.TaskOut, 401, 403, 404),
)
async def get_task(request: Request, id: str) -> Response:
    """One task."""
    engine = await service(request, "tasks:read")
    return ok(await engine.get_task(task_id(id)))


@router.get(
    "/tasks/{id}/history",
    tags=["Tasks"],
    operation_id="getTaskHistory",
    responses=responses(models.TaskHistory, 401, 403, 404),
)
async def history(request: Request, id: str) -> Response:
    """The task's audit trail, oldest first."""
    engine = await service(request, "tasks:read")
    return ok(await engine.history(task_id(id)))


# -- tasks: worker reports ------------------------------------------------------------------


@router.post(
    "/tasks/{id}/complete",
    tags=["Tasks"],
    operation_id="completeTask",
    openapi_extra=request_body(models.CompleteTask),
    responses=responses(models.CompletedTask, 400, 401, 403, 404, 409, 413),
)
async def complete(request: Request, id: str) -> Response:
    """Report the outcome of the worker's attempt."""
    engine = await service(request, "tasks:work")
    return ok(await engine.complete(task_id(id), await body(request, models.CompleteTask)))


@router.post(
    "/tasks/{id}/progress",
    tags=["Tasks"],
    operation_id="reportProgress",
    openapi_extra=request_body(models.ReportProgress),
    responses=responses(models.ProgressData, 400, 401, 403, 404, 409, 413),
)
async def progress(request: Request, id: str) -> Response:
    """Report progress (0-100); also extends the lease."""
    engine = await service(request, "tasks:work")
    return ok(await engine.progress(task_id(id), await body(request, models.ReportProgress)))


@router.post(
    "/tasks/{id}/heartbeat",
    tags=["Tasks"],
    operation_id="heartbeat",
    openapi_extra=request_body(models.Heartbeat),
    responses=responses(models.HeartbeatData, 400, 401, 403, 404, 409, 413),
)
async def heartbeat(request: Request, id: str) -> Response:
    """Extend the lease; says whether the task was cancelled meanwhile."""
    engine = await service(request, "tasks:work")
    return ok(await engine.heartbeat(task_id(id), await body(request, models.Heartbeat)))


# -- tasks: operator actions ----------------------------------------------------------------


@router.post(
    "/tasks/{id}/cancel",
    tags=["Tasks"],
    operation_id="cancelTask",
    openapi_extra=request_body(models.CancelTask, required=False),
    responses=responses(models.TaskOut, 400, 401, 403, 404, 413),
)
async def cancel(request: Request, id: str) -> Response:
    """Cancel a pending or claimed task."""
    engine = await service(request, "tasks:write")
    parsed = await body(request, models.CancelTask, optional=True)
    return ok(await engine.cancel(task_id(id), parsed))


@router.post(
    "/tasks/{id}/retry",
    tags=["Tasks"],
    operation_id="retryTask",
    responses=responses(models.TaskOut, 400, 401, 403, 404),
)
async def retry(request: Request, id: str) -> Response:
    """Send a failed or cancelled task back to pending with its attempts reset."""
    engine = await service(request, "tasks:write")
    return ok(await engine.retry(task_id(id)))


@router.delete(
    "/tasks/{id}",
    tags=["Tasks"],
    operation_id="deleteTask",
    responses=responses(models.Deleted, 401, 403, 404),
)
async def delete(request: Request, id: str) -> Response:
    """Remove a task and its history (admin)."""
    engine = await service(request, "admin")
    return ok(await engine.delete(task_id(id)))
