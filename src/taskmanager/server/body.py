"""Reading request input: JSON bodies, and the path and query values routes parse themselves."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import BaseModel
from starlette.requests import Request

from taskmanager.errors import InvalidJSON, NotFound
from taskmanager.models import check_json, parse_body
from taskmanager.models import check_text as check_text  # path and query values use it too

M = TypeVar("M", bound=BaseModel)
#: Largest id a path may name (64-bit signed); anything else cannot exist.
MAX_ID = 2**63 - 1


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


#: One decoder for every body (``json.loads`` with options builds one per call).
_DECODER = json.JSONDecoder(parse_constant=_no_constants)


async def read_json(request: Request, *, optional: bool = False) -> Any:
    """The body as JSON; 400 ``Invalid JSON in request body`` when empty or malformed."""
    raw = await request.body()
    if not raw.strip():
        if optional:
            return {}
        raise InvalidJSON()
    try:
        # As json.loads reads bytes: UTF-8, -16 or -32, told apart by the first bytes.
        parsed = _DECODER.decode(raw.decode(json.detect_encoding(raw), "surrogatepass"))
    except (ValueError, RecursionError):
        raise InvalidJSON() from None
    check_json(parsed)
    return parsed


async def body(
    request: Request, model: type[M], *, missing_message: str | None = None, optional: bool = False
) -> M:
    return parse_body(model, await read_json(request, optional=optional), missing_message=missing_message)


def task_id(value: str, message: str = "Task not found") -> int:
    """A path id: an integer, or 404 (a non-number can name no task)."""
    if not value.isdigit() or int(value) > MAX_ID:
        raise NotFound(message)
    return int(value)


def flag(value: str | None) -> bool:
    """A yes/no query value: ``1``, ``true``, ``yes`` or ``on`` (any case) is yes, anything else no."""
    return (value or "").lower() in ("1", "true", "yes", "on")
