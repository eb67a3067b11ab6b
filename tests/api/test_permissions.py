"""The permission matrix (API.md B.6): every route x every scope → allowed or 403; no key → 401.

"Allowed" means the request got past authentication and scopes: whatever it answers then (200,
or 400/404 for the placeholder ids and bodies used here) is not 401 or 403.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from taskmanager.engine.keys import SCOPES
from tests.api.conftest import ok
from tests.api.test_auth import assert_unauthorized
from tests.conftest import Api, ServerFactory

#: (method, path, scope the route needs). Public routes are listed in PUBLIC.
MATRIX: list[tuple[str, str, str]] = [
    ("POST", "/api/task-types/register", "types:write"),
    ("GET", "/api/task-types", "types:read"),
    ("GET", "/api/task-types/{name}", "types:read"),
    ("DELETE", "/api/task-types/{name}", "types:write"),
    ("POST", "/api/tasks", "tasks:write"),
    ("POST", "/api/tasks/batch", "tasks:write"),
    ("POST", "/api/tasks/{id}/cancel", "tasks:write"),
    ("POST", "/api/tasks/{id}/retry", "tasks:write"),
    ("GET", "/api/tasks", "tasks:read"),
    ("GET", "/api/tasks/{id}", "tasks:read"),
    ("GET", "/api/tasks/{id}/history", "tasks:read"),
    ("POST", "/api/tasks/claim", "tasks:work"),
    ("POST", "/api/tasks/complete-batch", "tasks:work"),
    ("POST", "/api/tasks/{id}/complete", "tasks:work"),
    ("POST", "/api/tasks/{id}/progress", "tasks:work"),
    ("POST", "/api/tasks/{id}/heartbeat", "tasks:work"),
    ("DELETE", "/api/tasks/{id}", "admin"),
    ("POST", "/api/tasks/bulk", "tasks:write"),
    ("GET", "/api/stats", "tasks:read"),
    ("GET", "/api/workers", "tasks:read"),
    ("GET", "/api/events", "tasks:read"),
    ("GET", "/api/metrics", "admin"),
    ("POST", "/api/api-keys", "admin"),
    ("GET", "/api/api-keys", "admin"),
    ("DELETE", "/api/api-keys/{id}", "admin"),
]
PUBLIC = [("GET", "/api/health"), ("GET", "/api/openapi.json"), ("GET", "/api/docs")]
BODIES: dict[str, Any] = {
    "/api/task-types/register": {"name": "perm.check", "version": "1", "param_schema": {"type": "object"}},
    "/api/tasks": {"type": "perm.check", "params": {}},
    "/api/tasks/batch": {"tasks": [{"type": "perm.check", "params": {}}]},
    "/api/tasks/claim": {"worker_id": "w"},
    "/api/tasks/complete-batch": {"worker_id": "w", "results": [{"id": 1, "success": True}]},
    "/api/tasks/{id}/complete": {"worker_id": "w", "success": True},
    "/api/tasks/{id}/progress": {"worker_id": "w", "progress": 1},
    "/api/tasks/{id}/heartbeat": {"worker_id": "w"},
    "/api/api-keys": {"name": "made in the matrix", "scopes": ["tasks:read"]},
    "/api/tasks/bulk": {"action": "cancel", "filter": {"ids": [999999]}},
}


def call(client: httpx.Client, method: str, template: str) -> httpx.Response:
    path = template.replace("{name}", "perm.check").replace("{id}", "999999")
    body = BODIES.get(template)
    return client.request(method, path, json=body if method == "POST" else None)


def expected(scope: str | None, needed: str) -> str:
    if scope is None:
        return "401"
    return "allowed" if scope in (needed, "admin") else "403"


def outcome(response: httpx.Response) -> str:
    if response.status_code in (401, 403):
        return str(response.status_code)
    assert response.status_code < 500, response.text
    return "allowed"


def test_the_matrix_covers_every_route_of_the_openapi_document(api: Api) -> None:
    document = api.get("/api/openapi.json").json()
    paths = document["paths"].items()
    documented = {(method.upper(), path) for path, item in paths for method in item if method != "parameters"}
    listed = {(m, p) for m, p, _ in MATRIX} | {(m, p) for m, p in PUBLIC if p != "/api/openapi.json"}
    assert documented - {("GET", "/api/docs")} == listed - {("GET", "/api/docs")}
    assert {scope for _, _, scope in MATRIX} == set(SCOPES)


@pytest.mark.parametrize("scope", [*SCOPES, None])
def test_each_scope_reaches_exactly_its_routes(make_api: ServerFactory, scope: str | None) -> None:
    admin = make_api()
    ok(admin.post("/api/task-types/register", json=BODIES["/api/task-types/register"]))
    headers: dict[str, str] = {}
    if scope is not None:
        key = ok(admin.post("/api/api-keys", json={"name": f"only {scope}", "scopes": [scope]}))["key"]
        headers = {"X-API-Key": key}
    table = {}
    with admin.new_client(headers) as client:
        for method, path, needed in MATRIX:
            response = call(client, method, path)
            table[(method, path)] = (outcome(response), expected(scope, needed))
            if response.status_code == 403:
                assert response.json()["message"] == "Insufficient permissions"
            if response.status_code == 401:
                assert_unauthorized(response)
        for method, path in PUBLIC:
            assert client.request(method, path).status_code == 200
    wrong = {route: got for route, got in table.items() if got[0] != got[1]}
    assert wrong == {}, wrong


def test_a_worker_key_claims_and_completes_but_cannot_create_or_read(make_api: ServerFactory) -> None:
    admin = make_api()
    ok(admin.post("/api/task-types/register", json=BODIES["/api/task-types/register"]))
    ok(admin.post("/api/tasks", json={"type": "perm.check", "params": {"secret": "s3"}}))
    key = ok(admin.post("/api/api-keys", json={"name": "worker", "scopes": ["tasks:work"]}))["key"]
    with admin.new_client({"X-API-Key": key}) as worker:
        claimed = ok(worker.post("/api/tasks/claim", json={"worker_id": "w1"}))
        assert claimed["params"] == {"secret": "s3"}  # what claiming returns, and nothing more
        for method, path in [("GET", "/api/tasks"), ("GET", f"/api/tasks/{claimed['id']}")]:
            assert worker.request(method, path).status_code == 403
        assert worker.post("/api/tasks", json={"type": "perm.check", "params": {}}).status_code == 403
        done = {"worker_id": "w1", "success": True, "lease_token": claimed["lease_token"]}
        assert ok(worker.post(f"/api/tasks/{claimed['id']}/complete", json=done))["status"] == "completed"


#: A key limited to these types (API.md B.6 ``types``): ``*`` is any run of characters and every
#: other character is itself — ``_`` and ``%`` included, which SQL LIKE would read as wildcards.
MINE = ["perm.mine.*", "exact_name"]
MY_TYPES = ["perm.mine.a", "perm.mine.b.c", "exact_name"]
OTHER_TYPES = ["perm.other", "perm.mineXa", "exactXname", "perm.mine"]
WORK_SCOPES = ["types:read", "tasks:read", "tasks:write", "tasks:work"]


def test_a_key_limited_to_types_never_sees_or_touches_another_types_task(make_api: ServerFactory) -> None:
    admin = make_api()
    ids: dict[str, int] = {}
    for name in MY_TYPES + OTHER_TYPES:
        body = {"name": name, "version": "1", "param_schema": {"type": "object"}}
        ok(admin.post("/api/task-types/register", json=body))
        ids[name] = ok(admin.post("/api/tasks", json={"type": name, "params": {}}))["id"]
    created = ok(admin.post("/api/api-keys", json={"name": "scoped", "scopes": WORK_SCOPES, "types": MINE}))
    assert created["types"] == MINE
    listed = ok(admin.get("/api/api-keys"))["items"]
    assert [k["types"] for k in listed if k["id"] == created["id"]] == [MINE]
    with admin.new_client({"X-API-Key": created["key"]}) as key:
        # Reads: its own types' tasks only; another type's task is 404 as if it did not exist.
        page = ok(key.get("/api/tasks", params={"limit": 100}))
        assert sorted(t["type"] for t in page["tasks"]) == sorted(MY_TYPES)
        assert page["total"] == len(MY_TYPES)
        for name in OTHER_TYPES:
            for path in (f"/api/tasks/{ids[name]}", f"/api/tasks/{ids[name]}/history"):
                answer = key.get(path)
                assert (path, answer.status_code, answer.json()["message"]) == (path, 404, "Task not found")
        for name in MY_TYPES:
            assert ok(key.get(f"/api/tasks/{ids[name]}"))["type"] == name
        # Creates: another type is 404 as if it did not exist, alone and in a batch.
        refused = key.post("/api/tasks", json={"type": "perm.other", "params": {}})
        assert (refused.status_code, refused.json()["message"]) == (404, "Task type not found")
        items = [{"type": "perm.mine.a", "params": {"n": 1}}, {"type": "exactXname", "params": {}}]
        results = ok(key.post("/api/tasks/batch", json={"tasks": items}))["results"]
        assert [r["error"] for r in results] == [None, "Task type not found"]
        # Claims: even asked for everything, by a pattern or by name, only its own types.
        assert (
            key.post("/api/tasks/claim", json={"worker_id": "k", "types": ["perm.other"]}).status_code == 404
        )
        claimed = ok(key.post("/api/tasks/claim", json={"worker_id": "k", "limit": 100, "type_pattern": "%"}))
        assert sorted(t["type"] for t in claimed["tasks"]) == sorted([*MY_TYPES, "perm.mine.a"])
        assert key.post("/api/tasks/claim", json={"worker_id": "k"}).status_code == 404
        # Reports and operator actions on another type's task, even holding its lease: 404.
        other = ok(admin.post("/api/tasks/claim", json={"worker_id": "w", "types": ["perm.other"]}))
        held = {"worker_id": "w", "lease_token": other["lease_token"]}
        for action, body in (
            ("complete", {**held, "success": True}),
            ("progress", {**held, "progress": 50}),
            ("heartbeat", held),
            ("cancel", {}),
            ("retry", {}),
        ):
            answer = key.post(f"/api/tasks/{other['id']}/{action}", json=body)
            assert (action, answer.status_code) == (action, 404), answer.text
        batch = {
            "worker_id": "w",
            "results": [{"id": other["id"], "success": True, "lease_token": other["lease_token"]}],
        }
        (entry,) = ok(key.post("/api/tasks/complete-batch", json=batch))["results"]
        assert entry["error"] == "Task not found"
        # Its own claimed task it reports as any key does.
        mine = claimed["tasks"][0]
        done = {"worker_id": "k", "success": True, "lease_token": mine["lease_token"]}
        assert ok(key.post(f"/api/tasks/{mine['id']}/complete", json=done))["status"] == "completed"
    after = ok(admin.get(f"/api/tasks/{other['id']}"))
    assert (after["status"], after["progress"], after["claimed_by"]) == ("claimed", 0, "w")
    for name in OTHER_TYPES[1:]:
        assert ok(admin.get(f"/api/tasks/{ids[name]}"))["status"] == "pending"


@pytest.mark.parametrize("types", [[], [""], ["  "], ["a\nb"], "perm.*", [7]])
def test_bad_type_patterns_are_400_naming_types(api: Api, types: Any) -> None:
    answer = api.post("/api/api-keys", json={"name": "bad", "scopes": ["tasks:work"], "types": types})
    assert answer.status_code == 400, answer.text
    assert answer.json()["details"][0].startswith("types"), answer.json()
