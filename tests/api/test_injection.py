"""Injection strings in every string field: stored verbatim or refused with 400, never executed,
never a 5xx. (``$ref`` and regex-DoS schemas are in test_schema_safety.py.)"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.api.conftest import ok, register
from tests.conftest import Api

STORED = [
    "'; DROP TABLE tasks; --",
    '" OR "1"="1',
    "1); DELETE FROM task_types WHERE (1=1",
    "%' OR 1=1 --",
    "\\'; SELECT pg_sleep(10); --",
    "_%_%\\%",
    "../../../../etc/passwd",
    "{{7*7}}${7*7}<script>alert(1)</script>",
    "(a+)+$",
    "9" * 400,
    "ünïcødé ✓ \U0001d54f \u202e drow",
    "x" * 255,
]
#: Refused with a 400 naming the field: no database stores these in text.
REFUSED = ["a\x00b", "\ud800"]
POSTS = [
    "/api/task-types/register",
    "/api/tasks",
    "/api/tasks/batch",
    "/api/tasks/claim",
    "/api/tasks/complete-batch",
    "/api/tasks/1/complete",
    "/api/tasks/1/progress",
    "/api/tasks/1/heartbeat",
    "/api/tasks/1/cancel",
    "/api/api-keys",
]


def answered(response: httpx.Response) -> httpx.Response:
    assert response.status_code < 500, response.text
    return response


def stored(response: httpx.Response) -> Any:
    return ok(answered(response))


@pytest.mark.parametrize("text", STORED)
def test_hostile_strings_are_stored_verbatim_in_every_field(api: Api, text: str) -> None:
    name = text[:255]
    kept = stored(
        api.post(
            "/api/task-types/register",
            json={
                "name": name,
                "version": text[:50],
                "description": text,
                "param_schema": {"type": "object"},
            },
        )
    )
    read = stored(api.get(f"/api/task-types/{quote(name, safe='')}"))
    assert (read["name"], read["version"], read["description"]) == (name, text[:50], text)
    assert kept["id"] == read["id"]
    task = stored(
        api.post(
            "/api/tasks",
            json={"type": name, "params": {text: text, "n": [text]}, "dedupe_key": name, "assigned_to": name},
        )
    )
    # type_pattern is a LIKE filter by design (%, _ and, on PostgreSQL, a backslash are special).
    answered(api.post("/api/tasks/claim", json={"worker_id": "other", "type_pattern": name}))
    claimed = stored(api.post("/api/tasks/claim", json={"worker_id": name, "types": [name]}))
    assert claimed["id"] == task["id"]
    assert claimed["params"] == {text: text, "n": [text]}
    assert (claimed["dedupe_key"], claimed["claimed_by"]) == (name, name)
    stored(
        api.post(
            f"/api/tasks/{task['id']}/progress", json={"worker_id": name, "progress": 5, "message": text}
        )
    )
    done = {"worker_id": name, "success": True, "result": {text: text}, "error": text}
    stored(api.post(f"/api/tasks/{task['id']}/complete", json=done))
    final = stored(api.get(f"/api/tasks/{task['id']}"))
    assert (final["result"], final["error_message"]) == ({text: text}, text)
    history = stored(api.get(f"/api/tasks/{task['id']}/history"))
    assert text in [e["message"] for e in history["events"]]
    listed = stored(api.get("/api/tasks", params={"type": name, "worker_id": name}))
    if not {"%", "\\"} & set(name):  # with % the type filter is a LIKE pattern (API.md A.7)
        assert [t["id"] for t in listed["tasks"]] == [task["id"]]
    key = stored(api.post("/api/api-keys", json={"name": name, "scopes": ["tasks:read"]}))
    assert key["name"] == name.strip()
    second = stored(api.post("/api/tasks", json={"type": name, "params": {}}))
    stored(api.post(f"/api/tasks/{second['id']}/cancel", json={"reason": text}))
    assert stored(api.get(f"/api/tasks/{second['id']}"))["error_message"] == text
    # Nothing was executed: every table is still there and holds what was written.
    assert stored(api.get("/api/tasks"))["total"] == 2
    assert stored(api.get("/api/task-types"))["count"] == 1


@pytest.mark.parametrize("text", REFUSED)
@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        (
            "/api/task-types/register",
            {"name": "@@", "version": "1", "param_schema": {"type": "object"}},
            "name",
        ),
        (
            "/api/task-types/register",
            {"name": "t", "version": "@@", "param_schema": {"type": "object"}},
            "version",
        ),
        ("/api/tasks", {"type": "t", "params": {"k": "@@"}}, "params.k"),
        ("/api/tasks", {"type": "t", "params": {}, "dedupe_key": "@@"}, "dedupe_key"),
        ("/api/tasks/claim", {"worker_id": "@@"}, "worker_id"),
        ("/api/tasks/1/complete", {"worker_id": "w", "success": False, "error": "@@"}, "error"),
        ("/api/tasks/1/progress", {"worker_id": "w", "progress": 1, "message": "@@"}, "message"),
        ("/api/tasks/1/cancel", {"reason": "@@"}, "reason"),
        ("/api/api-keys", {"name": "@@", "scopes": ["admin"]}, "name"),
    ],
)
def test_nul_and_lone_surrogates_are_refused_naming_the_field(
    api: Api, text: str, path: str, body: dict[str, Any], field: str
) -> None:
    register(api, "t")
    raw = (
        httpx.Request("POST", "x", json=body)
        .content.decode()
        .replace("@@", text.encode("unicode_escape").decode().replace("\\x00", "\\u0000"))
    )
    response = answered(api.post(path, content=raw.encode(), headers={"Content-Type": "application/json"}))
    assert response.status_code == 400, response.text
    assert any(d.startswith(field) for d in response.json()["details"]), response.text


@pytest.mark.parametrize("path", POSTS)
@pytest.mark.parametrize(
    "raw", [b'{"name": "\xff\xfe"}', b'{"a": "\xc3\x28"}', b'{"a": "\xed\xa0\x80"}', b"\x00"]
)
def test_invalid_utf8_is_400_invalid_json_on_every_post(api: Api, path: str, raw: bytes) -> None:
    response = answered(api.post(path, content=raw, headers={"Content-Type": "application/json"}))
    assert response.status_code == 400, response.text
    # Python's JSON reader passes UTF-8-encoded surrogates through; they are then refused as text.
    assert response.json()["code"] in ("invalid_json", "validation_failed")


@pytest.mark.parametrize("text", [*STORED, "a\x00b", "%00", "%ZZ", "\ud800"])
def test_hostile_query_and_path_values_never_fail(api: Api, text: str) -> None:
    register(api, "t")
    safe = quote(text.encode("utf-8", "surrogatepass"), safe="")
    for name in ("status", "type", "worker_id", "limit", "offset"):
        answered(api.get(f"/api/tasks?{name}={safe}"))
    for path in (
        f"/api/task-types/{safe}",
        f"/api/tasks/{safe}",
        f"/api/tasks/{safe}/history",
        f"/api/api-keys/{safe}",
    ):
        method = "DELETE" if "api-keys" in path else "GET"
        assert answered(api.request(method, path)).status_code in (400, 404)
