"""OpenAPI helpers: document the real request bodies and the envelope around every response."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from taskmanager import models

#: Request-body models referenced from routes, added to components.schemas at generation time.
BODY_MODELS: dict[str, type[BaseModel]] = {}

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


def request_body(model: type[BaseModel], *, required: bool = True) -> dict[str, Any]:
    BODY_MODELS[model.__name__] = model
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"required": required, "content": {"application/json": {"schema": ref}}}}


def responses(data: Any, *errors: int) -> dict[int | str, dict[str, Any]]:
    """200 with the envelope around ``data``, plus the listed error statuses."""
    found: dict[int | str, dict[str, Any]] = {}
    if data is not None:
        found[200] = {"model": models.Envelope[data], "description": "Success"}
    for status in sorted({*errors, 500}):
        found[status] = {"model": models.ErrorEnvelope, "description": ERROR_STATUSES[status]}
    return found


def add_body_schemas(schema: dict[str, Any]) -> dict[str, Any]:
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for name, model in BODY_MODELS.items():
        generated = model.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(generated.pop("$defs", {}))
        components[name] = generated
    schema["components"]["securitySchemes"] = {
        "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
        "bearer": {"type": "http", "scheme": "bearer"},
    }
    schema["security"] = [{"apiKey": []}, {"bearer": []}]
    return schema
