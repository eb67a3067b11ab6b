"""API keys (API.md A.2): who may call a route, compared in constant time against SHA-256 hashes."""

from __future__ import annotations

import hashlib
import hmac

from starlette.requests import Request

from taskmanager.errors import Unauthorized
from taskmanager.settings import is_loopback

UNAUTHORIZED = "Unauthorized"
UNAUTHORIZED_HINT = "Invalid or missing API key. Include X-API-Key header with your request."


def key_hash(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def presented_key(request: Request) -> str | None:
    """The key from ``X-API-Key`` or ``Authorization: Bearer``."""
    key = request.headers.get("x-api-key")
    if key:
        return key
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


class Authenticator:
    """Checks the presented key; with no key configured at all the server is in open mode."""

    def __init__(self, admin_key: str | None, *, allow_open: bool = False) -> None:
        self._hashes = [key_hash(admin_key)] if admin_key else []
        self._allow_open = allow_open

    @property
    def open_mode(self) -> bool:
        return not self._hashes

    def check(self, request: Request, scope: str) -> None:
        """Raise 401 unless the request carries a key allowed ``scope`` (the admin key: all)."""
        if self.open_mode:
            # Open mode only serves a loopback listener, whatever started the server (the CLI
            # refuses earlier; this also covers gunicorn or uvicorn started by hand).
            local = request.scope.get("server")
            if self._allow_open or local is None or is_loopback(str(local[0])):
                return
            raise Unauthorized(UNAUTHORIZED_HINT, error=UNAUTHORIZED)
        key = presented_key(request)
        digest = key_hash(key) if key is not None else b""
        # Compare against every stored hash so timing does not reveal which one matched.
        matched = False
        for stored in self._hashes:
            matched |= hmac.compare_digest(digest, stored)
        if not matched:
            raise Unauthorized(UNAUTHORIZED_HINT, error=UNAUTHORIZED)
