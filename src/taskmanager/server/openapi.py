"""The OpenAPI 3.1 document, made from the route table, and the Swagger UI page that shows it.

Every schema in it is pydantic's JSON Schema of a model the routes name: request bodies, the
envelope around each route's data, the error envelope; query parameters are described by the
same types that validate them (`QueryParam`). Nothing is read from the running app: an app builds
the document on its first request for it and keeps it.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response
from starlette.routing import Route as StarletteRoute

from taskmanager import __version__, models
from taskmanager.server.envelope import JSON, dumps
from taskmanager.server.table import QueryParam, Route

TITLE = "TaskManager API"
DOCUMENT_PATH = "/api/openapi.json"
DOCS_PATH = "/api/docs"
#: Swagger UI's own files, served by the server from the swagger-ui-bundle-v2 package (no CDN: the
#: page works with no internet).
SWAGGER_ASSETS = {"swagger-ui.css": "text/css", "swagger-ui-bundle.js": "text/javascript"}
DESCRIPTION = """\
A self-hosted work queue for workers that speak HTTP, compatible with the PrismQ TaskManager API.

Every response is an envelope: `{"success": true, "message", "data", "timestamp"}` or
`{"success": false, "error", "message", "code", "timestamp", "details"?}`. Routes live under
`/api` and are answered at the root too.
"""
ERROR_STATUSES = {
    400: "Invalid JSON, or input that breaks a rule (see `code` and `details`)",
    401: "Missing or wrong API key",
    403: "Insufficient permissions, or the task is claimed by another worker",
    404: "Not found",
    409: "Lease lost or conflicting state",
    413: "Request body too large",
    429: "Rate limited or queue full",
    500: "Internal error (no internals are ever included)",
    503: "Database unavailable",
}
SECURITY_SCHEMES = {
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
    "bearer": {"type": "http", "scheme": "bearer"},
}
REF = "#/components/schemas/{model}"
_CONVERTOR = re.compile(r"\{(\w+)(:\w+)?\}")


def openapi_path(path: str) -> str:
    """``/api/task-types/{name:path}`` → ``/api/task-types/{name}``."""
    return _CONVERTOR.sub(r"{\1}", path)


def _json(value: Any) -> Any:
    return {"application/json": {"schema": value}}


def _parameters(route: Route[Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"title": name.title(), "type": "string"}}
        for name, _convertor in _CONVERTOR.findall(route.path)
    ]
    return found + [_query_parameter(param) for param in route.query]


def _query_parameter(param: QueryParam) -> dict[str, Any]:
    schema = {**param.adapter.json_schema(), "title": param.name.replace("_", " ").title()}
    if param.default is not None:
        schema["default"] = param.default
    parameter = {"name": param.name, "in": "query", "required": False, "schema": schema}
    if param.description:
        schema["description"] = parameter["description"] = param.description
    return parameter


def envelope(route: Route[Any]) -> type[BaseModel]:
    """The success envelope of ``route``, its data's model inside."""
    model: type[BaseModel] = models.Envelope[route.data]  # type: ignore[name-defined]
    return model


def _operation(route: Route[Any], refs: dict[Any, Any]) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "tags": list(route.tags),
        "summary": route.summary,
        "description": route.description,
        "operationId": route.operation_id,
    }
    if route.scope is None:
        operation["security"] = []
    parameters = _parameters(route)
    if parameters:
        operation["parameters"] = parameters
    if route.body is not None:
        body = {"$ref": REF.format(model=route.body.__name__)}
        operation["requestBody"] = {"required": route.body_required, "content": _json(body)}
    if route.produces is None:
        content = _json(refs[envelope(route), "serialization"])
    else:
        content = {route.produces: {"schema": {"type": "string"}}}
    responses: dict[str, Any] = {"200": {"description": "Success", "content": content}}
    for status in sorted({*route.errors, 500}):
        error = refs[models.ErrorEnvelope, "serialization"]
        responses[str(status)] = {"description": ERROR_STATUSES[status], "content": _json(error)}
    operation["responses"] = responses
    return operation


def document(routes: Sequence[Route[Any]]) -> dict[str, Any]:
    """The OpenAPI document of ``routes``."""
    wanted: list[tuple[type[BaseModel], JsonSchemaMode]] = [(models.ErrorEnvelope, "serialization")]
    wanted += [(envelope(route), "serialization") for route in routes if route.produces is None]
    wanted += [(route.body, "validation") for route in routes if route.body is not None]
    refs, definitions = models_json_schema(list(dict.fromkeys(wanted)), ref_template=REF)
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(openapi_path(route.path), {})[route.method.lower()] = _operation(route, refs)
    return {
        "openapi": "3.1.0",
        "info": {"title": TITLE, "version": __version__, "description": DESCRIPTION},
        "paths": paths,
        "components": {"schemas": definitions.get("$defs", {}), "securitySchemes": SECURITY_SCHEMES},
        "security": [{name: []} for name in SECURITY_SCHEMES],
    }


SWAGGER_PAGE = """<!DOCTYPE html>
<html>
<head>
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<link type="text/css" rel="stylesheet" href="{assets}/swagger-ui.css">
<title>{title}</title>
</head>
<body>
<div id="swagger-ui"></div>
<script src="{assets}/swagger-ui-bundle.js"></script>
<script>
const ui = SwaggerUIBundle({{
    url: '{url}',
    dom_id: '#swagger-ui',
    layout: 'BaseLayout',
    deepLinking: true,
    showExtensions: true,
    showCommonExtensions: true,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
}})
</script>
</body>
</html>
"""


def document_routes(routes: Iterable[Route[Any]]) -> list[StarletteRoute]:
    """``GET /api/openapi.json`` and ``GET /api/docs``, public, for ``routes``.

    Under a sub-path mount (``root_path``) the document names it as its server, and the page
    points at the document below it.
    """
    table = tuple(routes)
    built = functools.cache(lambda: document(table))

    async def serve_document(request: Request) -> Response:
        root = request.scope.get("root_path", "")
        found = {**built(), "servers": [{"url": root}]} if root else built()
        return Response(dumps(found), media_type=JSON)

    async def serve_docs(request: Request) -> Response:
        root = request.scope.get("root_path", "")
        url = json.dumps(root + DOCUMENT_PATH)[1:-1]
        title = f"{TITLE} - Swagger UI"
        return HTMLResponse(SWAGGER_PAGE.format(title=title, url=url, assets=root + DOCS_PATH))

    return [
        StarletteRoute(DOCUMENT_PATH, serve_document, methods=["GET"], include_in_schema=False),
        StarletteRoute(DOCS_PATH, serve_docs, methods=["GET"], include_in_schema=False),
        *(
            StarletteRoute(f"{DOCS_PATH}/{name}", _asset(name, media_type), include_in_schema=False)
            for name, media_type in SWAGGER_ASSETS.items()
        ),
    ]


def _asset(name: str, media_type: str) -> Callable[[Request], Awaitable[Response]]:
    """A route answering one of Swagger UI's files from the installed package."""
    from swagger_ui_bundle import swagger_ui_path

    path = Path(str(swagger_ui_path)) / name

    async def serve(_request: Request) -> Response:
        return FileResponse(path, media_type=media_type)

    return serve
