"""The response envelope (docs/reference/api.md, Conventions), for successes and errors alike."""

from __future__ import annotations

import json
import time
from typing import Any

from starlette.responses import Response

from taskmanager.engine.service import Reply
from taskmanager.errors import TaskManagerError

JSON = "application/json"


#: Compact, UTF-8 JSON; one encoder for every response (``json.dumps`` with options builds one per call).
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def dumps(body: Any) -> bytes:
    return _ENCODER.encode(body).encode()


def now_seconds() -> int:
    return int(time.time())


def ok(reply: Reply) -> Response:
    body = {
        "success": True,
        "message": reply.message,
        "data": reply.data,
        "timestamp": now_seconds(),
    }
    return Response(dumps(body), 200, media_type=JSON)


def error_body(exc: TaskManagerError) -> dict[str, Any]:
    body: dict[str, Any] = {
        "success": False,
        "error": exc.error,
        "message": exc.message,
        "code": exc.code,
        "timestamp": now_seconds(),
    }
    if exc.details:
        body["details"] = exc.details
    if exc.data:
        body["data"] = exc.data
    if exc.extra:
        body.update({k: v for k, v in exc.extra.items() if k not in body})
    return body


def error(exc: TaskManagerError, headers: dict[str, str] | None = None) -> Response:
    return Response(dumps(error_body(exc)), exc.status, headers=headers, media_type=JSON)
