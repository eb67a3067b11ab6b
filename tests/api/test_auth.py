"""API.md A.2: API keys in X-API-Key or Authorization: Bearer, public routes, open mode."""

from __future__ import annotations

import httpx
import pytest

from tests.api.conftest import UNAUTHORIZED_HINT, create, ok, register
from tests.conftest import ADMIN_KEY, Api, ServerFactory

PROTECTED = [
    ("GET", "/api/tasks"),
    ("GET", "/api/tasks/1"),
    ("GET", "/api/tasks/1/history"),
    ("POST", "/api/tasks"),
    ("POST", "/api/tasks/batch"),
    ("POST", "/api/tasks/claim"),
    ("POST", "/api/tasks/1/complete"),
    ("POST", "/api/tasks/1/progress"),
    ("POST", "/api/tasks/1/heartbeat"),
    ("POST", "/api/tasks/1/cancel"),
    ("POST", "/api/tasks/1/retry"),
    ("DELETE", "/api/tasks/1"),
    ("GET", "/api/task-types"),
    ("GET", "/api/task-types/demo.echo"),
    ("POST", "/api/task-types/register"),
    ("DELETE", "/api/task-types/demo.echo"),
    ("GET", "/tasks"),
    ("POST", "/tasks/claim"),
]


def assert_unauthorized(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    body = response.json()
    assert body["success"] is False
    assert body["code"] == "unauthorized"
    assert body["error"] == "Unauthorized"
    assert body["message"] == UNAUTHORIZED_HINT


@pytest.mark.parametrize(("method", "path"), PROTECTED)
def test_every_protected_route_refuses_a_request_without_a_key(
    make_api: ServerFactory, method: str, path: str
) -> None:
    server = make_api(send_key=False)
    # A valid JSON body, so the refusal cannot come from body parsing.
    response = server.request(method, path, json={} if method == "POST" else None)
    assert_unauthorized(response)


def test_a_wrong_key_is_refused_in_either_header(make_api: ServerFactory) -> None:
    server = make_api(send_key=False)
    assert_unauthorized(server.get("/api/tasks", headers={"X-API-Key": "wrong"}))
    assert_unauthorized(server.get("/api/tasks", headers={"Authorization": "Bearer wrong"}))
    assert_unauthorized(server.get("/api/tasks", headers={"X-API-Key": ADMIN_KEY + "x"}))
    assert_unauthorized(server.get("/api/tasks", headers={"X-API-Key": ADMIN_KEY[:-1]}))


def test_the_key_must_be_sent_as_bearer_not_another_scheme(make_api: ServerFactory) -> None:
    server = make_api(send_key=False)
    assert_unauthorized(server.get("/api/tasks", headers={"Authorization": f"Basic {ADMIN_KEY}"}))
    assert_unauthorized(server.get("/api/tasks", headers={"Authorization": ADMIN_KEY}))
    assert_unauthorized(server.get("/api/tasks", headers={"Authorization": "Bearer"}))


def test_a_refused_request_changes_nothing(make_api: ServerFactory) -> None:
    server = make_api(send_key=False)
    keyed = {"X-API-Key": ADMIN_KEY}
    register_body = {"name": "demo.echo", "version": "1", "param_schema": {"type": "object"}}
    assert_unauthorized(server.post("/api/task-types/register", json=register_body))
    ok(server.post("/api/task-types/register", json=register_body, headers=keyed))
    assert_unauthorized(server.post("/api/tasks", json={"type": "demo.echo", "params": {}}))
    assert ok(server.get("/api/tasks", headers=keyed))["total"] == 0


def test_x_api_key_header_is_accepted(make_api: ServerFactory) -> None:
    server = make_api(send_key=False)
    data = ok(server.get("/api/tasks", headers={"X-API-Key": ADMIN_KEY}))
    assert data["total"] == 0


def test_authorization_bearer_is_accepted(make_api: ServerFactory) -> None:
    server = make_api(send_key=False)
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    register_body = {"name": "demo.echo", "version": "1", "param_schema": {"type": "object"}}
    assert ok(server.post("/api/task-types/register", json=register_body, headers=headers))["created"] is True
    lower = {"Authorization": f"bearer {ADMIN_KEY}"}
    assert ok(server.get("/api/task-types", headers=lower))["count"] == 1


def test_the_fixture_client_sends_a_working_key(api: Api) -> None:
    register(api)
    assert create(api)["status"] == "pending"


@pytest.mark.parametrize(
    "path", ["/api/health", "/health", "/api/openapi.json", "/openapi.json", "/api/docs", "/docs"]
)
def test_public_routes_need_no_key(make_api: ServerFactory, path: str) -> None:
    server = make_api(send_key=False)
    response = server.get(path)
    assert response.status_code == 200, response.text


def test_public_routes_ignore_a_wrong_key(make_api: ServerFactory) -> None:
    server = make_api(send_key=False)
    assert ok(server.get("/api/health", headers={"X-API-Key": "wrong"}))["status"] == "healthy"


def test_options_needs_no_key(make_api: ServerFactory) -> None:
    server = make_api(send_key=False)
    response = server.options("/api/tasks/claim")
    assert response.status_code == 200
    assert response.content == b""


def test_open_mode_accepts_requests_without_a_key(make_api: ServerFactory) -> None:
    server = make_api(api_key=None)
    assert "x-api-key" not in {name.lower() for name in server.headers}
    register(server)
    task = create(server, params={"n": 1})
    claimed = ok(server.post("/api/tasks/claim", json={"worker_id": "w1"}))
    assert claimed["id"] == task["id"]
    done = ok(server.post(f"/api/tasks/{task['id']}/complete", json={"worker_id": "w1", "success": True}))
    assert done["status"] == "completed"


def test_open_mode_also_accepts_a_key_it_does_not_know(make_api: ServerFactory) -> None:
    server = make_api(api_key=None)
    assert ok(server.get("/api/tasks", headers={"X-API-Key": "anything"}))["total"] == 0


def test_an_empty_configured_key_means_open_mode(make_api: ServerFactory) -> None:
    server = make_api(api_key="")
    assert ok(server.get("/api/task-types"))["count"] == 0
