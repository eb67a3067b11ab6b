"""Rate limits shared through Redis by two ``taskmanager serve`` processes, and the keys CLI."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from tests.e2e.process import ServerProcess
from tests.e2e.test_cli import run

pytestmark = pytest.mark.slow  # several server processes sharing Redis: docs/development.md

REDIS_URL = os.environ.get("TASKMANAGER_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
def prefix() -> Iterator[str]:
    """A Redis key prefix of this test's own (parallel runs never share buckets); cleaned after."""
    name = f"tmtest:{uuid.uuid4().hex[:12]}:"
    yield name
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(f"{name}*"):
        client.delete(key)
    client.close()


def create_key(url: str, *args: str) -> str:
    result = run("keys", "create", "limited", "--database-url", url, *args)
    assert result.returncode == 0, result.stderr
    (key,) = result.stdout.split()  # the key, and nothing else, on stdout
    return key


def serve(url: str, prefix: str) -> ServerProcess:
    server = ServerProcess(url, extra=["--redis-url", REDIS_URL])
    server.env["TASKMANAGER_REDIS_PREFIX"] = prefix
    return server


def test_two_server_processes_share_one_limit_through_redis(tmp_path: Path, prefix: str) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    key = create_key(url, "--scope", "types:read", "--rate-limit", "60")
    with serve(url, prefix) as a, serve(url, prefix) as b:
        headers = {"X-API-Key": key}
        with httpx.Client(headers=headers, timeout=10) as client:
            started = time.monotonic()
            answers = []
            while len(answers) < 200:
                response = client.get(f"{(a, b)[len(answers) % 2].url}/api/task-types")
                answers.append(response)
                if response.status_code == 429:
                    break
            elapsed = time.monotonic() - started
    allowed = [r for r in answers if r.status_code == 200]
    assert answers[-1].status_code == 429, answers[-1].text
    # 60 at once, plus one per second the burst took (a token bucket refills 60 per minute).
    assert 60 <= len(allowed) <= 60 + int(elapsed), (len(allowed), elapsed)
    if elapsed < 1:
        assert len(allowed) == 60  # the 61st was refused
    body = answers[-1].json()
    assert (body["code"], body["limit"], body["window"]) == ("rate_limited", 60, 60)
    assert answers[-1].headers["Retry-After"] == "1"
    remaining = [int(r.headers["X-RateLimit-Remaining"]) for r in allowed[:60]]
    assert remaining == sorted(remaining, reverse=True)  # one bucket, counted down by both
    buckets = list(redis.Redis.from_url(REDIS_URL).scan_iter(f"{prefix}rl:*"))
    assert len(buckets) == 1
    ttl = redis.Redis.from_url(REDIS_URL).pttl(buckets[0])
    assert 0 < ttl <= 61_000  # the bucket expires once it would be full again


def test_keys_cli_creates_lists_and_revokes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'keys.db'}"
    key = create_key(url, "--scope", "tasks:work", "-s", "types:read")
    listed = run("keys", "list", "--database-url", url)
    assert listed.returncode == 0, listed.stderr
    assert key not in listed.stdout + listed.stderr
    assert key[:11] in listed.stdout
    assert "types:read tasks:work" in listed.stdout
    assert "active" in listed.stdout
    bad = run("keys", "create", "x", "--scope", "root", "--database-url", url)
    assert bad.returncode == 2
    assert "scopes: unknown scope 'root'" in bad.stderr
    server = ServerProcess(url)
    # No key cache, so the revoke (by another process) shows at once; the cache's bound is
    # tested on the frozen clock in tests/api/test_keys.py.
    server.env["TASKMANAGER_KEY_CACHE_SECONDS"] = "0"
    with server:  # a stored key: auth is on without TASKMANAGER_API_KEY
        assert httpx.get(f"{server.url}/api/task-types").status_code == 401
        ok = httpx.get(f"{server.url}/api/task-types", headers={"X-API-Key": key})
        assert ok.status_code == 200
        revoked = run("keys", "revoke", "1", "--database-url", url)
        assert revoked.returncode == 0, revoked.stderr
        assert "revoked" in revoked.stdout
        assert httpx.get(f"{server.url}/api/task-types", headers={"X-API-Key": key}).status_code == 401
    assert run("keys", "revoke", "99", "--database-url", url).returncode == 1
