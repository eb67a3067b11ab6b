"""API.md B.6: /api-keys — create (the key shown once), list without secrets, revoke; scopes."""

from __future__ import annotations

import logging
import re
from typing import Any

import httpx
import pytest

from tests.api.conftest import fails, ok, register
from tests.api.test_auth import assert_unauthorized
from tests.conftest import ADMIN_KEY, Api, ServerFactory

KEY_FORMAT = re.compile(r"^tm_[0-9a-f]{8}_[A-Za-z0-9_-]{43}$")
LISTED = {"id", "name", "prefix", "scopes", "rate_limit", "types", "is_active", "created_at", "last_used_at"}


def make_key(api: Api, scopes: list[str], name: str = "k", **fields: Any) -> dict[str, Any]:
    data: dict[str, Any] = ok(api.post("/api/api-keys", json={"name": name, "scopes": scopes, **fields}))
    return data


def as_key(api: Api, key: str) -> httpx.Client:
    return api.new_client({"X-API-Key": key})


def test_create_returns_the_key_once_and_list_never_shows_it(api: Api) -> None:
    created = make_key(api, ["tasks:work", "types:read"], name="render workers", rate_limit=60)
    assert KEY_FORMAT.match(created["key"])
    assert created["prefix"] == created["key"][:11]
    assert created["scopes"] == ["types:read", "tasks:work"]
    assert (created["name"], created["rate_limit"], created["is_active"]) == ("render workers", 60, True)
    assert created["last_used_at"] is None
    listed = ok(api.get("/api/api-keys"))
    assert listed["count"] == 1
    assert listed["api_keys"] == listed["items"]
    (item,) = listed["items"]
    assert set(item) == LISTED
    assert created["key"] not in api.get("/api/api-keys").text
    assert item["id"] == created["id"]


def test_each_key_is_different(api: Api) -> None:
    keys = {make_key(api, ["tasks:read"])["key"] for _ in range(5)}
    assert len(keys) == 5


def test_a_created_key_works_and_its_use_is_recorded(api: Api) -> None:
    created = make_key(api, ["types:read"])
    with as_key(api, created["key"]) as client:
        assert ok(client.get("/api/task-types"))["count"] == 0
        bearer = {"Authorization": f"Bearer {created['key']}", "X-API-Key": ""}
        assert ok(client.get("/api/task-types", headers=bearer))["count"] == 0
    (item,) = ok(api.get("/api/api-keys"))["items"]
    assert item["last_used_at"] is not None


def test_revoke_stops_the_key_at_once_on_this_server(api: Api) -> None:
    created = make_key(api, ["types:read"])
    with as_key(api, created["key"]) as client:
        ok(client.get("/api/task-types"))
        revoked = ok(api.delete(f"/api/api-keys/{created['id']}"))
        assert revoked["is_active"] is False
        assert_unauthorized(client.get("/api/task-types"))
    (item,) = ok(api.get("/api/api-keys"))["items"]
    assert item["is_active"] is False


def test_revoke_reaches_another_server_within_the_key_cache_time(make_api: ServerFactory) -> None:
    first = make_api()
    second = make_api()
    created = make_key(first, ["types:read"])
    with as_key(second, created["key"]) as client:
        ok(client.get("/api/task-types"))  # now cached on the second server
        ok(first.delete(f"/api/api-keys/{created['id']}"))
        ok(client.get("/api/task-types"))  # still trusted from its cache...
        second.clock.advance(5)  # ...for TASKMANAGER_KEY_CACHE_SECONDS (default 5)
        assert_unauthorized(client.get("/api/task-types"))


def test_with_no_key_cache_a_revoke_reaches_every_server_at_once(make_api: ServerFactory) -> None:
    first = make_api()
    second = make_api(key_cache_seconds=0)
    created = make_key(first, ["types:read"])
    with as_key(second, created["key"]) as client:
        ok(client.get("/api/task-types"))
        ok(first.delete(f"/api/api-keys/{created['id']}"))
        assert_unauthorized(client.get("/api/task-types"))


def test_revoking_an_unknown_key_is_404(api: Api) -> None:
    fails(api.delete("/api/api-keys/999"), 404, "not_found", "API key not found")
    fails(api.delete("/api/api-keys/abc"), 404, "not_found", "API key not found")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"scopes": ["admin"]}, "name"),
        ({"name": "", "scopes": ["admin"]}, "name"),
        ({"name": "   ", "scopes": ["admin"]}, "name"),
        ({"name": "a\nb", "scopes": ["admin"]}, "name"),
        ({"name": "x" * 256, "scopes": ["admin"]}, "name"),
        ({"name": "k"}, "scopes"),
        ({"name": "k", "scopes": []}, "scopes"),
        ({"name": "k", "scopes": ["root"]}, "scopes"),
        ({"name": "k", "scopes": "admin"}, "scopes"),
        ({"name": "k", "scopes": ["admin"], "rate_limit": 0}, "rate_limit"),
        ({"name": "k", "scopes": ["admin"], "rate_limit": "60"}, "rate_limit"),
        ({"name": "k", "scopes": ["admin"], "rate_limit": 10**7}, "rate_limit"),
    ],
)
def test_a_bad_key_request_is_400_naming_the_field(api: Api, body: dict[str, Any], field: str) -> None:
    found = fails(api.post("/api/api-keys", json=body), 400, "validation_failed")
    assert any(d.startswith(f"{field}:") for d in found["details"]), found


def test_stored_keys_end_open_mode(make_api: ServerFactory) -> None:
    server = make_api(api_key=None)
    created = make_key(server, ["admin"])  # open mode: anyone local may create the first key
    assert_unauthorized(server.get("/api/task-types"))
    with as_key(server, created["key"]) as admin:
        register(admin)
        ok(admin.delete(f"/api/api-keys/{created['id']}"))
    # Revoking every key does not reopen the server.
    assert_unauthorized(server.get("/api/task-types"))


def test_secrets_are_never_logged_keys_only_by_prefix(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    created = make_key(api, ["tasks:read"])
    with as_key(api, created["key"]) as client:
        ok(client.get("/api/tasks"))
    assert_unauthorized(api.get("/api/tasks", headers={"X-API-Key": created["key"][:-1] + "x"}))
    ok(api.delete(f"/api/api-keys/{created['id']}"))
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert created["prefix"] in logged
    assert created["key"] not in logged
    assert created["key"][12:] not in logged
    assert ADMIN_KEY not in logged
