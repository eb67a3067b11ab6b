"""API.md B.6 rate limits: a token bucket per key (per address in open mode), 429 with headers,
and wrong keys limited per address. The in-process limiter runs on the server's frozen clock."""

from __future__ import annotations

import httpx

from tests.api.conftest import fails, ok
from tests.api.test_auth import assert_unauthorized
from tests.conftest import Api, ServerFactory


def key_with(api: Api, rate_limit: int | None, scopes: tuple[str, ...] = ("types:read",)) -> httpx.Client:
    body = {"name": "limited", "scopes": list(scopes), "rate_limit": rate_limit}
    key = ok(api.post("/api/api-keys", json=body))["key"]
    return api.new_client({"X-API-Key": key})


def assert_limited(response: httpx.Response, limit: int) -> None:
    body = fails(response, 429, "rate_limited", "Too Many Requests")
    assert (body["limit"], body["window"]) == (limit, 60)
    assert body["retry_after"] >= 1
    assert response.headers["Retry-After"] == str(body["retry_after"])
    assert response.headers["X-RateLimit-Limit"] == str(limit)
    assert response.headers["X-RateLimit-Remaining"] == "0"


def test_a_key_limited_to_60_gets_429_on_the_61st_request_in_a_minute(api: Api) -> None:
    with key_with(api, 60) as client:
        for n in range(60):
            response = client.get("/api/task-types")
            assert response.status_code == 200, (n, response.text)
            assert response.headers["X-RateLimit-Limit"] == "60"
            assert response.headers["X-RateLimit-Remaining"] == str(59 - n)
            assert int(response.headers["X-RateLimit-Reset"]) == n + 1
        limited = client.get("/api/task-types")
        assert_limited(limited, 60)
        assert limited.headers["Retry-After"] == "1"
        api.clock.advance(59)  # still within the minute: 59 tokens back, not 60
        for _ in range(59):
            assert client.get("/api/task-types").status_code == 200
        assert_limited(client.get("/api/task-types"), 60)
        api.clock.advance(60)
        assert client.get("/api/task-types").headers["X-RateLimit-Remaining"] == "59"


def test_keys_have_separate_buckets_and_refused_requests_are_still_counted(api: Api) -> None:
    with key_with(api, 2) as first, key_with(api, 2) as second:
        assert first.get("/api/task-types").status_code == 200
        assert first.get("/api/tasks").status_code == 403  # the wrong scope still costs a token
        assert_limited(first.get("/api/task-types"), 2)
        assert second.get("/api/task-types").status_code == 200


def test_the_server_default_applies_to_keys_without_their_own_limit(make_api: ServerFactory) -> None:
    api = make_api(rate_limit=3)
    with key_with(api, None) as default, key_with(api, 5) as own:
        for _ in range(3):
            assert default.get("/api/task-types").status_code == 200
        assert_limited(default.get("/api/task-types"), 3)
        for _ in range(5):
            assert own.get("/api/task-types").status_code == 200
    # The admin key of TASKMANAGER_API_KEY follows the default too (it spent 2 creating keys).
    api.clock.advance(60)
    for _ in range(3):
        ok(api.get("/api/task-types"))
    assert_limited(api.get("/api/task-types"), 3)


def test_without_a_default_unlimited_keys_get_no_rate_headers(api: Api) -> None:
    response = api.get("/api/task-types")
    assert response.status_code == 200
    assert "X-RateLimit-Limit" not in response.headers


def test_open_mode_limits_each_client_address(make_api: ServerFactory) -> None:
    server = make_api(api_key=None, rate_limit=2)
    assert server.get("/api/task-types").headers["X-RateLimit-Remaining"] == "1"
    ok(server.get("/api/task-types"))
    assert_limited(server.get("/api/task-types"), 2)
    assert server.get("/api/health").status_code == 200  # public routes are not limited


ADMIN = {"X-API-Key": "test-admin-key-0123456789"}


def guess(prefix: str, n: int = 0) -> dict[str, str]:
    """A wrong key of our format with ``prefix`` (``tm_`` and 8 hex digits)."""
    return {"X-API-Key": f"{prefix}_{n:043d}"}


def test_wrong_keys_are_limited_per_address_and_prefix(make_api: ServerFactory) -> None:
    server = make_api(auth_failure_limit=3, send_key=False)
    created = ok(server.post("/api/api-keys", json={"name": "good", "scopes": ["admin"]}, headers=ADMIN))
    for n in range(3):
        assert_unauthorized(server.get("/api/tasks", headers=guess("tm_00000000", n)))
    limited = server.get("/api/tasks", headers=guess("tm_00000000", 9))
    assert_limited(limited, 3)
    assert limited.json()["retry_after"] == 20, "one token of 3 per minute"
    # Other prefixes from the same address are still looked up: a right one passes, a wrong one
    # gets its own 401 (not 429).
    assert ok(server.get("/api/tasks", headers={"X-API-Key": created["key"]}))["total"] == 0
    assert_unauthorized(server.get("/api/tasks", headers=guess("tm_11111111")))
    # A missing key is not a guess: it stays a plain 401.
    assert_unauthorized(server.get("/api/tasks"))
    server.clock.advance(20)  # 3 per minute: one token back
    assert_unauthorized(server.get("/api/tasks", headers=guess("tm_00000000", 10)))
    assert_limited(server.get("/api/tasks", headers=guess("tm_00000000", 11)), 3)


def test_a_misconfigured_neighbour_does_not_lock_out_valid_keys_behind_the_same_address(
    make_api: ServerFactory,
) -> None:
    # Workers behind one NAT address: one sends a revoked key over and over, the others valid
    # keys whose cached lookup has expired (key_cache_seconds 0: every request looks up).
    server = make_api(auth_failure_limit=3, key_cache_seconds=0, send_key=False)
    good = ok(server.post("/api/api-keys", json={"name": "good", "scopes": ["admin"]}, headers=ADMIN))
    gone = ok(server.post("/api/api-keys", json={"name": "gone", "scopes": ["admin"]}, headers=ADMIN))
    ok(server.delete(f"/api/api-keys/{gone['id']}", headers=ADMIN))
    for _ in range(3):
        assert_unauthorized(server.get("/api/tasks", headers={"X-API-Key": gone["key"]}))
    for _ in range(20):
        assert_limited(server.get("/api/tasks", headers={"X-API-Key": gone["key"]}), 3)
        assert ok(server.get("/api/tasks", headers={"X-API-Key": good["key"]}))["total"] == 0
    # Not even a key of another format (its own bucket) is held back by the revoked one.
    assert_unauthorized(server.get("/api/tasks", headers={"X-API-Key": "changeme"}))


def test_guesses_that_change_prefix_hit_the_address_ceiling_then_every_key_waits(
    make_api: ServerFactory,
) -> None:
    from taskmanager.server.auth import AUTH_FAILURE_ADDRESS_FACTOR

    server = make_api(auth_failure_limit=3, key_cache_seconds=0, send_key=False)
    created = ok(server.post("/api/api-keys", json={"name": "good", "scopes": ["admin"]}, headers=ADMIN))
    ceiling = 3 * AUTH_FAILURE_ADDRESS_FACTOR
    for n in range(ceiling):
        assert_unauthorized(server.get("/api/tasks", headers=guess(f"tm_{n:08x}")))
    assert_limited(server.get("/api/tasks", headers=guess("tm_ffffffff")), ceiling)
    # A flood of guesses from the address, not one bad client: a right key waits too.
    assert_limited(server.get("/api/tasks", headers={"X-API-Key": created["key"]}), ceiling)
    server.clock.advance(2)  # 30 per minute: one token back
    assert ok(server.get("/api/tasks", headers={"X-API-Key": created["key"]}))["total"] == 0


def test_every_refused_key_gets_the_same_answer(api: Api) -> None:
    created = ok(api.post("/api/api-keys", json={"name": "gone", "scopes": ["admin"]}))
    ok(api.delete(f"/api/api-keys/{created['id']}"))
    answers = set()
    for key in ["wrong", created["key"], created["key"][:-1], "tm_00000000_" + "A" * 43, "x" * 10_000]:
        response = api.get("/api/tasks", headers={"X-API-Key": key})
        assert_unauthorized(response)
        body = response.json()
        body.pop("timestamp")
        headers = {k: v for k, v in response.headers.items() if k not in ("date", "x-request-id")}
        answers.add((repr(sorted(body.items())), repr(sorted(headers.items()))))
    assert len(answers) == 1
