"""Reading request input: JSON bodies and the path and query values routes parse themselves."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import BaseModel
from starlette.requests import Request

from taskmanager.errors import InvalidJSON, NotFound, ValidationFailed
from taskmanager.models import parse_body

M = TypeVar("M", bound=BaseModel)
#: Largest id a path may name (64-bit signed); anything else cannot exist.
MAX_ID = 2**63 - 1


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


async def read_json(request: Request, *, optional: bool = False) -> Any:
    """The body as JSON; 400 ``Invalid JSON in request body`` when empty or malformed."""
    raw = await request.body()
    if not raw.strip():
        if optional:
            return {}
        raise InvalidJSON()
    try:
        return json.loads(raw, parse_constant=_no_constants)
    except (ValueError, RecursionError):
        raise InvalidJSON() from None


async def body(
    request: Request, model: type[M], *, missing_message: str | None = None, optional: bool = False
) -> M:
    return parse_body(model, await read_json(request, optional=optional), missing_message=missing_message)


def task_id(value: str, message: str = "Task not found") -> int:
    """A path id: an integer, or 404 (a non-number can name no task)."""
    if not value.isdigit() or int(value) > MAX_ID:
        raise NotFound(message)
    return int(value)


def query_int(request: Request, name: str, default: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValidationFailed("Validation failed", details=[f"{name}: must be an integer"]) from None


def query_bool(request: Request, name: str) -> bool:
    return request.query_params.get(name, "").lower() in ("1", "true", "yes", "on")
