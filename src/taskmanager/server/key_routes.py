"""``/api-keys`` (docs/reference/api.md, API keys): create, list and revoke API keys. Admin only."""

from __future__ import annotations

from typing import Any

from taskmanager import models
from taskmanager.engine.access import KEY_NOT_FOUND
from taskmanager.engine.keys import ADMIN
from taskmanager.engine.service import Reply
from taskmanager.server.body import task_id
from taskmanager.server.table import Call, Route


async def create_key(call: Call[models.CreateApiKey]) -> Reply:
    """Create a key; the response holds the key itself, which is never shown again."""
    return await call.keys.create(call.body)


async def list_keys(call: Call[None]) -> Reply:
    """Every key, revoked ones included, without secrets."""
    return await call.keys.list()


async def revoke_key(call: Call[None]) -> Reply:
    """Revoke a key: it stops working at once on this server (see the security guide)."""
    return await call.keys.revoke(task_id(call.path("id"), KEY_NOT_FOUND))


KEYS = ("API Keys",)
KEY_ROUTES: list[Route[Any]] = [
    Route(
        "POST",
        "/api/api-keys",
        create_key,
        operation_id="createApiKey",
        tags=KEYS,
        scope=ADMIN,
        data=models.CreatedApiKey,
        errors=(400, 401, 403, 413, 429),
        body=models.CreateApiKey,
    ),
    Route(
        "GET",
        "/api/api-keys",
        list_keys,
        operation_id="listApiKeys",
        tags=KEYS,
        scope=ADMIN,
        data=models.ApiKeyList,
        errors=(401, 403, 429),
    ),
    Route(
        "DELETE",
        "/api/api-keys/{id}",
        revoke_key,
        operation_id="revokeApiKey",
        tags=KEYS,
        scope=ADMIN,
        data=models.ApiKeyOut,
        errors=(401, 403, 404, 429),
    ),
]
