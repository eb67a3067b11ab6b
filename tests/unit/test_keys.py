"""Key format, constant-time comparison, scope rules and the token bucket's arithmetic."""

from __future__ import annotations

import statistics
import time

import pytest

from taskmanager.engine.keys import (
    KEY_PATTERN,
    SCOPES,
    Principal,
    checked_scopes,
    display_prefix,
    generate_key,
    hashes_match,
    key_hash,
)
from taskmanager.errors import ValidationFailed
from taskmanager.server.ratelimit import MemoryRateLimiter


def test_keys_are_random_with_a_public_prefix_and_only_the_hash_is_kept() -> None:
    key, prefix = generate_key()
    assert KEY_PATTERN.match(key)
    assert key.startswith(prefix + "_")
    assert display_prefix(key) == prefix
    assert display_prefix("my-own-admin-key") is None  # never logged, not even partly
    assert len(key_hash(key)) == 64
    assert key not in key_hash(key)
    assert len({generate_key()[0] for _ in range(1000)}) == 1000


def test_admin_implies_every_scope_and_others_only_their_own() -> None:
    admin = Principal(1, "a", None, frozenset({"admin"}), None)
    worker = Principal(2, "w", None, frozenset({"tasks:work"}), None)
    assert all(admin.allows(scope) for scope in SCOPES)
    assert [s for s in SCOPES if worker.allows(s)] == ["tasks:work"]


def test_scopes_are_checked_deduplicated_and_ordered() -> None:
    assert checked_scopes(["tasks:work", "types:read", "tasks:work"]) == ("types:read", "tasks:work")
    with pytest.raises(ValidationFailed) as refused:
        checked_scopes(["tasks:work", "tasks:*"])
    assert refused.value.details == [
        "scopes: unknown scope 'tasks:*' (allowed: types:read, types:write, tasks:read, tasks:write, "
        "tasks:work, admin)"
    ]


def _median_seconds(presented: str, stored: str, rounds: int = 30, calls: int = 2000) -> float:
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(calls):
            hashes_match(presented, stored)
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def test_the_comparison_takes_as_long_for_a_near_miss_as_for_a_far_one() -> None:
    stored = key_hash("the real key")
    near = stored[:-1] + ("0" if stored[-1] != "0" else "1")  # differs in the last character
    far = ("f" if stored[0] != "f" else "e") + stored[1:]  # differs in the first
    near_time, far_time = _median_seconds(near, stored), _median_seconds(far, stored)
    assert 0.5 < near_time / far_time < 2.0, (near_time, far_time)
    assert not hashes_match(near, stored)
    assert not hashes_match(far, stored)
    assert hashes_match(stored, stored)


async def test_the_memory_bucket_refills_at_limit_per_minute() -> None:
    now = [1000.0]
    limiter = MemoryRateLimiter(lambda: now[0])
    for left in range(5, -1, -1):
        decision = await limiter.hit("k", 6)
        assert (decision.allowed, decision.remaining) == (True, left)
    refused = await limiter.hit("k", 6)
    assert (refused.allowed, refused.retry_after_seconds) == (False, 10)
    peek = await limiter.hit("k", 6, cost=0)
    assert not peek.allowed
    now[0] += 10  # one token back
    assert (await limiter.hit("k", 6)).allowed
    assert not (await limiter.hit("k", 6)).allowed
    assert (await limiter.hit("other", 6)).remaining == 5
    now[0] += 3600
    assert (await limiter.hit("k", 6)).remaining == 5  # never more than the limit
