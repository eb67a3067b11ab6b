"""API.md A.11: the server's own OpenAPI 3.1 document and the Swagger UI page."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.conftest import ServerFactory

#: Every route of API.md Part A (method, path), plus the Part B routes the server implements.
PART_A = [
    ("get", "/api/health"),
    ("post", "/api/task-types/register"),
    ("get", "/api/task-types"),
    ("get", "/api/task-types/{name}"),
    ("post", "/api/tasks"),
    ("get", "/api/tasks"),
    ("get", "/api/tasks/{id}"),
    ("post", "/api/tasks/claim"),
    ("post", "/api/tasks/{id}/complete"),
    ("post", "/api/tasks/{id}/progress"),
]
PART_B = [
    ("delete", "/api/task-types/{name}"),
    ("post", "/api/tasks/batch"),
    ("post", "/api/tasks/{id}/heartbeat"),
    ("post", "/api/tasks/{id}/cancel"),
    ("post", "/api/tasks/{id}/retry"),
    ("delete", "/api/tasks/{id}"),
    ("get", "/api/tasks/{id}/history"),
]
#: Request bodies and the fields API.md marks required.
REQUIRED_BODY_FIELDS = {
    ("post", "/api/task-types/register"): {"name", "version", "param_schema"},
    ("post", "/api/tasks"): {"type", "params"},
    ("post", "/api/tasks/claim"): {"worker_id"},
    ("post", "/api/tasks/{id}/complete"): {"worker_id", "success"},
    ("post", "/api/tasks/{id}/progress"): {"worker_id", "progress"},
    ("post", "/api/tasks/batch"): {"tasks"},
    ("post", "/api/tasks/{id}/heartbeat"): {"worker_id"},
}


@pytest.fixture
def document(make_api: ServerFactory) -> dict[str, Any]:
    server = make_api(send_key=False)
    response = server.get("/api/openapi.json")
    assert response.status_code == 200
    found: dict[str, Any] = response.json()
    return found


def resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """Follow a local ``$ref`` (and nothing else) to the schema it names."""
    while "$ref" in schema:
        ref = schema["$ref"]
        assert ref.startswith("#/components/schemas/"), ref
        name = ref.rsplit("/", 1)[1]
        assert name in document["components"]["schemas"], f"dangling {ref}"
        schema = document["components"]["schemas"][name]
    return schema


def all_refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [ref for value in node.values() for ref in all_refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in all_refs(value)]
    return []


def test_the_document_is_served_without_a_key_at_both_paths(make_api: ServerFactory) -> None:
    server = make_api(send_key=False)
    prefixed = server.get("/api/openapi.json")
    root = server.get("/openapi.json")
    assert prefixed.status_code == root.status_code == 200
    assert prefixed.headers["content-type"].startswith("application/json")
    assert prefixed.json() == root.json()


def test_it_is_openapi_3_1_with_title_and_version(document: dict[str, Any]) -> None:
    assert document["openapi"].startswith("3.1")
    assert document["info"]["title"]
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", document["info"]["version"])


@pytest.mark.parametrize(("method", "path"), PART_A + PART_B)
def test_every_route_is_documented(document: dict[str, Any], method: str, path: str) -> None:
    assert path in document["paths"], sorted(document["paths"])
    operation = document["paths"][path].get(method)
    assert operation is not None, f"{method.upper()} {path} missing"
    assert operation.get("operationId")
    assert "200" in operation["responses"]


def test_every_ref_in_the_document_resolves(document: dict[str, Any]) -> None:
    refs = all_refs(document)
    assert refs
    for ref in refs:
        resolve(document, {"$ref": ref})


@pytest.mark.parametrize(("method", "path"), sorted(REQUIRED_BODY_FIELDS))
def test_request_bodies_reference_real_schemas(document: dict[str, Any], method: str, path: str) -> None:
    body = document["paths"][path][method]["requestBody"]
    schema = body["content"]["application/json"]["schema"]
    assert "$ref" in schema
    resolved = resolve(document, schema)
    assert resolved.get("type") == "object"
    assert REQUIRED_BODY_FIELDS[(method, path)] <= set(resolved["properties"])
    assert REQUIRED_BODY_FIELDS[(method, path)] <= set(resolved.get("required", []))


@pytest.mark.parametrize(("method", "path"), PART_A + PART_B)
def test_success_responses_show_the_envelope(document: dict[str, Any], method: str, path: str) -> None:
    response = document["paths"][path][method]["responses"]["200"]
    schema = resolve(document, response["content"]["application/json"]["schema"])
    assert {"success", "message", "data", "timestamp"} <= set(schema["properties"])
    assert set(schema["required"]) >= {"message", "data", "timestamp"}
    data = resolve(document, schema["properties"]["data"])
    # A route with two answer shapes (claim: one task, or {tasks, count} with limit) has anyOf.
    for shape in [resolve(document, s) for s in data.get("anyOf", [data])]:
        assert shape.get("properties"), f"{method.upper()} {path}: data is not described"


def test_the_claim_and_create_data_name_their_fields(document: dict[str, Any]) -> None:
    def data_of(method: str, path: str) -> dict[str, Any]:
        response = document["paths"][path][method]["responses"]["200"]
        envelope = resolve(document, response["content"]["application/json"]["schema"])
        return resolve(document, envelope["properties"]["data"])

    one, many = (resolve(document, s) for s in data_of("post", "/api/tasks/claim")["anyOf"])
    assert {"id", "type", "params", "attempts", "lease_expires_at", "lease_token"} <= set(one["properties"])
    assert {"tasks", "count"} <= set(many["properties"])
    created = data_of("post", "/api/tasks")
    assert {"id", "status", "dedupe_key", "duplicate", "deduplicated"} <= set(created["properties"])
    listed = data_of("get", "/api/tasks")
    assert {"tasks", "items", "count", "total", "limit", "offset"} <= set(listed["properties"])


def test_error_responses_show_the_error_envelope(document: dict[str, Any]) -> None:
    responses = document["paths"]["/api/tasks/{id}/complete"]["post"]["responses"]
    assert {"400", "401", "403", "404", "409"} <= set(responses)
    schema = resolve(document, responses["404"]["content"]["application/json"]["schema"])
    assert {"success", "error", "message", "code", "timestamp", "details"} <= set(schema["properties"])
    assert "429" in document["paths"]["/api/tasks"]["post"]["responses"]


def test_the_api_key_is_the_security_scheme_and_health_is_public(document: dict[str, Any]) -> None:
    schemes = document["components"]["securitySchemes"]
    assert {"type": "apiKey", "in": "header", "name": "X-API-Key"} in schemes.values()
    assert any(s.get("scheme") == "bearer" for s in schemes.values())
    assert document["paths"]["/api/health"]["get"]["security"] == []


@pytest.mark.parametrize("path", ["/api/docs", "/docs"])
def test_docs_serve_swagger_ui_pointing_at_the_document(make_api: ServerFactory, path: str) -> None:
    server = make_api(send_key=False)
    response = server.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "swagger-ui" in response.text.lower()
    match = re.search(r"url: '([^']+)'", response.text)
    assert match is not None
    assert server.get(match.group(1)).json()["openapi"].startswith("3.1")
