"""Checking a type's param_schema (API.md A.4) and validating params against it (A.6)."""

from __future__ import annotations

from typing import Any

import pytest

from taskmanager.engine.schema import MAX_REPORTED_ERRORS, ParamValidator, check_param_schema
from taskmanager.errors import ValidationFailed

REVISION = 1
SCHEMA = {
    "type": "object",
    "properties": {
        "topic": {"type": "string", "minLength": 1},
        "length": {"type": "integer", "minimum": 1},
        "tags": {"type": "array", "items": {"type": "string"}},
        "meta": {"type": "object", "properties": {"lang": {"enum": ["en", "cs"]}}},
    },
    "required": ["topic"],
    "additionalProperties": False,
}


def refused(schema: Any) -> ValidationFailed:
    with pytest.raises(ValidationFailed) as raised:
        check_param_schema(schema)
    return raised.value


# -- check_param_schema ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "object"},
        SCHEMA,
        {"type": "object", "$defs": {"n": {"type": "integer"}}, "properties": {"a": {"$ref": "#/$defs/n"}}},
        {"type": ["object", "null"]},
    ],
)
def test_usable_schemas_are_accepted(schema: dict[str, Any]) -> None:
    check_param_schema(schema)


@pytest.mark.parametrize("schema", [[], "object", 1, None])
def test_a_schema_that_is_not_an_object_is_refused(schema: Any) -> None:
    assert refused(schema).message == "Invalid JSON schema format"


@pytest.mark.parametrize("schema", [{}, {"properties": {"a": {"type": "string"}}}])
def test_a_schema_without_a_top_level_type_is_refused(schema: dict[str, Any]) -> None:
    assert refused(schema).message == 'JSON schema must have a "type" property'


def test_a_schema_breaking_the_metaschema_is_refused_with_its_path() -> None:
    error = refused({"type": "object", "properties": {"a": {"type": 12}}})
    assert error.message.startswith("Invalid JSON schema: ")
    assert error.details is not None
    assert len(error.details) == 1
    assert error.details[0].startswith("param_schema.properties.a.type: ")


def test_an_unknown_type_name_is_refused() -> None:
    error = refused({"type": "nonsense"})
    assert error.details is not None
    assert error.details[0].startswith("param_schema.type: ")


def test_a_negative_keyword_value_is_refused() -> None:
    error = refused({"type": "object", "minProperties": -1})
    assert error.details == ["param_schema.minProperties: -1 is less than the minimum of 0"]


def test_the_metaschema_is_draft_2020_12_unless_the_schema_says_otherwise() -> None:
    tuple_items = {"type": "array", "items": [{"type": "string"}]}
    error = refused(tuple_items)
    assert error.details is not None
    assert error.details[0].startswith("param_schema.items: ")
    check_param_schema({"$schema": "http://json-schema.org/draft-07/schema#", **tuple_items})


@pytest.mark.parametrize(
    "ref",
    [
        "http://example.com/schema.json",
        "https://json-schema.org/draft/2020-12/schema",
        "other.json#/defs/x",
        "file:///etc/passwd",
    ],
)
def test_a_non_local_ref_is_refused(ref: str) -> None:
    error = refused({"type": "object", "properties": {"a": {"$ref": ref}}})
    assert error.message == "Invalid JSON schema: only local $ref (starting with #) is allowed"
    assert error.details == [f"$.properties.a: $ref {ref!r} is not local"]


def test_every_non_local_ref_is_listed() -> None:
    error = refused(
        {"type": "object", "anyOf": [{"$ref": "a.json"}, {"$ref": "#/ok"}, {"items": {"$ref": "b.json"}}]}
    )
    assert error.details == [
        "$.anyOf[0]: $ref 'a.json' is not local",
        "$.anyOf[2].items: $ref 'b.json' is not local",
    ]


# -- ParamValidator --------------------------------------------------------------------------------


def test_valid_params_have_no_problems() -> None:
    params = {"topic": "AI", "length": 3, "tags": ["a"], "meta": {"lang": "cs"}}
    assert ParamValidator().problems(1, REVISION, SCHEMA, params) == []


def test_every_problem_names_its_json_path_in_path_order() -> None:
    params = {"length": "long", "tags": ["ok", 3], "meta": {"lang": "de"}, "extra": 1}
    problems = ParamValidator().problems(1, REVISION, SCHEMA, params)
    assert problems == [
        "$: 'topic' is a required property",
        "$: Additional properties are not allowed ('extra' was unexpected)",
        "$.length: 'long' is not of type 'integer'",
        "$.meta.lang: 'de' is not one of ['en', 'cs']",
        "$.tags[1]: 3 is not of type 'string'",
    ]


def test_problems_beyond_the_limit_are_counted_not_listed() -> None:
    count = MAX_REPORTED_ERRORS + 5
    schema = {"type": "object", "properties": {f"p{i:02}": {"type": "integer"} for i in range(count)}}
    params = {f"p{i:02}": "x" for i in range(count)}
    problems = ParamValidator().problems(1, REVISION, schema, params)
    assert len(problems) == MAX_REPORTED_ERRORS + 1
    assert problems[0] == "$.p00: 'x' is not of type 'integer'"
    assert problems[-1] == "$: 5 more problems not listed"


def test_params_are_validated_with_the_draft_the_schema_names() -> None:
    schema = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "array",
        "items": [{"type": "string"}, {"type": "integer"}],
    }
    validator = ParamValidator()
    assert validator.problems(1, REVISION, schema, ["a", 1]) == []
    assert validator.problems(1, REVISION, schema, ["a", "b"]) == ["$[1]: 'b' is not of type 'integer'"]


def test_one_validator_is_kept_per_type_version() -> None:
    validator = ParamValidator()
    strict = {"type": "object", "required": ["a"]}
    loose = {"type": "object"}
    assert validator.problems(1, REVISION, strict, {}) == ["$: 'a' is a required property"]
    # Same type and revision: the compiled validator is reused.
    assert validator.problems(1, REVISION, loose, {}) == ["$: 'a' is a required property"]
    # A new revision of the type or another type compiles its own.
    assert validator.problems(1, REVISION + 1, loose, {}) == []
    assert validator.problems(2, REVISION, loose, {}) == []
