"""API.md A.1 and A.3: the envelope, the headers on every response, paths, bodies and health."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from taskmanager import __version__
from taskmanager.server.app import create_app
from taskmanager.settings import Settings
from tests.api.conftest import create, fails, ok, register
from tests.conftest import Api, RunningServer, ServerFactory

SECURITY_HEADERS = {
    "cache-control": "no-store, no-cache, must-revalidate, max-age=0",
    "pragma": "no-cache",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "access-control-allow-methods": "GET, POST, PUT, DELETE, OPTIONS",
    "access-control-allow-headers": "Content-Type, Authorization, X-API-Key",
}


def assert_edge_headers(response: httpx.Response, origin: str = "*") -> None:
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == value, (name, response.status_code)
    assert response.headers.get("access-control-allow-origin") == origin


# -- the envelope ---------------------------------------------------------------------------


def test_success_envelope_has_exactly_the_four_keys(api: Api) -> None:
    response = api.get("/api/health")
    body = response.json()
    assert set(body) == {"success", "message", "data", "timestamp"}
    assert body["success"] is True
    assert abs(body["timestamp"] - time.time()) < 60
    assert response.headers["content-type"].startswith("application/json")


def test_error_envelope_repeats_the_text_in_error_and_message(api: Api) -> None:
    body = fails(api.get("/api/tasks/999"), 404, "not_found", "Task not found")
    assert set(body) == {"success", "error", "message", "code", "timestamp"}
    assert abs(body["timestamp"] - time.time()) < 60


def test_field_validation_errors_carry_details(api: Api) -> None:
    register(api)
    body = fails(api.post("/api/tasks", json={"type": "demo.echo"}), 400, "validation_failed")
    assert body["message"] == "Validation failed"
    assert isinstance(body["details"], list)
    assert any(entry.startswith("params:") for entry in body["details"])


def test_creates_answer_200_not_201(api: Api) -> None:
    response = api.post(
        "/api/task-types/register",
        json={"name": "demo.echo", "version": "1", "param_schema": {"type": "object"}},
    )
    assert response.status_code == 200
    response = api.post("/api/tasks", json={"type": "demo.echo", "params": {}})
    assert response.status_code == 200


def test_ids_are_integers_and_timestamps_are_utc_z(api: Api) -> None:
    type_data = register(api)
    task = create(api)
    assert isinstance(type_data["id"], int)
    assert isinstance(task["id"], int)
    assert isinstance(task["type_id"], int)
    assert task["created_at"].endswith("Z")
    assert task["created_at"].startswith("2026-01-01T12:00:00")
    assert task["claimed_at"] is None
    assert type_data["is_active"] is True


# -- headers on every response ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/api/health", 200),
        ("GET", "/api/tasks", 200),
        ("GET", "/api/tasks/12345", 404),
        ("GET", "/api/no-such-route", 404),
        ("POST", "/api/tasks", 400),
        ("OPTIONS", "/api/tasks", 200),
        ("GET", "/api/openapi.json", 200),
    ],
)
def test_every_response_carries_cache_security_and_cors_headers(
    api: Api, method: str, path: str, status: int
) -> None:
    response = api.request(method, path, content=b"{" if method == "POST" else None)
    assert response.status_code == status
    assert_edge_headers(response)


def test_headers_also_on_401_and_413(make_api: ServerFactory) -> None:
    server = make_api(send_key=False, max_request_bytes=2048)
    unauthorized = server.get("/api/tasks")
    assert unauthorized.status_code == 401
    assert_edge_headers(unauthorized)
    too_large = server.post("/api/tasks", content=b"x" * 4096, headers={"Content-Type": "application/json"})
    assert too_large.status_code == 413
    assert_edge_headers(too_large)


def test_options_is_200_with_an_empty_body_and_no_key(make_api: ServerFactory) -> None:
    server = make_api(send_key=False)
    for path in ("/api/tasks", "/api/tasks/1/complete", "/tasks/claim", "/anything/at/all"):
        response = server.options(path, headers={"Access-Control-Request-Method": "POST"})
        assert response.status_code == 200
        assert response.content == b""
        assert_edge_headers(response)


def test_listed_origin_is_echoed_with_vary(make_api: ServerFactory) -> None:
    server = make_api(cors_origins="https://a.example, https://b.example")
    for origin in ("https://a.example", "https://b.example"):
        response = server.get("/api/health", headers={"Origin": origin})
        assert response.headers["access-control-allow-origin"] == origin
        assert "Origin" in response.headers["vary"]
        preflight = server.options("/api/tasks", headers={"Origin": origin})
        assert preflight.headers["access-control-allow-origin"] == origin
        assert "Origin" in preflight.headers["vary"]


def test_unlisted_origin_is_not_echoed(make_api: ServerFactory) -> None:
    server = make_api(cors_origins="https://a.example, https://b.example")
    for headers in ({"Origin": "https://evil.example"}, {}):
        response = server.get("/api/health", headers=headers)
        assert response.status_code == 200
        # Every response carries the header (A.1): the first listed origin, which the unlisted
        # origin's browser refuses, and Vary so caches keep the answers apart.
        assert response.headers["access-control-allow-origin"] == "https://a.example"
        assert "Origin" in response.headers["vary"]


def test_default_origin_is_a_wildcard_even_when_an_origin_is_sent(api: Api) -> None:
    response = api.get("/api/health", headers={"Origin": "https://anywhere.example"})
    assert response.headers["access-control-allow-origin"] == "*"


# -- paths ----------------------------------------------------------------------------------


def test_routes_answer_at_the_root_without_the_api_prefix(api: Api) -> None:
    register(api)
    created = ok(api.post("/tasks", json={"type": "demo.echo", "params": {"a": 1}}))
    assert ok(api.get(f"/tasks/{created['id']}"))["params"] == {"a": 1}
    assert ok(api.get("/task-types/demo.echo"))["name"] == "demo.echo"
    assert ok(api.get("/health"))["status"] == "healthy"
    claimed = ok(api.post("/tasks/claim", json={"worker_id": "w1"}))
    assert claimed["id"] == created["id"]


def test_a_trailing_slash_is_ignored(api: Api) -> None:
    register(api)
    created = ok(api.post("/api/tasks/", json={"type": "demo.echo", "params": {}}))
    assert ok(api.get(f"/api/tasks/{created['id']}/"))["id"] == created["id"]
    assert ok(api.get("/tasks/"))["total"] == 1
    assert ok(api.get("/api/task-types/"))["count"] == 1
    assert ok(api.get("/health/"))["status"] == "healthy"


def test_unknown_routes_are_404_not_found(api: Api) -> None:
    for path in ("/api/nope", "/nope", "/api/tasks/1/unknown-action"):
        fails(api.get(path), 404, "not_found")
    fails(api.post("/api/health", json={}), 404, "not_found")


# -- request bodies -------------------------------------------------------------------------


@pytest.mark.parametrize("raw", [b"", b"   ", b"{", b"{'type': 'x'}", b"not json", b'{"a": NaN}'])
def test_empty_or_malformed_json_is_400_invalid_json(api: Api, raw: bytes) -> None:
    register(api)
    response = api.post("/api/tasks", content=raw, headers={"Content-Type": "application/json"})
    fails(response, 400, "invalid_json", "Invalid JSON in request body")


def test_invalid_json_on_every_kind_of_post(api: Api) -> None:
    for path in ("/api/task-types/register", "/api/tasks/claim", "/api/tasks/1/complete", "/api/tasks/batch"):
        response = api.post(path, content=b"{oops", headers={"Content-Type": "application/json"})
        fails(response, 400, "invalid_json", "Invalid JSON in request body")


def test_a_json_body_that_is_not_an_object_is_a_validation_error(api: Api) -> None:
    register(api)
    body = fails(api.post("/api/tasks", json=[1, 2]), 400, "validation_failed", "Validation failed")
    assert body["details"]


def test_a_body_over_the_size_limit_is_413(make_live_api: ServerFactory) -> None:
    server = make_live_api(max_request_bytes=2048)
    register(server)
    big = {"type": "demo.echo", "params": {"blob": "x" * 4000}}
    fails(server.post("/api/tasks", json=big), 413, "payload_too_large")
    assert ok(server.get("/api/tasks"))["total"] == 0
    small = {"type": "demo.echo", "params": {"blob": "x" * 1000}}
    assert ok(server.post("/api/tasks", json=small))["status"] == "pending"


def test_a_body_exactly_at_the_limit_is_accepted(make_live_api: ServerFactory) -> None:
    server = make_live_api(max_request_bytes=2048)
    register(server)

    def body_of(size: int) -> bytes:
        head, tail = b'{"type":"demo.echo","params":{"blob":"', b'"}}'
        return head + b"x" * (size - len(head) - len(tail)) + tail

    headers = {"Content-Type": "application/json"}
    assert ok(server.post("/api/tasks", content=body_of(2048), headers=headers))["status"] == "pending"
    fails(server.post("/api/tasks", content=body_of(2049), headers=headers), 413, "payload_too_large")


def test_a_streamed_body_without_length_over_the_limit_is_413(make_live_api: ServerFactory) -> None:
    server = make_live_api(max_request_bytes=2048)
    register(server)

    def chunks() -> Iterator[bytes]:
        yield b'{"type": "demo.echo", "params": {"blob": "'
        for _ in range(10):
            yield b"x" * 500
        yield b'"}}'

    response = server.post("/api/tasks", content=chunks(), headers={"Content-Type": "application/json"})
    fails(response, 413, "payload_too_large")
    assert ok(server.get("/api/tasks"))["total"] == 0


def test_the_default_limit_is_one_mebibyte(live_api: Api) -> None:
    register(live_api)
    over = b'{"type": "demo.echo", "params": {"blob": "' + b"x" * 1_048_576 + b'"}}'
    response = live_api.post("/api/tasks", content=over, headers={"Content-Type": "application/json"})
    fails(response, 413, "payload_too_large")


# -- health (A.3) ---------------------------------------------------------------------------


def test_health_probes_the_database(api: Api) -> None:
    data = ok(api.get("/api/health"))
    assert data["status"] == "healthy"
    assert data["database"] == "connected"
    assert data["version"] == __version__
    assert isinstance(data["timestamp"], int)


def test_health_is_503_unavailable_when_the_database_is_unreachable() -> None:
    settings = Settings(
        database_url="postgresql://nobody@127.0.0.1:1/nothing", api_key=None, migrate_on_start=False
    )
    with RunningServer(create_app(settings)) as running, httpx.Client(base_url=running.url) as client:
        response = client.get("/api/health")
        body = fails(response, 503, "unavailable")
        assert body["data"] == {"status": "unhealthy", "database": "disconnected"}
        assert "nobody" not in response.text
        assert "127.0.0.1:1" not in response.text
        assert_edge_headers(response)
