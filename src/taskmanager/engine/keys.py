"""API keys (docs/reference/api.md, API keys): scopes, the key format, the rules a new key
must follow, its storage.

A key is ``tm_<8 hex>_<43 url-safe characters>`` from ``secrets`` (256 random bits after the
prefix). Only its SHA-256 is stored; ``tm_<8 hex>`` is its public *prefix*, shown in listings and
logs so an operator can tell keys apart without ever seeing one again.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from taskmanager.engine.scope import TypeScope
from taskmanager.errors import ValidationFailed

#: Every scope, in the order the API reference lists them. ``admin`` implies all the others.
SCOPES: tuple[str, ...] = ("types:read", "types:write", "tasks:read", "tasks:write", "tasks:work", "admin")
ADMIN = "admin"
#: Largest per-key rate limit (requests per minute) a key may be given.
MAX_RATE_LIMIT = 1_000_000
#: Longest key name.
MAX_NAME_LENGTH = 255
KEY_PATTERN = re.compile(r"^tm_[0-9a-f]{8}_[A-Za-z0-9_-]{43}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def key_hash(key: str) -> str:
    """The stored form of a key: its SHA-256 as 64 hex characters."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def hashes_match(presented: str, stored: str) -> bool:
    """Constant-time comparison of two hex digests."""
    return hmac.compare_digest(presented.encode(), stored.encode())


def display_prefix(key: str) -> str | None:
    """``tm_ab12cd34`` for a key of our format; None for anything else (never logged)."""
    return key[:11] if KEY_PATTERN.match(key) else None


def generate_key() -> tuple[str, str]:
    """A new key and its prefix."""
    prefix = f"tm_{secrets.token_hex(4)}"
    return f"{prefix}_{secrets.token_urlsafe(32)}", prefix


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A stored key, without its secret."""

    id: int
    name: str
    prefix: str
    key_hash: str
    scopes: tuple[str, ...]
    rate_limit: int | None
    is_active: bool
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None = None
    #: Task-type name patterns the key is limited to (API.md B.6); None: every type.
    types: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class NewApiKey:
    name: str
    prefix: str
    key_hash: str
    scopes: tuple[str, ...]
    rate_limit: int | None
    now: datetime
    types: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a stored key, the admin key of ``TASKMANAGER_API_KEY`` (id None), or an
    address in open mode."""

    id: int | None
    name: str
    prefix: str | None
    scopes: frozenset[str]
    rate_limit: int | None
    #: The task types this caller may create, read, claim and report; None: every type.
    types: TypeScope | None = None

    def allows(self, scope: str) -> bool:
        return ADMIN in self.scopes or scope in self.scopes

    @classmethod
    def of(cls, key: ApiKey) -> Principal:
        types = None if key.types is None else TypeScope(key.types)
        return cls(key.id, key.name, key.prefix, frozenset(key.scopes), key.rate_limit, types)


class KeyStore(Protocol):
    """What the key service asks of a database."""

    async def insert_api_key(self, key: NewApiKey) -> ApiKey: ...

    async def list_api_keys(self) -> list[ApiKey]: ...

    async def find_api_key(self, key_hash: str) -> ApiKey | None:
        """The key with this hash (active or not), by its unique index."""
        ...

    async def revoke_api_key(self, key_id: int, now: datetime) -> ApiKey | None:
        """Deactivate; None if there is no such key. Revoking twice keeps the first time."""
        ...

    async def touch_api_keys(self, used: Mapping[int, datetime]) -> None:
        """Move each key's ``last_used_at`` forward to the given time (never back)."""
        ...

    async def count_api_keys(self) -> int:
        """Keys ever created, revoked ones included."""
        ...


def checked_name(name: str) -> str:
    cleaned = name.strip()
    if not cleaned:
        raise ValidationFailed("Validation failed", details=["name: must not be empty"])
    if len(cleaned) > MAX_NAME_LENGTH:
        raise ValidationFailed("Validation failed", details=[f"name: at most {MAX_NAME_LENGTH} characters"])
    if _CONTROL.search(cleaned):
        raise ValidationFailed("Validation failed", details=["name: control characters are not allowed"])
    return cleaned


def checked_scopes(scopes: list[str]) -> tuple[str, ...]:
    """Known scopes, deduplicated, in the order of ``SCOPES``; 400 naming any unknown one."""
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown:
        allowed = ", ".join(SCOPES)
        raise ValidationFailed(
            "Validation failed",
            details=[f"scopes: unknown scope {s!r} (allowed: {allowed})" for s in unknown[:10]],
        )
    if not scopes:
        raise ValidationFailed("Validation failed", details=["scopes: at least one scope is required"])
    return tuple(s for s in SCOPES if s in scopes)


def checked_types(types: list[str] | None) -> tuple[str, ...] | None:
    """Type-name patterns, deduplicated in their order; 400 naming a blank or control-character one."""
    if types is None:
        return None
    for pattern in types:
        if not pattern.strip() or _CONTROL.search(pattern):
            raise ValidationFailed(
                "Validation failed", details=[f"types: {pattern!r} is not a type-name pattern"]
            )
    return tuple(dict.fromkeys(types))


def checked_rate_limit(rate_limit: int | None) -> int | None:
    if rate_limit is not None and not 1 <= rate_limit <= MAX_RATE_LIMIT:
        raise ValidationFailed(
            "Validation failed", details=[f"rate_limit: must be 1-{MAX_RATE_LIMIT} requests per minute"]
        )
    return rate_limit
