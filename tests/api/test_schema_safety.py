"""Schemas cannot hurt the server: catastrophic ``pattern``s are bounded in time, ``$ref`` never
fetches anything, and schemas that loop or point nowhere are refused at registration."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.api.conftest import create, fails, ok, register
from tests.conftest import Api

EVIL = "^(a|a)*$"
ATTACK = "a" * 5000 + "!"


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A TCP port that records whether anything connected to it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        sock.setblocking(False)
        yield sock


def nobody_connected(sock: socket.socket) -> bool:
    try:
        conn, _ = sock.accept()
    except BlockingIOError:
        return True
    conn.close()
    return False


def timed(fn: Any) -> tuple[Any, float]:
    """``fn()`` and the CPU seconds this process spent on it. The app runs in this process (the
    ``api`` fixture drives it in-process), and the pattern budget is counted in CPU time as the
    regex engine counts it: other processes loading the machine (a parallel test worker, the
    benchmark smoke run) stretch the wall time but not this."""
    started = time.process_time()
    result = fn()
    return result, time.process_time() - started


def test_a_catastrophic_pattern_is_cut_off_with_a_400_within_a_second(api: Api) -> None:
    schema = {"type": "object", "properties": {"code": {"type": "string", "pattern": EVIL}}}
    register(api, "evil.pattern", schema)
    response, elapsed = timed(
        lambda: api.post("/api/tasks", json={"type": "evil.pattern", "params": {"code": ATTACK}})
    )
    body = fails(response, 400, "validation_failed")
    assert elapsed < 1.0
    assert body["details"] == [f"$.code: could not be matched against {EVIL!r} within the time limit"]
    # The pattern still works for honest input.
    assert create(api, "evil.pattern", {"code": "aaaa"})["status"] == "pending"
    fails(
        api.post("/api/tasks", json={"type": "evil.pattern", "params": {"code": "b"}}),
        400,
        "validation_failed",
    )


def test_a_batch_of_catastrophic_inputs_shares_one_time_budget(api: Api) -> None:
    schema = {"type": "object", "properties": {"code": {"type": "string", "pattern": EVIL}}}
    register(api, "evil.pattern", schema)

    def batch(code: str) -> tuple[Any, float]:
        items = [{"type": "evil.pattern", "params": {"code": code + str(n)}} for n in range(40)]
        return timed(lambda: api.post("/api/tasks/batch", json={"tasks": items}))

    plain, baseline = batch("b")  # 40 quick mismatches: the batch's own database work
    evil, elapsed = batch(ATTACK)
    assert ok(plain)["failed"] == ok(evil)["failed"] == 40
    # 40 catastrophic matches add about one 0.25 s budget (CPU time), not 40 of them.
    assert elapsed - baseline < 1.0, (elapsed, baseline)


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "object", "patternProperties": {EVIL: {"type": "string"}}},
        {"type": "object", "patternProperties": {EVIL: {}}, "additionalProperties": False},
        {
            "type": "object",
            "properties": {"a": {"type": "array", "items": {"type": "string", "pattern": EVIL}}},
        },
    ],
)
def test_patterns_on_keys_and_in_arrays_are_bounded_too(api: Api, schema: dict[str, Any]) -> None:
    register(api, "evil.keys", schema)
    params = {"a": [ATTACK] * 20} if "properties" in schema else {ATTACK: "x"}
    response, elapsed = timed(lambda: api.post("/api/tasks", json={"type": "evil.keys", "params": params}))
    assert elapsed < 1.0
    assert "within the time limit" in fails(response, 400, "validation_failed")["message"]


@pytest.mark.parametrize(
    ("schema", "problem"),
    [
        ({"type": "object", "properties": {"a": {"type": "string", "pattern": "(?<"}}}, "regex"),
        ({"type": "object", "patternProperties": {"[": {}}}, "regex"),
        (
            {"type": "object", "patternProperties": {"a": {}}, "unevaluatedProperties": False},
            "patternProperties",
        ),
        ({"type": "object", "$ref": "#"}, "refers to itself"),
        ({"type": "object", "allOf": [{"$ref": "#"}]}, "refers to itself"),
        ({"type": "object", "properties": {"a": {"$ref": "#/$defs/missing"}}}, "cannot be resolved"),
    ],
)
def test_unusable_schemas_are_refused_at_registration(api: Api, schema: dict[str, Any], problem: str) -> None:
    body = {"name": "bad.schema", "version": "1", "param_schema": schema}
    found = fails(api.post("/api/task-types/register", json=body), 400, "validation_failed")
    assert problem in found["message"]
    assert found["details"]
    fails(api.get("/api/task-types/bad.schema"), 404, "not_found")


def test_a_schema_that_loops_only_for_some_input_fails_the_task_not_the_server(api: Api) -> None:
    looping = {"type": "object", "properties": {"deep": {"type": "object", "$ref": "#/properties/deep"}}}
    register(api, "loop.later", looping)
    body = fails(
        api.post("/api/tasks", json={"type": "loop.later", "params": {"deep": {}}}), 400, "validation_failed"
    )
    assert "cannot be evaluated" in body["message"]


@pytest.mark.parametrize(
    "ref",
    [
        "http://127.0.0.1:{port}/schema.json",
        "https://127.0.0.1:{port}/schema.json#/x",
        "//127.0.0.1:{port}/schema.json",
        "file:///etc/passwd",
        "schema.json",
    ],
)
@pytest.mark.parametrize("keyword", ["$ref", "$dynamicRef"])
def test_a_remote_or_file_ref_is_refused_and_never_fetched(
    api: Api, listener: socket.socket, ref: str, keyword: str
) -> None:
    port = listener.getsockname()[1]
    schema = {"type": "object", "properties": {"a": {keyword: ref.format(port=port)}}}
    body = {"name": "remote.ref", "version": "1", "param_schema": schema}
    found = fails(api.post("/api/task-types/register", json=body), 400, "validation_failed")
    assert "only local $ref" in found["message"]
    assert found["details"] == [f"$.properties.a: {keyword} {ref.format(port=port)!r} is not local"]
    assert nobody_connected(listener)


def test_remote_ids_and_schema_uris_are_never_fetched(api: Api, listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    schema = {
        "$id": f"http://127.0.0.1:{port}/root.json",
        "type": "object",
        "properties": {"a": {"$ref": "#/$defs/text"}},
        "$defs": {"text": {"type": "string"}},
    }
    register(api, "remote.id", schema)
    assert create(api, "remote.id", {"a": "x"})["status"] == "pending"
    fails(api.post("/api/tasks", json={"type": "remote.id", "params": {"a": 1}}), 400, "validation_failed")
    unknown_dialect = {"$schema": f"http://127.0.0.1:{port}/meta", "type": "object"}
    ok(
        api.post(
            "/api/task-types/register",
            json={"name": "remote.meta", "version": "1", "param_schema": unknown_dialect},
        )
    )
    assert create(api, "remote.meta", {"a": 1})["status"] == "pending"
    assert nobody_connected(listener)


def nested_properties(levels: int) -> str:
    """A schema whose ``properties`` nest ``levels`` deep, as JSON text (too deep for json.dumps)."""
    return '{"type": "object", "properties": {"a": ' * levels + '{"type": "string"}' + "}}" * levels


@pytest.mark.parametrize(
    "text",
    [
        "[" * 2000 + "]" * 2000,
        '{"type": "object", "x": ' + "[" * 2000 + "]" * 2000 + "}",
        *(nested_properties(levels) for levels in (100, 400, 900)),
        nested_properties(31),  # one level deeper than a body may hold it
    ],
    ids=["arrays-2000", "arrays-2000-inside", *(f"properties-{n}" for n in (100, 400, 900, 31))],
)
def test_a_schema_string_nested_deeper_than_a_body_may_be_is_400(api: Api, text: str) -> None:
    """A schema sent as a JSON string meets the body's depth limit as if it were sent as an object."""
    body = {"name": "deep.schema", "version": "1", "param_schema": text}
    found = fails(api.post("/api/task-types/register", json=body), 400, "validation_failed")
    assert found["details"][0].startswith("param_schema"), found["details"]
    assert "nested deeper than 64 levels" in found["details"][0]
    fails(api.get("/api/task-types/deep.schema"), 404, "not_found")


def test_a_schema_string_as_deep_as_a_body_may_hold_it_is_accepted(api: Api) -> None:
    """The limit is the body's: 30 levels of properties (62 with the body and param_schema)."""
    text = nested_properties(30)
    register = "/api/task-types/register"
    as_string = ok(api.post(register, json={"name": "s", "version": "1", "param_schema": text}))
    as_object = ok(api.post(register, json={"name": "o", "version": "1", "param_schema": json.loads(text)}))
    assert as_string["param_schema"] == as_object["param_schema"] == json.loads(text)
