"""``/api-keys`` (API.md B.6): create, list and revoke API keys. Admin only."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from taskmanager import models
from taskmanager.engine.access import KEY_NOT_FOUND, KeyService
from taskmanager.engine.keys import ADMIN
from taskmanager.server.body import body, task_id
from taskmanager.server.docs import request_body, responses
from taskmanager.server.envelope import ok

router = APIRouter(prefix="/api")


async def key_service(request: Request) -> KeyService:
    """The key service, after checking the caller holds ``admin``."""
    await request.app.state.auth.check(request, ADMIN)
    keys: KeyService = request.app.state.keys
    return keys


@router.post(
    "/api-keys",
    tags=["API Keys"],
    operation_id="createApiKey",
    openapi_extra=request_body(models.CreateApiKey),
    responses=responses(models.CreatedApiKey, 400, 401, 403, 413, 429),
)
async def create_key(request: Request) -> Response:
    """Create a key; the response holds the key itself, which is never shown again."""
    keys = await key_service(request)
    return ok(await keys.create(await body(request, models.CreateApiKey)))


@router.get(
    "/api-keys",
    tags=["API Keys"],
    operation_id="listApiKeys",
    responses=responses(models.ApiKeyList, 401, 403, 429),
)
async def list_keys(request: Request) -> Response:
    """Every key, revoked ones included, without secrets."""
    keys = await key_service(request)
    return ok(await keys.list())


@router.delete(
    "/api-keys/{id}",
    tags=["API Keys"],
    operation_id="revokeApiKey",
    responses=responses(models.ApiKeyOut, 401, 403, 404, 429),
)
async def revoke_key(request: Request, id: str) -> Response:
    """Revoke a key: it stops working at once on this server (see the security guide)."""
    keys = await key_service(request)
    return ok(await keys.revoke(task_id(id, KEY_NOT_FOUND)))
