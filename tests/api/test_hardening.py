"""Hardening at the edge: trusted proxies, allow/deny lists, HSTS, size, depth and count limits."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.conftest import create, fails, ok, register
from tests.conftest import Api, ServerFactory


def forwarded(address: str, proto: str | None = None) -> dict[str, str]:
    headers = {"X-Forwarded-For": address}
    if proto:
        headers["X-Forwarded-Proto"] = proto
    return headers


def test_x_forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy(make_live_api: ServerFactory) -> None:
    server = make_live_api(api_key=None, rate_limit=1)
    ok(server.get("/api/task-types", headers=forwarded("10.0.0.1")))
    # Another claimed address changes nothing: the bucket is the TCP peer's.
    fails(server.get("/api/task-types", headers=forwarded("10.0.0.2")), 429, "rate_limited")


def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_bucket(
    make_live_api: ServerFactory,
) -> None:
    server = make_live_api(api_key=None, rate_limit=1, trusted_proxies="127.0.0.1")
    ok(server.get("/api/task-types", headers=forwarded("10.0.0.1")))
    ok(server.get("/api/task-types", headers=forwarded("10.0.0.2")))
    fails(server.get("/api/task-types", headers=forwarded("10.0.0.1")), 429, "rate_limited")
    # What the client wrote to the left of the proxy's own entry is not believed.
    fails(server.get("/api/task-types", headers=forwarded("10.9.9.9, 10.0.0.1")), 429, "rate_limited")


def test_deny_list_refuses_an_address_even_through_a_proxy(make_live_api: ServerFactory) -> None:
    server = make_live_api(trusted_proxies="127.0.0.0/8", deny_ips="10.0.0.0/24")
    body = fails(server.get("/api/health", headers=forwarded("10.0.0.7")), 403, "forbidden")
    assert body["message"] == "Access from this address is not allowed"
    assert ok(server.get("/api/health", headers=forwarded("10.0.1.7")))["status"] == "healthy"
    ok(server.get("/api/health"))


def test_allow_list_admits_only_the_listed_addresses(make_live_api: ServerFactory) -> None:
    server = make_live_api(allow_ips="192.0.2.0/24")
    response = server.get("/api/tasks")
    fails(response, 403, "forbidden")
    assert response.headers["X-Frame-Options"] == "DENY"
    fails(server.options("/api/tasks"), 403, "forbidden")
    local = make_live_api(allow_ips="127.0.0.1,::1")
    assert ok(local.get("/api/tasks"))["total"] == 0


def test_hsts_is_sent_only_when_the_request_came_over_https(make_live_api: ServerFactory) -> None:
    plain = make_live_api()
    assert "Strict-Transport-Security" not in plain.get("/api/health").headers
    # An untrusted peer cannot claim HTTPS.
    assert (
        "Strict-Transport-Security"
        not in plain.get("/api/health", headers=forwarded("1.2.3.4", "https")).headers
    )
    proxied = make_live_api(trusted_proxies="127.0.0.1")
    secure = proxied.get("/api/health", headers=forwarded("1.2.3.4", "https"))
    assert secure.headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"
    assert (
        "Strict-Transport-Security"
        not in proxied.get("/api/health", headers=forwarded("1.2.3.4", "http")).headers
    )


@pytest.mark.parametrize("setting", ["trusted_proxies", "allow_ips", "deny_ips"])
def test_a_bad_address_list_stops_the_server_at_start(make_api: ServerFactory, setting: str) -> None:
    with pytest.raises(ValueError, match="not an IP address or network"):
        make_api(**{setting: "10.0.0.0/8, not-an-ip"})


def nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth - 1):
        value = {"n": value}
    return value


def test_params_and_results_nest_at_most_64_levels(api: Api) -> None:
    register(api)
    assert create(api, params=nested(63))["status"] == "pending"  # the body adds one level
    body = fails(
        api.post("/api/tasks", json={"type": "demo.echo", "params": nested(64)}), 400, "validation_failed"
    )
    assert body["details"][0].startswith("params.n.n")
    assert "nested deeper than 64 levels" in body["details"][0]
    claimed = ok(api.post("/api/tasks/claim", json={"worker_id": "w"}))
    done = {"worker_id": "w", "success": True, "result": nested(64)}
    found = fails(api.post(f"/api/tasks/{claimed['id']}/complete", json=done), 400, "validation_failed")
    assert found["details"][0].startswith("result.n")


def test_very_deep_json_is_a_400_not_a_crash(api: Api) -> None:
    raw = b'{"type": "demo.echo", "params": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    response = api.post("/api/tasks", content=raw, headers={"Content-Type": "application/json"})
    assert response.status_code == 400, response.text


@pytest.mark.parametrize("number", ["1e999", "-1e999", "1" + "0" * 5000])
def test_huge_numbers_are_refused_or_kept_exactly(api: Api, number: str) -> None:
    register(api)
    raw = f'{{"type": "demo.echo", "params": {{"n": {number}}}}}'.encode()
    response = api.post("/api/tasks", content=raw, headers={"Content-Type": "application/json"})
    assert response.status_code == 400, response.text
    assert response.json()["code"] in ("validation_failed", "invalid_json")


def test_big_integers_within_range_round_trip(api: Api) -> None:
    register(api)
    task = create(api, params={"n": 2**200, "m": -(2**63), "f": 1.5e300})
    assert ok(api.get(f"/api/tasks/{task['id']}"))["params"] == {"n": 2**200, "m": -(2**63), "f": 1.5e300}


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("GET", "/api/tasks?limit=1001", None, "limit"),
        ("GET", "/api/tasks?limit=0", None, "limit"),
        ("POST", "/api/tasks/batch", {"tasks": [{}] * 1001}, "tasks"),
        ("POST", "/api/tasks/claim", {"worker_id": "w", "limit": 101}, "limit"),
        (
            "POST",
            "/api/tasks/complete-batch",
            {"worker_id": "w", "results": [{"id": 1, "success": True}] * 1001},
            "results",
        ),
        ("POST", "/api/tasks/claim", {"worker_id": "w", "types": ["t"] * 1001}, "types"),
    ],
)
def test_list_page_and_batch_sizes_are_bounded(
    api: Api, method: str, path: str, body: dict[str, Any] | None, field: str
) -> None:
    found = fails(api.request(method, path, json=body), 400, "validation_failed")
    assert any(d.startswith(field) for d in found["details"]), found
