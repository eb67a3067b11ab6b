"""Rate limits (docs/reference/api.md, Rate limits): a token bucket per key (or per client
address), in process or in Redis.

A limit of N requests per minute is a bucket of N tokens refilled at N/60 per second: a client
may spend the whole minute's allowance in a burst, after which it gets one request per 60/N s.
``MemoryRateLimiter`` keeps the buckets of one process; ``RedisRateLimiter`` keeps them in Redis,
updated by one Lua script (atomic, timed by the Redis server's clock, each bucket expiring when
it would be full again), so every server process shares one limit.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

log = logging.getLogger("taskmanager.server")

#: The window a rate limit is counted over, in seconds (limits are requests per minute).
WINDOW = 60
#: Buckets one process keeps before dropping those that have refilled (bounds memory).
MAX_MEMORY_BUCKETS = 100_000


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    #: Seconds until the bucket is full again.
    reset: float
    #: Seconds until the next request would be allowed (0 when this one was).
    retry_after: float

    def headers(self) -> list[tuple[bytes, bytes]]:
        found = [
            (b"x-ratelimit-limit", str(self.limit).encode()),
            (b"x-ratelimit-remaining", str(self.remaining).encode()),
            (b"x-ratelimit-reset", str(math.ceil(self.reset)).encode()),
        ]
        if not self.allowed:
            found.append((b"retry-after", str(self.retry_after_seconds).encode()))
        return found

    @property
    def retry_after_seconds(self) -> int:
        return max(1, math.ceil(self.retry_after))


def outcome(allowed: bool, tokens: float, limit: int) -> Decision:
    """The decision for a bucket of ``limit`` left with ``tokens``."""
    rate = limit / WINDOW
    retry_after = 0.0 if allowed else (1 - tokens) / rate
    return Decision(allowed, limit, max(0, math.floor(tokens)), (limit - tokens) / rate, retry_after)


def decide(tokens: float, limit: int, cost: int) -> tuple[Decision, float]:
    """Spend ``cost`` tokens if at least one is left; the decision and the tokens left."""
    allowed = tokens >= 1
    if allowed:
        tokens -= cost
    return outcome(allowed, tokens, limit), tokens


class RateLimiter(Protocol):
    async def hit(self, key: str, limit: int, *, cost: int = 1) -> Decision:
        """Take ``cost`` tokens from ``key``'s bucket of ``limit`` per minute if one is left
        (``cost=0`` only looks)."""
        ...

    async def close(self) -> None: ...


class MemoryRateLimiter:
    """Buckets in this process, timed by ``now`` (the engine clock, so tests can freeze it)."""

    def __init__(self, now: Callable[[], float] = time.monotonic) -> None:
        self._now = now
        self._buckets: dict[str, tuple[float, float]] = {}

    async def hit(self, key: str, limit: int, *, cost: int = 1) -> Decision:
        now = self._now()
        tokens, at = self._buckets.get(key, (float(limit), now))
        tokens = min(float(limit), tokens + max(0.0, now - at) * limit / WINDOW)
        decision, tokens = decide(tokens, limit, cost)
        if cost or key in self._buckets:
            if len(self._buckets) >= MAX_MEMORY_BUCKETS:
                self._prune(now)
            self._buckets[key] = (tokens, now)
        return decision

    def _prune(self, now: float) -> None:
        self._buckets = {k: (t, at) for k, (t, at) in self._buckets.items() if now - at < WINDOW}

    async def close(self) -> None:
        self._buckets.clear()


#: KEYS[1]: the bucket; ARGV: limit, window, cost. Returns {allowed, tokens left as text}.
BUCKET_SCRIPT = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) + tonumber(now_parts[2]) / 1000000
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local rate = limit / window
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1])
local at = tonumber(state[2])
if tokens == nil or at == nil then
  tokens = limit
  at = now
end
tokens = math.min(limit, tokens + math.max(0, now - at) * rate)
local allowed = 0
if tokens >= 1 then
  allowed = 1
  tokens = tokens - cost
end
if cost > 0 or state[1] then
  redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
  redis.call('PEXPIRE', KEYS[1], math.ceil((limit - tokens) / rate * 1000) + 1000)
end
return {allowed, tostring(tokens)}
"""


class RedisRateLimiter:
    """Buckets in Redis shared by every server process; ``prefix`` namespaces the keys.

    If Redis cannot be reached the request is let through (and a warning logged): an outage of
    the limiter must not become an outage of the queue.
    """

    def __init__(self, url: str, *, prefix: str = "taskmanager:") -> None:
        from redis.asyncio import Redis

        self._redis: Any = Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self._script: Any = self._redis.register_script(BUCKET_SCRIPT)
        self._prefix = prefix

    async def hit(self, key: str, limit: int, *, cost: int = 1) -> Decision:
        from redis.exceptions import RedisError

        try:
            allowed, left = await self._script(keys=[f"{self._prefix}rl:{key}"], args=[limit, WINDOW, cost])
        except (RedisError, OSError):
            log.warning("rate limiter: Redis unavailable, request let through", exc_info=True)
            return Decision(True, limit, limit, 0.0, 0.0)
        return outcome(bool(allowed), float(left), limit)

    async def close(self) -> None:
        await self._redis.aclose()


def open_limiter(redis_url: str | None, *, prefix: str, now: Callable[[], float]) -> RateLimiter:
    if redis_url:
        return RedisRateLimiter(redis_url, prefix=prefix)
    return MemoryRateLimiter(now)
