"""Request bodies parsed by models.parse_body: the messages and details of API.md."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import BaseModel

from taskmanager import models
from taskmanager.errors import ValidationFailed

MISSING = "Missing required field: {}"


def problem(model: type[BaseModel], data: Any, **kwargs: Any) -> ValidationFailed:
    with pytest.raises(ValidationFailed) as raised:
        models.parse_body(model, data, **kwargs)
    assert raised.value.status == 400
    assert raised.value.code == "validation_failed"
    return raised.value


def register(**fields: Any) -> dict[str, Any]:
    return {
        "name": "PrismQ.Script.Generate",
        "version": "1.0.0",
        "param_schema": {"type": "object"},
        **fields,
    }


# -- missing_message -------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["name", "version", "param_schema"])
@pytest.mark.parametrize("value", ["<absent>", None, ""])
def test_missing_required_field_uses_the_missing_message(field: str, value: Any) -> None:
    body = register()
    if value == "<absent>":
        del body[field]
    else:
        body[field] = value
    error = problem(models.RegisterTaskType, body, missing_message=MISSING)
    assert error.message == f"Missing required field: {field}"
    assert error.details == [f"{field}: required"]


def test_the_first_missing_field_is_reported() -> None:
    error = problem(models.RegisterTaskType, {"param_schema": {}}, missing_message=MISSING)
    assert error.message == "Missing required field: name"


def test_without_missing_message_missing_fields_are_validation_details() -> None:
    error = problem(models.CreateTask, {})
    assert error.message == "Validation failed"
    assert error.details == ["type: field required", "params: field required"]


def test_optional_fields_are_not_required_by_the_missing_message() -> None:
    parsed = models.parse_body(models.RegisterTaskType, register(), missing_message=MISSING)
    assert parsed.max_attempts is None
    assert parsed.dedupe is None


# -- strict types ----------------------------------------------------------------------------------


@pytest.mark.parametrize("priority", ["1", 1.0, 1.5, True, None, [1]])
def test_priority_must_be_a_json_integer(priority: Any) -> None:
    error = problem(models.CreateTask, {"type": "t", "params": {}, "priority": priority})
    assert error.details == ["priority: Input should be a valid integer"]


@pytest.mark.parametrize("success", ["true", 1, 0, "false", None])
def test_success_must_be_a_json_boolean(success: Any) -> None:
    error = problem(models.CompleteTask, {"worker_id": "w1", "success": success})
    assert error.details == ["success: Input should be a valid boolean"]


@pytest.mark.parametrize("success", [True, False])
def test_json_booleans_are_accepted(success: bool) -> None:
    assert models.parse_body(models.CompleteTask, {"worker_id": "w1", "success": success}).success is success


def test_worker_id_must_be_a_string() -> None:
    error = problem(models.ClaimTasks, {"worker_id": 5})
    assert error.details == ["worker_id: Input should be a valid string"]


@pytest.mark.parametrize(
    ("progress", "detail"),
    [
        (101, "progress: Input should be less than or equal to 100"),
        (-1, "progress: Input should be greater than or equal to 0"),
        (50.5, "progress: Input should be a valid integer"),
        ("50", "progress: Input should be a valid integer"),
    ],
)
def test_progress_is_an_integer_from_0_to_100(progress: Any, detail: str) -> None:
    error = problem(models.ReportProgress, {"worker_id": "w1", "progress": progress})
    assert error.details == [detail]


@pytest.mark.parametrize("progress", [0, 100])
def test_progress_bounds_are_inclusive(progress: int) -> None:
    assert (
        models.parse_body(models.ReportProgress, {"worker_id": "w", "progress": progress}).progress
        == progress
    )


# -- details ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("body", [[], "x", 3, None])
def test_a_body_that_is_not_an_object(body: Any) -> None:
    assert problem(models.CreateTask, body).details == ["body: must be a JSON object"]


@pytest.mark.parametrize("params", [[], "x", 1])
def test_params_must_be_an_object(params: Any) -> None:
    assert problem(models.CreateTask, {"type": "t", "params": params}).details == [
        "params: must be a JSON object"
    ]


def test_each_bad_field_gets_one_detail_naming_it() -> None:
    error = problem(
        models.CreateTask,
        {"type": "", "params": {}, "priority": "high", "max_attempts": 0, "delay_seconds": -1},
    )
    assert error.details == [
        "type: String should have at least 1 character",
        "priority: Input should be a valid integer",
        "max_attempts: Input should be greater than or equal to 1",
        "delay_seconds: Input should be greater than or equal to 0",
    ]


def test_a_union_field_reports_one_problem() -> None:
    error = problem(models.RegisterTaskType, register(retry_delay="soon"))
    assert error.details is not None
    assert len(error.details) == 1
    assert error.details[0].startswith("retry_delay: ")


def test_a_nested_field_is_named_by_its_path() -> None:
    error = problem(models.ClaimTasks, {"worker_id": "w", "task_type_ids": [1, "two"]})
    assert error.details == ["task_type_ids.1: Input should be a valid integer"]


def test_an_enumerated_setting_lists_its_values() -> None:
    error = problem(models.RegisterTaskType, register(dedupe="sometimes"))
    assert error.details == ["dedupe: Input should be 'all', 'active' or 'none'"]


def test_batch_size_is_bounded() -> None:
    assert problem(models.CreateTasksBatch, {"tasks": []}).details == [
        "tasks: List should have at least 1 item after validation, not 0"
    ]


# -- accepted bodies -------------------------------------------------------------------------------


def test_unknown_fields_are_ignored() -> None:
    parsed = models.parse_body(models.CreateTask, {"type": "t", "params": {"a": 1}, "from_the_future": 1})
    assert parsed.params == {"a": 1}
    assert parsed.priority == 0


def test_times_are_read_as_utc() -> None:
    parsed = models.parse_body(
        models.CreateTask,
        {
            "type": "t",
            "params": {},
            "run_at": "2026-01-01T12:00:00",
            "expires_at": "2026-01-01T14:00:00+02:00",
        },
    )
    assert parsed.run_at == datetime(2026, 1, 1, 12, tzinfo=UTC)
    assert parsed.expires_at == datetime(2026, 1, 1, 12, tzinfo=UTC)
    for when in (parsed.run_at, parsed.expires_at):
        assert when is not None
        assert when.utcoffset() == timedelta(0)


def test_param_schema_may_be_sent_as_a_json_string() -> None:
    parsed = models.parse_body(models.RegisterTaskType, register(param_schema='{"type":"object"}'))
    assert parsed.schema_object() == {"type": "object"}


def test_param_schema_string_that_is_not_json_is_refused() -> None:
    parsed = models.parse_body(models.RegisterTaskType, register(param_schema="{not json"))
    with pytest.raises(ValidationFailed) as raised:
        parsed.schema_object()
    assert raised.value.message == "Invalid JSON schema format"


def test_param_schema_of_another_json_type_is_refused() -> None:
    assert problem(models.RegisterTaskType, register(param_schema=5)).details == [
        "param_schema: must be a JSON object"
    ]
