"""Reading request input: JSON bodies, and the path and query values routes parse themselves."""

from __future__ import annotations

import json
import math
import re
from typing import Any, TypeVar

from pydantic import BaseModel
from starlette.requests import Request

from taskmanager.errors import InvalidJSON, NotFound, ValidationFailed
from taskmanager.models import parse_body

M = TypeVar("M", bound=BaseModel)
#: Largest id a path may name (64-bit signed); anything else cannot exist.
MAX_ID = 2**63 - 1
#: Deepest nesting accepted in a body: deep enough for real params, shallow enough that no
#: recursive validator or encoder can run out of stack.
MAX_JSON_DEPTH = 64
_SURROGATE = re.compile("[\ud800-\udfff]")


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


#: One decoder for every body (``json.loads`` with options builds one per call).
_DECODER = json.JSONDecoder(parse_constant=_no_constants)


def check_text(name: str, value: str) -> str:
    """Refuse NUL characters (no database stores them in text, so they would be lost or fail) and
    lone UTF-16 surrogates (``"\\ud800"`` in JSON: no UTF-8 text can hold one)."""
    if "\x00" in value:
        raise ValidationFailed("Validation failed", details=[f"{name}: NUL characters are not allowed"])
    if _SURROGATE.search(value):
        raise ValidationFailed(
            "Validation failed", details=[f"{name}: lone surrogates are not valid Unicode"]
        )
    return value


def _check_shape(value: Any) -> None:
    """Bound nesting depth and refuse NUL characters anywhere in a body (iteratively)."""
    stack: list[tuple[Any, int, str]] = [(value, 1, "body")]
    while stack:
        node, depth, where = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise ValidationFailed(
                "Validation failed", details=[f"{where}: nested deeper than {MAX_JSON_DEPTH} levels"]
            )
        if isinstance(node, str):
            check_text(where, node)
        elif isinstance(node, float) and not math.isfinite(node):
            raise ValidationFailed("Validation failed", details=[f"{where}: number out of range"])
        elif isinstance(node, dict):
            for key, item in node.items():
                check_text(where, key)
                stack.append((item, depth + 1, key if where == "body" else f"{where}.{key}"))
        elif isinstance(node, list):
            stack.extend((item, depth + 1, f"{where}[{i}]") for i, item in enumerate(node))


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
    _check_shape(parsed)
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
