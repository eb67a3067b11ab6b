"""Wire models shared by the server and the client: request bodies and response shapes. No I/O.

Request models are parsed with :func:`parse_body`, which turns pydantic's errors into the
messages of the API reference, docs/reference/api.md (``details`` entries of the form
``"<field>: <problem>"``).
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
)

from taskmanager.errors import ValidationFailed

#: Largest ``priority`` accepted: a 32-bit signed integer fits every database's INTEGER.
MAX_PRIORITY = 2**31 - 1
#: Most tasks one task may depend on (API.md B.5).
MAX_DEPENDS_ON = 100
#: Most tasks one claim may take.
MAX_CLAIM_LIMIT = 100
#: Longest long-poll a claim may ask for, in seconds.
MAX_CLAIM_WAIT = 60

#: Deepest nesting accepted in a body (and in a ``param_schema`` sent as a string, counted as if
#: it were in the body): deep enough for real params, shallow enough that no recursive validator
#: or encoder can run out of stack.
MAX_JSON_DEPTH = 64
_SURROGATE = re.compile("[\ud800-\udfff]")

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

Name = Annotated[StrictStr, Field(min_length=1, max_length=255)]
WorkerId = Annotated[StrictStr, Field(min_length=1, max_length=255)]
Seconds = Annotated[StrictInt | StrictFloat, Field(ge=0, le=10 * 365 * 86400)]
LeaseSeconds = Annotated[StrictInt, Field(ge=1, le=86400)]
Token = Annotated[StrictStr, Field(min_length=1, max_length=255)]
#: A database id: positive and within a 64-bit signed integer, so no driver can overflow on it.
DbId = Annotated[StrictInt, Field(ge=1, le=2**63 - 1)]


class _Body(BaseModel):
    """A request body: unknown fields are ignored so newer clients never break an older server."""

    model_config = ConfigDict(extra="ignore", frozen=True)


def check_text(name: str, value: str) -> str:
    """Refuse NUL characters (no database stores them in text, so they would be lost or fail) and
    lone UTF-16 surrogates (``"\\ud800"`` in JSON: no UTF-8 text can hold one)."""
    if "\x00" in value:
        raise ValidationFailed("Validation failed", details=[f"{name}: NUL characters are not allowed"])
    if _SURROGATE.search(value):
        raise ValidationFailed(
            "Validation failed", details=[f"{name}: lone surrogates are not valid Unicode"]
        )
    return value


def check_json(value: Any, where: str = "body", depth: int = 1) -> None:
    """Bound nesting depth and refuse NUL characters and non-finite numbers anywhere in decoded
    JSON (iteratively); ``value`` sits at ``depth`` (a body is 1), named ``where`` in details."""
    stack: list[tuple[Any, int, str]] = [(value, depth, where)]
    while stack:
        node, level, at = stack.pop()
        if level > MAX_JSON_DEPTH:
            raise ValidationFailed(
                "Validation failed", details=[f"{at}: nested deeper than {MAX_JSON_DEPTH} levels"]
            )
        if isinstance(node, str):
            check_text(at, node)
        elif isinstance(node, float) and not math.isfinite(node):
            raise ValidationFailed("Validation failed", details=[f"{at}: number out of range"])
        elif isinstance(node, dict):
            for key, item in node.items():
                check_text(at, key)
                stack.append((item, level + 1, key if at == "body" else f"{at}.{key}"))
        elif isinstance(node, list):
            stack.extend((item, level + 1, f"{at}[{i}]") for i, item in enumerate(node))


def _aware(value: datetime) -> datetime:
    """``value`` in UTC. A valid ISO 8601 time can fall outside years 1-9999 once converted
    (``9999-12-31T23:59:59-23:59``): a ValueError, so the field is named in a 400, not a 500."""
    try:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError:
        raise ValueError("out of range: must be within years 1-9999 in UTC") from None


#: A ``callback_url`` (B.5): its scheme and address are checked by the server (``server/webhooks.py``).
CallbackUrl = Annotated[StrictStr, Field(min_length=1, max_length=2048)]


class TypeSettings(_Body):
    """Part B.1 settings of a task type; on re-register, omitted settings keep their value."""

    max_attempts: Annotated[StrictInt, Field(ge=1, le=100)] | None = None
    claim_timeout: Annotated[StrictInt, Field(ge=1, le=86400)] | None = None
    retry_delay: Annotated[StrictInt | StrictFloat, Field(ge=0, le=86400)] | None = None
    retry_max_delay: Annotated[StrictInt | StrictFloat, Field(ge=0, le=30 * 86400)] | None = None
    dedupe: Literal["all", "active", "none"] | None = None
    max_pending: Annotated[StrictInt, Field(ge=1, le=2**31 - 1)] | None = None
    description: Annotated[StrictStr, Field(max_length=2000)] | None = None
    #: At most this many tasks of the type claimed under a live lease at once (B.9).
    max_running: Annotated[StrictInt, Field(ge=1, le=10000)] | None = None
    #: Seconds a completed / failed or cancelled task is kept (B.10); 0 = forever, null = default.
    keep_completed_seconds: Annotated[StrictInt, Field(ge=0, le=10 * 365 * 86400)] | None = None
    keep_failed_seconds: Annotated[StrictInt, Field(ge=0, le=10 * 365 * 86400)] | None = None
    #: Where the type's tasks are POSTed when they end, unless a create names its own (B.5).
    callback_url: CallbackUrl | None = None


class RegisterTaskType(TypeSettings):
    name: Name
    version: Annotated[StrictStr, Field(min_length=1, max_length=50)]
    param_schema: dict[str, Any] | StrictStr

    def schema_object(self) -> Any:
        """The schema as an object, decoding it if it was sent as a JSON string. A decoded schema
        meets the body's limits as if it had been sent as an object (body → param_schema: 2)."""
        if isinstance(self.param_schema, str):
            try:
                schema = json.loads(self.param_schema)
            except RecursionError:
                raise ValidationFailed(
                    "Validation failed",
                    details=[f"param_schema: nested deeper than {MAX_JSON_DEPTH} levels"],
                ) from None
            except ValueError:
                raise ValidationFailed("Invalid JSON schema format") from None
            check_json(schema, "param_schema", depth=2)
            return schema
        return self.param_schema


class CreateTask(_Body):
    type: Name
    params: dict[str, Any]
    priority: Annotated[StrictInt, Field(ge=-MAX_PRIORITY, le=MAX_PRIORITY)] = 0
    dedupe_key: Annotated[StrictStr, Field(min_length=1, max_length=255)] | None = None
    max_attempts: Annotated[StrictInt, Field(ge=1, le=100)] | None = None
    run_at: datetime | None = None
    delay_seconds: Seconds | None = None
    expires_at: datetime | None = None
    ttl_seconds: Annotated[StrictInt | StrictFloat, Field(gt=0, le=10 * 365 * 86400)] | None = None
    assigned_to: WorkerId | None = None
    #: Tasks that must complete before this one may be claimed (B.5).
    depends_on: Annotated[list[DbId], Field(max_length=MAX_DEPENDS_ON)] | None = None
    #: In a batch (``POST /tasks/batch``): earlier items of the same batch it depends on.
    depends_on_index: Annotated[list[StrictInt], Field(max_length=MAX_DEPENDS_ON)] | None = None
    #: Where the task is POSTed once it ends (B.5); None: its type's, if it has one.
    callback_url: CallbackUrl | None = None

    @field_validator("run_at", "expires_at", mode="before")
    @classmethod
    def _iso_text(cls, value: Any) -> Any:
        if value is not None and not isinstance(value, str):
            raise ValueError("must be an ISO 8601 date-time string")
        return value

    @field_validator("run_at", "expires_at")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        return None if value is None else _aware(value)


class SaveScheduleBody(_Body):
    """``POST /schedules`` (B.8): exactly one of ``cron`` and ``interval_seconds``."""

    name: Name
    type: Name
    cron: Annotated[StrictStr, Field(min_length=1, max_length=255)] | None = None
    interval_seconds: Annotated[StrictInt, Field(ge=1, le=10 * 365 * 86400)] | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    priority: Annotated[StrictInt, Field(ge=-MAX_PRIORITY, le=MAX_PRIORITY)] = 0
    timezone: Annotated[StrictStr, Field(min_length=1, max_length=64)] = "UTC"
    enabled: StrictBool = True


class CreateTasksBatch(_Body):
    tasks: Annotated[list[Any], Field(min_length=1, max_length=1000)]


SortBy = Literal["created_at", "priority", "id", "attempts"]


class ClaimTasks(_Body):
    """A claim refuses fields it does not know (API.md B.11): a misspelt filter (``task_type``,
    ``type_patern``) must never widen a claim to every type's work."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    worker_id: WorkerId
    task_type_id: DbId | None = None
    task_type_ids: Annotated[list[DbId], Field(min_length=1, max_length=1000)] | None = None
    types: Annotated[list[Name], Field(min_length=1, max_length=1000)] | None = None
    type_pattern: Annotated[StrictStr, Field(min_length=1, max_length=255)] | None = None
    sort_by: StrictStr | None = None
    sort_order: StrictStr | None = None
    lease_seconds: LeaseSeconds | None = None
    limit: Annotated[StrictInt, Field(ge=1, le=MAX_CLAIM_LIMIT)] | None = None
    #: Long-poll: hold the request up to this many seconds until a task becomes claimable.
    wait: Annotated[StrictInt | StrictFloat, Field(ge=0, le=MAX_CLAIM_WAIT)] | None = None


class CompleteTask(_Body):
    worker_id: WorkerId
    success: StrictBool
    result: Any = None
    error: Annotated[StrictStr, Field(max_length=65535)] | None = None
    lease_token: Token | None = None


class CompleteItem(_Body):
    id: DbId
    success: StrictBool
    result: Any = None
    error: Annotated[StrictStr, Field(max_length=65535)] | None = None
    lease_token: Token | None = None


class CompleteBatch(_Body):
    worker_id: WorkerId
    results: Annotated[list[CompleteItem], Field(min_length=1, max_length=1000)]


class ReportProgress(_Body):
    worker_id: WorkerId
    progress: Annotated[StrictInt, Field(ge=0, le=100)]
    message: Annotated[StrictStr, Field(max_length=2000)] | None = None
    lease_token: Token | None = None


class Heartbeat(_Body):
    worker_id: WorkerId
    lease_token: Token | None = None
    lease_seconds: LeaseSeconds | None = None


class CancelTask(_Body):
    reason: Annotated[StrictStr, Field(max_length=2000)] | None = None


class BulkFilter(_Body):
    """Which tasks a bulk action takes (all the fields it names must hold)."""

    ids: Annotated[list[DbId], Field(min_length=1, max_length=10000)] | None = None
    type: Name | None = None
    status: Literal["pending", "claimed", "completed", "failed", "cancelled"] | None = None
    created_before: datetime | None = None

    @field_validator("created_before", mode="before")
    @classmethod
    def _iso_text(cls, value: Any) -> Any:
        if value is not None and not isinstance(value, str):
            raise ValueError("must be an ISO 8601 date-time string")
        return value

    @field_validator("created_before")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        return None if value is None else _aware(value)


class BulkAction(_Body):
    action: Literal["cancel", "retry", "delete"]
    filter: BulkFilter


class CreateApiKey(_Body):
    """``POST /api-keys``: the scopes and limit are checked by the engine (``engine/keys.py``)."""

    name: Annotated[StrictStr, Field(min_length=1, max_length=255)]
    scopes: Annotated[list[StrictStr], Field(min_length=1, max_length=20)]
    rate_limit: Annotated[StrictInt, Field(ge=1, le=1_000_000)] | None = None
    #: Task-type name patterns (``*``: any run of characters) the key is limited to; None: all.
    types: (
        Annotated[
            list[Annotated[StrictStr, Field(min_length=1, max_length=255)]],
            Field(min_length=1, max_length=100),
        ]
        | None
    ) = None


def refuse_unsupported(body: BaseModel, *names: str) -> None:
    """400 for fields of features this server does not offer yet (so a client is never misled)."""
    given = [name for name in names if getattr(body, name) is not None]
    if given:
        raise ValidationFailed(
            "Validation failed", details=[f"{name}: not supported by this server yet" for name in given]
        )


def _problem(error: Any) -> str:
    where = ".".join(str(part) for part in error["loc"]) or "body"
    kind = error["type"]
    if kind == "missing":
        return f"{where}: field required"
    if kind == "model_type" or kind == "dict_type":
        return f"{where}: must be a JSON object"
    if kind == "extra_forbidden":
        return f"{where}: unknown field"
    return f"{where}: {error['msg']}"


def validation_details(exc: ValidationError) -> list[str]:
    """pydantic errors as ``"<field path>: <problem>"``, one per violation, de-duplicated."""
    seen: dict[str, None] = {}
    for error in exc.errors(include_url=False, include_input=False):
        # A union reports one error per branch; keep the field once with its first problem.
        loc = [part for part in error["loc"] if not _is_union_branch(part)]
        seen.setdefault(_problem({**error, "loc": loc}), None)
    by_field: dict[str, str] = {}
    for entry in seen:
        by_field.setdefault(entry.split(":", 1)[0], entry)
    return list(by_field.values())


def _is_union_branch(part: object) -> bool:
    return isinstance(part, str) and (
        part in {"int", "float", "str", "bool", "list", "dict", "none"}
        or part.startswith(("constrained-", "dict[", "list[", "function-", "literal["))
    )


def parse_body(model: type[M], data: Any, *, missing_message: str | None = None) -> M:
    """Validate ``data`` as ``model``, raising ``ValidationFailed`` with per-field details.

    With ``missing_message`` (e.g. ``"Missing required field: {}"``), a required field that is
    absent, null or an empty string is reported with that message, as PrismQ does.
    """
    if not isinstance(data, dict):
        raise ValidationFailed("Validation failed", details=["body: must be a JSON object"])
    if missing_message is not None:
        for name, info in model.model_fields.items():
            if info.is_required() and data.get(name) in (None, ""):
                raise ValidationFailed(missing_message.format(name), details=[f"{name}: required"])
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ValidationFailed("Validation failed", details=validation_details(exc)) from None


# ---------------------------------------------------------------------------------------------
# Response shapes (documented in the OpenAPI file and parsed by the client)
# ---------------------------------------------------------------------------------------------


class _Out(BaseModel):
    model_config = ConfigDict(extra="allow")


class Envelope(_Out, Generic[T]):
    success: Literal[True] = True
    message: str
    data: T
    timestamp: int


class ErrorEnvelope(_Out):
    success: Literal[False] = False
    error: str
    message: str
    code: str
    timestamp: int
    details: list[str] | None = None
    data: dict[str, Any] | None = None


class HealthData(_Out):
    status: str
    database: str
    version: str
    timestamp: int


class TaskTypeOut(_Out):
    id: int
    name: str
    version: str
    param_schema: dict[str, Any]
    is_active: bool
    max_attempts: int
    claim_timeout: int
    retry_delay: float
    retry_max_delay: float
    dedupe: Literal["all", "active", "none"]
    max_pending: int | None
    description: str | None
    max_running: int | None
    keep_completed_seconds: int
    keep_failed_seconds: int
    callback_url: str | None = None
    created_at: datetime
    updated_at: datetime


class RegisterData(TaskTypeOut):
    created: bool | None = None
    updated: bool | None = None


class TaskTypeList(_Out):
    task_types: list[TaskTypeOut]
    items: list[TaskTypeOut]
    count: int


class TaskOut(_Out):
    id: int
    type: str
    type_id: int
    status: Literal["pending", "claimed", "completed", "failed", "cancelled"]
    params: dict[str, Any]
    result: Any = None
    error_message: str | None
    priority: int
    progress: int
    attempts: int
    max_attempts: int
    claimed_by: str | None
    claimed_at: datetime | None
    lease_expires_at: datetime | None
    completed_at: datetime | None
    run_after: datetime | None
    expires_at: datetime | None
    assigned_to: str | None
    created_at: datetime
    updated_at: datetime
    dedupe_key: str | None
    #: The schedule that created the task and the tick it was created for (B.8); else null.
    schedule: str | None = None
    scheduled_for: datetime | None = None
    #: The tasks it waits for (B.5), and whether it still waits for one of them.
    depends_on: list[int] = Field(default_factory=list)
    blocked: bool = False
    #: Where the task is POSTed once it ends (B.5); else null.
    callback_url: str | None = None


class WaitedTask(TaskOut):
    """``GET /tasks/{id}/wait``: the task, and whether it is terminal."""

    done: bool


class CreatedTask(_Out):
    """A new task (every task field) or a duplicate (``id, type, status, dedupe_key`` only)."""

    id: int
    type: str
    status: str
    dedupe_key: str | None
    duplicate: bool
    deduplicated: bool
    message: str
    priority: int | None = None


class ScheduleOut(_Out):
    id: int
    name: str
    type: str
    cron: str | None
    interval_seconds: int | None
    params: dict[str, Any]
    priority: int
    timezone: str
    enabled: bool
    next_run_at: datetime | None
    last_run_at: datetime | None
    created_at: datetime
    updated_at: datetime


class SavedSchedule(ScheduleOut):
    created: bool


class ScheduleList(_Out):
    schedules: list[ScheduleOut]
    count: int


class TaskList(_Out):
    tasks: list[TaskOut]
    items: list[TaskOut]
    count: int
    total: int
    limit: int
    offset: int


class ClaimedTask(TaskOut):
    lease_token: str
    message: str


class ClaimedTasks(_Out):
    tasks: list[ClaimedTask]
    count: int


class CompletedTask(_Out):
    id: int
    status: Literal["completed", "failed", "pending (retry)"]
    message: str
    attempts: int
    run_after: datetime | None


class ProgressData(_Out):
    id: int
    progress: int
    lease_expires_at: datetime | None
    message: str


class HeartbeatData(_Out):
    id: int
    lease_expires_at: datetime | None
    cancel_requested: bool


class CompleteBatchItemResult(_Out):
    id: int
    status: str | None
    error: str | None = None
    code: str | None = None


class CompleteBatchResult(_Out):
    results: list[CompleteBatchItemResult]
    count: int


class BatchItemResult(_Out):
    index: int
    id: int | None
    status: str | None
    duplicate: bool
    error: str | None


class BatchCreated(_Out):
    results: list[BatchItemResult]
    created: int
    duplicates: int
    failed: int


class HistoryEventOut(_Out):
    id: int
    task_id: int
    event: str
    worker_id: str | None
    message: str | None
    metadata: dict[str, Any] | None
    created_at: datetime


class TaskHistory(_Out):
    events: list[HistoryEventOut]
    count: int


class BulkResult(_Out):
    #: Tasks the filter matched; of them, those the action changed (or deleted).
    matched: int
    changed: int


class Deleted(_Out):
    id: int | str
    deleted: bool


class ApiKeyOut(_Out):
    id: int
    name: str
    prefix: str
    scopes: list[str]
    rate_limit: int | None
    #: The type-name patterns the key is limited to; null: every type.
    types: list[str] | None = None
    is_active: bool
    created_at: datetime
    last_used_at: datetime | None


class CreatedApiKey(ApiKeyOut):
    key: str


class ApiKeyList(_Out):
    api_keys: list[ApiKeyOut]
    items: list[ApiKeyOut]
    count: int


class TypeStatsOut(_Out):
    type: str
    pending: int
    claimed: int
    completed: int
    failed: int
    cancelled: int
    oldest_pending_seconds: float | None
    completed_last_hour: int
    failed_last_hour: int
    avg_run_seconds: float | None


class ThroughputMinute(_Out):
    minute: datetime
    completed: int
    failed: int


class StatsData(_Out):
    by_status: dict[str, int]
    by_type: list[TypeStatsOut]
    workers_active: int
    throughput: list[ThroughputMinute]


class WorkerOut(_Out):
    worker_id: str
    claimed: int
    completed: int
    failed: int
    last_seen_at: datetime | None
    avg_processing_seconds: float | None


class WorkerList(_Out):
    workers: list[WorkerOut]
