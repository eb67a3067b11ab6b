"""API.md A.4, A.5 and B.1: registering, reading, listing and deactivating task types."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.api.conftest import (
    TOPIC_SCHEMA,
    claim,
    create,
    fails,
    get_task,
    no_tasks,
    ok,
    register,
    when,
)
from tests.conftest import START, Api, ServerFactory

TYPE_FIELDS = {
    "id",
    "name",
    "version",
    "param_schema",
    "is_active",
    "created_at",
    "updated_at",
    "max_attempts",
    "claim_timeout",
    "retry_delay",
    "retry_max_delay",
    "dedupe",
    "max_pending",
    "description",
    "max_running",
    "keep_completed_seconds",
    "keep_failed_seconds",
    "callback_url",
}


def post_register(api: Api, **body: Any) -> httpx.Response:
    return api.client.post("/api/task-types/register", json=body)


# -- register: errors -------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["name", "version", "param_schema"])
@pytest.mark.parametrize("value", ["<absent>", None, ""])
def test_missing_or_empty_required_field(api: Api, field: str, value: Any) -> None:
    body: dict[str, Any] = {"name": "demo.echo", "version": "1.0", "param_schema": {"type": "object"}}
    if value == "<absent>":
        del body[field]
    else:
        body[field] = value
    fails(post_register(api, **body), 400, "validation_failed", f"Missing required field: {field}")
    fails(api.get("/api/task-types/demo.echo"), 404, "not_found", "Task type not found")


def test_missing_fields_are_reported_in_contract_order(api: Api) -> None:
    fails(post_register(api), 400, "validation_failed", "Missing required field: name")
    fails(post_register(api, name="x"), 400, "validation_failed", "Missing required field: version")


@pytest.mark.parametrize(
    ("field", "value"),
    [("name", "n" * 256), ("version", "v" * 51), ("name", 5), ("version", 1.0), ("param_schema", 5)],
)
def test_field_limits_and_types(api: Api, field: str, value: Any) -> None:
    body: dict[str, Any] = {"name": "demo.echo", "version": "1.0", "param_schema": {"type": "object"}}
    body[field] = value
    response = fails(post_register(api, **body), 400, "validation_failed", "Validation failed")
    assert any(entry.startswith(f"{field}:") for entry in response["details"])


def test_name_and_version_at_their_maximum_length_are_accepted(api: Api) -> None:
    data = register(api, name="n" * 255, version="v" * 50)
    assert data["name"] == "n" * 255
    assert ok(api.get("/api/task-types/" + "n" * 255))["version"] == "v" * 50


@pytest.mark.parametrize("schema", ["{not json", "", "'single'"])
def test_param_schema_string_that_is_not_json(api: Api, schema: str) -> None:
    expected = "Missing required field: param_schema" if schema == "" else "Invalid JSON schema format"
    fails(post_register(api, name="t", version="1", param_schema=schema), 400, "validation_failed", expected)


def test_param_schema_string_holding_a_non_object(api: Api) -> None:
    response = post_register(api, name="t", version="1", param_schema="[1, 2]")
    fails(response, 400, "validation_failed", "Invalid JSON schema format")


@pytest.mark.parametrize("schema", [{}, {"properties": {"a": {"type": "string"}}}, '{"required": []}'])
def test_schema_without_a_top_level_type(api: Api, schema: Any) -> None:
    response = post_register(api, name="t", version="1", param_schema=schema)
    fails(response, 400, "validation_failed", 'JSON schema must have a "type" property')


@pytest.mark.parametrize(
    ("schema", "path"),
    [
        ({"type": "nonsense"}, "param_schema.type"),
        ({"type": "object", "properties": {"a": {"type": 5}}}, "param_schema.properties.a.type"),
        ({"type": "object", "required": "topic"}, "param_schema.required"),
        ({"type": "object", "minProperties": -1}, "param_schema.minProperties"),
    ],
)
def test_schema_invalid_against_the_metaschema_is_400_with_details(api: Api, schema: Any, path: str) -> None:
    body = fails(post_register(api, name="t", version="1", param_schema=schema), 400, "validation_failed")
    assert body["details"]
    assert any(entry.startswith(path) for entry in body["details"]), body["details"]
    fails(api.get("/api/task-types/t"), 404, "not_found")


def test_metaschema_follows_dollar_schema(api: Api) -> None:
    draft4 = {
        "$schema": "http://json-schema.org/draft-04/schema#",
        "type": "object",
        "properties": {"n": {"type": "number", "minimum": 0, "exclusiveMinimum": True}},
    }
    # Draft 2020-12 (the default) needs a number for exclusiveMinimum: a boolean is refused.
    without = {k: v for k, v in draft4.items() if k != "$schema"}
    fails(post_register(api, name="d", version="1", param_schema=without), 400, "validation_failed")
    register(api, name="d", schema=draft4)
    # ... and params are judged by draft 4 too: 0 is excluded, 1 is fine.
    fails(api.post("/api/tasks", json={"type": "d", "params": {"n": 0}}), 400, "validation_failed")
    assert create(api, "d", {"n": 1})["status"] == "pending"


@pytest.mark.parametrize(
    "ref",
    [
        "https://example.com/schema.json",
        "http://169.254.169.254/latest",
        "other.json#/defs/a",
        "file:///etc/passwd",
    ],
)
def test_a_remote_ref_is_refused(api: Api, ref: str) -> None:
    schema = {"type": "object", "properties": {"a": {"$ref": ref}}}
    body = fails(post_register(api, name="t", version="1", param_schema=schema), 400, "validation_failed")
    assert any(ref in entry for entry in body["details"])
    fails(api.get("/api/task-types/t"), 404, "not_found")


def test_a_local_ref_is_allowed_and_used(api: Api) -> None:
    schema = {
        "type": "object",
        "$defs": {"pos": {"type": "integer", "minimum": 1}},
        "properties": {"n": {"$ref": "#/$defs/pos"}},
    }
    register(api, name="t", schema=schema)
    body = fails(api.post("/api/tasks", json={"type": "t", "params": {"n": 0}}), 400, "validation_failed")
    assert body["details"][0].startswith("$.n:")


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("max_attempts", 0),
        ("max_attempts", 101),
        ("claim_timeout", 0),
        ("claim_timeout", 86401),
        ("retry_delay", -1),
        ("dedupe", "sometimes"),
        ("max_pending", 0),
        ("max_attempts", "3"),
    ],
)
def test_settings_out_of_range_are_refused(api: Api, setting: str, value: Any) -> None:
    response = post_register(api, name="t", version="1", param_schema={"type": "object"}, **{setting: value})
    body = fails(response, 400, "validation_failed", "Validation failed")
    assert any(entry.startswith(f"{setting}:") for entry in body["details"])


# -- register: success ------------------------------------------------------------------------


def test_register_new_type_returns_created_and_the_type_object(api: Api) -> None:
    data = register(api, name="PrismQ.Script.Generate", schema=TOPIC_SCHEMA)
    assert set(data) == TYPE_FIELDS | {"created"}
    assert data["created"] is True
    assert data["name"] == "PrismQ.Script.Generate"
    assert data["version"] == "1.0.0"
    assert data["param_schema"] == TOPIC_SCHEMA
    assert data["is_active"] is True
    assert when(data["created_at"]) == START
    assert when(data["updated_at"]) == START


def test_defaults_of_the_part_b_settings(api: Api) -> None:
    data = register(api)
    assert data["max_attempts"] == 3
    assert data["claim_timeout"] == 300
    assert data["retry_delay"] == 2
    assert data["retry_max_delay"] == 3600
    assert data["dedupe"] == "all"
    assert data["max_pending"] is None
    assert data["description"] is None


def test_param_schema_may_be_sent_as_a_json_string(api: Api) -> None:
    data = register(api, name="s", schema=json.dumps(TOPIC_SCHEMA))
    assert data["param_schema"] == TOPIC_SCHEMA
    assert ok(api.get("/api/task-types/s"))["param_schema"] == TOPIC_SCHEMA
    fails(api.post("/api/tasks", json={"type": "s", "params": {}}), 400, "validation_failed")


def test_re_register_replaces_version_and_schema(api: Api) -> None:
    first = register(api, name="t", schema=TOPIC_SCHEMA)
    api.clock.advance(10)
    response = post_register(api, name="t", version="2.0.0", param_schema={"type": "object"})
    data = ok(response)
    assert set(data) == TYPE_FIELDS | {"updated"}
    assert data["updated"] is True
    assert data["id"] == first["id"]
    assert data["version"] == "2.0.0"
    assert data["param_schema"] == {"type": "object"}
    assert when(data["created_at"]) == START
    assert (when(data["updated_at"]) - START).total_seconds() == 10
    # The new schema is the one tasks are validated against.
    assert create(api, "t", {"anything": True})["status"] == "pending"
    assert ok(api.get("/api/task-types"))["count"] == 1


def test_re_register_keeps_omitted_settings_and_changes_given_ones(api: Api) -> None:
    register(api, name="t", max_attempts=7, claim_timeout=60, dedupe="none", description="first")
    kept = register(api, name="t")
    assert (kept["max_attempts"], kept["claim_timeout"], kept["dedupe"]) == (7, 60, "none")
    assert kept["description"] == "first"
    changed = register(api, name="t", max_attempts=2, retry_delay=0, max_pending=5)
    assert changed["max_attempts"] == 2
    assert changed["retry_delay"] == 0
    assert changed["max_pending"] == 5
    assert changed["claim_timeout"] == 60
    assert ok(api.get("/api/task-types/t"))["max_attempts"] == 2


def test_settings_are_returned_and_applied_to_new_tasks(api: Api) -> None:
    data = register(api, name="t", max_attempts=5, claim_timeout=120, retry_delay=1.5, retry_max_delay=60)
    assert (data["max_attempts"], data["claim_timeout"]) == (5, 120)
    assert (data["retry_delay"], data["retry_max_delay"]) == (1.5, 60)
    task = create(api, "t")
    assert task["max_attempts"] == 5
    claimed = claim(api)
    assert (when(claimed["lease_expires_at"]) - when(claimed["claimed_at"])).total_seconds() == 120


def test_unset_settings_follow_the_server_defaults_live(make_api: ServerFactory) -> None:
    """Section C: the defaults hold wherever a type does not set its own, so a server started
    with other defaults on the same database applies them to types registered earlier."""
    first = make_api()
    register(first, name="plain")
    register(first, name="own", claim_timeout=120, max_attempts=7)
    second = make_api(claim_timeout=30, max_attempts=5, retry_delay=1)
    plain = ok(second.get("/api/task-types/plain"))
    assert (plain["claim_timeout"], plain["max_attempts"], plain["retry_delay"]) == (30, 5, 1)
    own = ok(second.get("/api/task-types/own"))
    assert (own["claim_timeout"], own["max_attempts"], own["retry_delay"]) == (120, 7, 1)
    assert ok(first.get("/api/task-types/plain"))["claim_timeout"] == 300
    create(second, "plain")
    assert create(second, "plain", {"n": 2})["max_attempts"] == 5
    claimed = claim(second)
    assert (when(claimed["lease_expires_at"]) - when(claimed["claimed_at"])).total_seconds() == 30


def test_a_null_setting_returns_it_to_the_server_default(api: Api) -> None:
    register(api, name="t", claim_timeout=60, dedupe="none", max_pending=3)
    data = ok(
        post_register(
            api,
            name="t",
            version="1",
            param_schema={"type": "object"},
            claim_timeout=None,
            dedupe=None,
            max_pending=None,
        )
    )
    assert (data["claim_timeout"], data["dedupe"], data["max_pending"]) == (300, "all", None)


# -- read and list ----------------------------------------------------------------------------


def test_get_one_type_with_a_dotted_name(api: Api) -> None:
    register(api, name="PrismQ.Script.Generate", schema=TOPIC_SCHEMA)
    data = ok(api.get("/api/task-types/PrismQ.Script.Generate"))
    assert set(data) == TYPE_FIELDS
    assert data["name"] == "PrismQ.Script.Generate"
    assert data["param_schema"] == TOPIC_SCHEMA


def test_the_name_segment_is_url_decoded(api: Api) -> None:
    register(api, name="my type:ünï")
    assert ok(api.get("/api/task-types/my%20type%3A%C3%BCn%C3%AF"))["name"] == "my type:ünï"


def test_unknown_type_is_404(api: Api) -> None:
    register(api, name="a.b")
    fails(api.get("/api/task-types/a.c"), 404, "not_found", "Task type not found")


def test_list_is_sorted_by_name_with_both_keys_and_a_count(api: Api) -> None:
    for name in ("zeta", "Alpha.b", "alpha.a", "mid"):
        register(api, name=name)
    data = ok(api.get("/api/task-types"))
    assert set(data) == {"task_types", "items", "count"}
    names = [item["name"] for item in data["task_types"]]
    assert sorted(names) == sorted(["zeta", "Alpha.b", "alpha.a", "mid"])
    assert names == sorted(names, key=str.lower) or names == sorted(names)
    assert names.index("alpha.a") < names.index("mid") < names.index("zeta")
    assert data["items"] == data["task_types"]
    assert data["count"] == 4
    assert set(data["items"][0]) == TYPE_FIELDS


def test_empty_list(api: Api) -> None:
    assert ok(api.get("/api/task-types")) == {"task_types": [], "items": [], "count": 0}


@pytest.mark.parametrize("value", ["true", "1", "TRUE"])
def test_active_only_keeps_active_types(api: Api, value: str) -> None:
    for name in ("a", "b", "c"):
        register(api, name=name)
    ok(api.delete("/api/task-types/b"))
    data = ok(api.get("/api/task-types", params={"active_only": value}))
    assert [item["name"] for item in data["task_types"]] == ["a", "c"]
    assert data["count"] == 2


@pytest.mark.parametrize("value", ["false", "0", ""])
def test_active_only_false_lists_every_type(api: Api, value: str) -> None:
    register(api, name="a")
    register(api, name="b")
    ok(api.delete("/api/task-types/b"))
    data = ok(api.get("/api/task-types", params={"active_only": value}))
    assert [(item["name"], item["is_active"]) for item in data["items"]] == [("a", True), ("b", False)]


# -- deactivate -------------------------------------------------------------------------------


def test_delete_deactivates_and_returns_the_type(api: Api) -> None:
    register(api, name="PrismQ.X")
    data = ok(api.delete("/api/task-types/PrismQ.X"))
    assert data["name"] == "PrismQ.X"
    assert data["is_active"] is False
    assert ok(api.get("/api/task-types/PrismQ.X"))["is_active"] is False


def test_delete_unknown_type_is_404(api: Api) -> None:
    fails(api.delete("/api/task-types/nope"), 404, "not_found", "Task type not found")


def test_a_deactivated_type_keeps_its_tasks_but_they_are_not_claimed(api: Api) -> None:
    register(api, name="paused")
    register(api, name="running")
    waiting = create(api, "paused", {"n": 1})
    ok(api.delete("/api/task-types/paused"))
    no_tasks(api)
    no_tasks(api, types=["paused"])
    assert get_task(api, waiting["id"])["status"] == "pending"
    other = create(api, "running")
    assert claim(api)["id"] == other["id"]
    no_tasks(api)


def test_an_inactive_type_refuses_new_tasks(api: Api) -> None:
    register(api, name="paused")
    ok(api.delete("/api/task-types/paused"))
    response = api.post("/api/tasks", json={"type": "paused", "params": {}})
    fails(response, 400, "validation_failed", "Task type is not active")
    assert ok(api.get("/api/tasks"))["total"] == 0


def test_registering_again_reactivates_and_its_tasks_are_claimed(api: Api) -> None:
    register(api, name="paused", max_attempts=4)
    waiting = create(api, "paused", {"n": 1})
    ok(api.delete("/api/task-types/paused"))
    no_tasks(api)
    data = register(api, name="paused")
    assert data["updated"] is True
    assert data["is_active"] is True
    assert data["max_attempts"] == 4
    assert claim(api)["id"] == waiting["id"]


def test_a_name_with_a_slash_can_be_read_and_deactivated(api: Api) -> None:
    register(api, name="team/reports.build")
    assert ok(api.get("/api/task-types/team/reports.build"))["name"] == "team/reports.build"
    assert ok(api.delete("/api/task-types/team/reports.build"))["is_active"] is False
