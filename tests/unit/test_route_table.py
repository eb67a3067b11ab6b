"""The route table: each route declared once, and the app and the OpenAPI document made from it
agree with it — the same routes, in the same order, with the same methods."""

from __future__ import annotations

import inspect
import re
from collections import Counter
from pathlib import Path
from types import ModuleType
from typing import Annotated, Any

import pytest
from pydantic import Field
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route as StarletteRoute

from taskmanager.errors import ValidationFailed
from taskmanager.server import key_routes, routes
from taskmanager.server.app import HOT_FIRST, create_app
from taskmanager.server.dashboard import ASSETS as DASHBOARD_ASSETS
from taskmanager.server.dashboard import DASHBOARD_PATH
from taskmanager.server.openapi import DOCS_PATH, DOCUMENT_PATH, SWAGGER_ASSETS, document, openapi_path
from taskmanager.server.routes import ROUTES
from taskmanager.server.table import QueryParam
from taskmanager.settings import Settings


@pytest.fixture
def app(tmp_path: Path) -> Starlette:
    # Never started: the app is only looked at.
    return create_app(Settings(database_url=f"sqlite:///{tmp_path / 'unused.db'}", api_key=None))


def test_every_route_is_declared_once() -> None:
    for name, count in Counter((route.method, route.path) for route in ROUTES).items():
        assert count == 1, name
    for name, count in Counter(route.operation_id for route in ROUTES).items():
        assert count == 1, name
    for name, count in Counter(route.handler for route in ROUTES).items():
        assert count == 1, name


def _handlers(module: ModuleType) -> set[Any]:
    """The route handlers a module defines: its async functions that take a ``Call``."""
    found = set()
    for name, function in inspect.getmembers(module, inspect.iscoroutinefunction):
        if function.__module__ == module.__name__ and not name.startswith("_"):
            first = next(iter(inspect.signature(function).parameters.values()), None)
            if first is not None and str(first.annotation).startswith("Call"):
                found.add(function)
    return found


def test_every_handler_is_in_the_table() -> None:
    """A handler written but left out of ``ROUTES`` would be a route nobody can call."""
    handlers = _handlers(routes) | _handlers(key_routes)
    assert len(handlers) >= 20
    assert handlers == {route.handler for route in ROUTES}


def test_every_route_has_its_section_in_the_api_reference() -> None:
    reference = (Path(__file__).resolve().parents[2] / "docs" / "reference" / "api.md").read_text()
    sections = set(re.findall(r"^###+ `([A-Z]+ [^`]+)`", reference, flags=re.MULTILINE))
    for route in ROUTES:
        path = re.sub(r":\w+}", "}", route.path.removeprefix("/api"))
        assert f"{route.method} {path}" in sections, f"docs/reference/api.md lacks {route.method} {path}"


def test_every_route_is_documented_for_people() -> None:
    for route in ROUTES:
        assert route.description, route.operation_id
        assert route.path.startswith("/api/"), route.path
        assert route.scope is not None or route.path == "/api/health", "only health is public"


def test_the_app_serves_the_table_worker_routes_first_and_only_its_methods(app: Starlette) -> None:
    """Every table route once, answering its method only: the worker loop's (``HOT_FIRST``, each
    a route of the table) first, the rest in the table's order; then the documents' routes."""
    served = [(r.path, r.methods) for r in app.routes if isinstance(r, StarletteRoute)]
    table = [(route.path, {route.method}) for route in ROUTES]
    hot = [(path, {method}) for method, path in HOT_FIRST]
    assert all(entry in table for entry in hot), "HOT_FIRST names a route the table lacks"
    assert served[: len(ROUTES)] == hot + [entry for entry in table if entry not in hot]
    assets = [f"{DOCS_PATH}/{name}" for name in SWAGGER_ASSETS]  # Swagger UI's own files
    dashboard = [DASHBOARD_PATH, *(f"{DASHBOARD_PATH}/{name}" for name in DASHBOARD_ASSETS)]
    assert [path for path, _ in served[len(ROUTES) :]] == [DOCUMENT_PATH, DOCS_PATH, *assets, *dashboard]
    assert len(app.routes) == len(ROUTES) + 2 + len(assets) + len(dashboard)


def test_the_document_has_exactly_the_tables_operations() -> None:
    found = document(ROUTES)
    operations = {(method.upper(), path) for path, item in found["paths"].items() for method in item}
    assert operations == {(route.method, openapi_path(route.path)) for route in ROUTES}
    for route in ROUTES:
        operation = found["paths"][openapi_path(route.path)][route.method.lower()]
        assert operation["operationId"] == route.operation_id
        assert operation["tags"] == list(route.tags)
        assert {"200", "500"} | {str(status) for status in route.errors} == set(operation["responses"])
        assert ("requestBody" in operation) == (route.body is not None)
        queried = {p["name"] for p in operation.get("parameters", []) if p["in"] == "query"}
        assert queried == {param.name for param in route.query}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(None, 50), ("1", 1), ("1000", 1000), ("0", None), ("1001", None), ("ten", None), ("", None)],
)
def test_a_query_parameter_is_validated_by_its_declared_type(raw: str | None, expected: Any) -> None:

    limit = QueryParam("limit", Annotated[int, Field(ge=1, le=1000)], 50)
    query = b"" if raw is None else f"limit={raw}".encode()
    request = Request({"type": "http", "method": "GET", "path": "/", "headers": [], "query_string": query})
    if expected is not None:
        assert limit.read(request) == expected
        return
    with pytest.raises(ValidationFailed) as refused:
        limit.read(request)
    assert refused.value.details is not None
    assert refused.value.details[0].startswith("limit: ")
