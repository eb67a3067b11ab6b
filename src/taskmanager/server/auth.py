"""Authentication, scopes and rate limits at the HTTP edge (docs/reference/api.md, Authentication).

Each protected route names the scope it needs; ``Authenticator.check`` finds the caller's key
(stored keys through ``KeyService``, or the admin key of ``TASKMANAGER_API_KEY``), charges its rate
limit, and refuses a key without the scope (403). Wrong keys are counted per client address and
key prefix (``tm_ab12cd34``; every key not of our format shares one): past ``auth_failure_limit``
per minute, keys with that prefix from that address get 429 until the bucket refills, so keys
cannot be guessed at speed. The address as a whole has a ceiling ``AUTH_FAILURE_ADDRESS_FACTOR``
times higher, for guesses that change the prefix each time. So workers behind one NAT address do
not share the penalty of a misconfigured neighbour: its wrong key fills its own bucket, and the
valid keys of the others (other prefixes) are still looked up (ADR 0016). Every refusal of a key
has the same text, whatever the reason (unknown, revoked, malformed), so responses do not tell
which keys exist.
"""

from __future__ import annotations

import logging
from typing import NoReturn

from starlette.requests import Request

from taskmanager.engine.access import KeyService
from taskmanager.engine.keys import ADMIN, Principal, display_prefix, hashes_match, key_hash
from taskmanager.errors import Forbidden, RateLimited, Unauthorized
from taskmanager.server.middleware import RESPONSE_HEADERS
from taskmanager.server.ratelimit import WINDOW, Decision, RateLimiter
from taskmanager.settings import is_loopback

log = logging.getLogger("taskmanager.server")

UNAUTHORIZED = "Unauthorized"
UNAUTHORIZED_HINT = "Invalid or missing API key. Include X-API-Key header with your request."
FORBIDDEN = "Insufficient permissions"
#: Longest key even looked at; anything longer cannot be one (and is not hashed).
MAX_KEY_LENGTH = 512
ADMIN_PRINCIPAL = Principal(None, "TASKMANAGER_API_KEY", None, frozenset({ADMIN}), None)
#: The address-wide ceiling of wrong keys per minute is this many times ``auth_failure_limit``:
#: above what one misconfigured client can spend (its own prefix's bucket stops it at the
#: limit), below a rate at which guessing is any use (10 prefixes' worth, 300/min by default).
AUTH_FAILURE_ADDRESS_FACTOR = 10
#: The failure bucket shared by every key not of our format (no prefix to tell them apart).
OTHER_PREFIX = "-"


def presented_key(request: Request) -> str | None:
    """The key from ``X-API-Key`` or ``Authorization: Bearer``."""
    key = request.headers.get("x-api-key")
    if key:
        return key
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def client_address(request: Request) -> str:
    """The client's address (after the trusted-proxy rules of the edge middleware)."""
    return request.client.host if request.client else "unknown"


def _unauthorized() -> Unauthorized:
    return Unauthorized(UNAUTHORIZED_HINT, error=UNAUTHORIZED)


class Authenticator:
    """Decides who may call a route; with no key configured at all the server is in open mode."""

    def __init__(
        self,
        admin_key: str | None,
        keys: KeyService,
        limiter: RateLimiter,
        *,
        allow_open: bool = False,
        rate_limit: int = 0,
        auth_failure_limit: int = 0,
        open_access: bool = False,
    ) -> None:
        self._admin_hash = key_hash(admin_key) if admin_key else None
        self.keys = keys
        self.limiter = limiter
        self._allow_open = allow_open
        self.rate_limit = rate_limit
        self.auth_failure_limit = auth_failure_limit
        #: Every caller is served as in open mode, keys or not (embedded mode: the caller holds
        #: the database itself).
        self.open_access = open_access

    async def open_mode(self) -> bool:
        if self.open_access:
            return True
        return self._admin_hash is None and not await self.keys.any_keys()

    async def check(self, request: Request, scope: str) -> Principal | None:
        """The caller, after checking it may use ``scope`` now (None: open mode)."""
        principal = await self._identify(request)
        if principal is None:
            if self.rate_limit:
                await self._charge(request, f"addr:{client_address(request)}", self.rate_limit)
            return None
        limit = principal.rate_limit or self.rate_limit
        if limit:
            await self._charge(request, f"key:{principal.id or 'admin'}", limit)
        if not principal.allows(scope):
            raise Forbidden(FORBIDDEN)
        return principal

    async def require(self, request: Request, scope: str) -> None:
        """Check that a caller ``check`` let in also holds ``scope`` (a route whose body decides
        the scope it needs), charging its rate limit nothing more."""
        principal = await self._identify(request)
        if principal is not None and not principal.allows(scope):
            raise Forbidden(FORBIDDEN)

    async def _identify(self, request: Request) -> Principal | None:
        if await self.open_mode():
            # Open mode only serves a loopback listener, whatever started the server (the CLI
            # refuses earlier; this also covers gunicorn or uvicorn started by hand).
            local = request.scope.get("server")
            if self._allow_open or local is None or is_loopback(str(local[0])):
                return None
            raise _unauthorized()
        key = presented_key(request)
        if key is None:
            raise _unauthorized()
        if len(key) > MAX_KEY_LENGTH:
            return await self._refuse(request, key)
        if self._admin_hash is not None and hashes_match(key_hash(key), self._admin_hash):
            return ADMIN_PRINCIPAL
        found = self.keys.cached(key)
        if found is not None:
            return found
        if self.auth_failure_limit:
            for bucket, limit in self._failure_buckets(request, key):
                look = await self.limiter.hit(bucket, limit, cost=0)
                if not look.allowed:
                    raise self._limited(request, look)
        found = await self.keys.authenticate(key)
        if found is None:
            return await self._refuse(request, key)
        return found

    async def _refuse(self, request: Request, key: str) -> NoReturn:
        address = client_address(request)
        shown = display_prefix(key) or "(not a TaskManager key)"
        log.info("refused API key %s from %s", shown, address)
        if self.auth_failure_limit:
            # Both buckets are charged, so the address-wide count sees every refusal.
            decisions = [await self.limiter.hit(b, n) for b, n in self._failure_buckets(request, key)]
            for decision in decisions:
                if not decision.allowed:
                    raise self._limited(request, decision)
        raise _unauthorized()

    def _failure_buckets(self, request: Request, key: str) -> list[tuple[str, int]]:
        """The wrong-key buckets ``key`` from this address is counted in, with their limits:
        the address and the key's prefix, then the address as a whole."""
        address = client_address(request)
        prefix = display_prefix(key) or OTHER_PREFIX
        return [
            (f"authfail:{address}:{prefix}", self.auth_failure_limit),
            (f"authfail:{address}", self.auth_failure_limit * AUTH_FAILURE_ADDRESS_FACTOR),
        ]

    async def _charge(self, request: Request, bucket: str, limit: int) -> None:
        decision = await self.limiter.hit(bucket, limit)
        late = request.scope.get(RESPONSE_HEADERS)
        if late is not None:
            late.extend(decision.headers())
        if not decision.allowed:
            raise self._limited(request, decision)

    @staticmethod
    def _limited(request: Request, decision: Decision) -> RateLimited:
        late = request.scope.get(RESPONSE_HEADERS)
        if late is not None and not any(name == b"retry-after" for name, _ in late):
            late.extend(decision.headers())
        extra: dict[str, object] = {
            "retry_after": decision.retry_after_seconds,
            "limit": decision.limit,
            "window": WINDOW,
        }
        return RateLimited("Too Many Requests", extra=extra)
