"""The fast lane: routes that take only the request and path values are called directly, the rest
go on to the app behind it, chosen as Starlette's router would choose."""

from __future__ import annotations

from typing import Annotated, Any

import httpx
import pytest
from fastapi import APIRouter, Query
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from taskmanager.errors import NotFound
from taskmanager.server.fastlane import FastLane, direct, lanes
from taskmanager.server.key_routes import router as key_router
from taskmanager.server.routes import router

toy = APIRouter(prefix="/api")


@toy.get("/things/special")
async def special(request: Request, size: Annotated[int, Query()] = 1) -> Response:
    return Response(f"special {size}")


@toy.get("/things/{id}")
async def thing(request: Request, id: str) -> Response:
    return Response(f"thing {id} {request.path_params}")


@toy.post("/things/{id}/poke")
async def poke(request: Request, id: str) -> Response:
    if id == "missing":
        raise NotFound("Thing not found")
    return Response(f"poked {id} with {(await request.body()).decode()}")


@toy.get("/files/{name:path}")
async def file(request: Request, name: str) -> Response:
    return Response(f"file {name}")


class Behind:
    """The app behind the lane (FastAPI in the server): records what reaches it."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.seen.append((scope["method"], scope["path"]))
        await Response("behind", 299)(scope, receive, send)


@pytest.fixture
def behind() -> Behind:
    return Behind()


@pytest.fixture
async def client(behind: Behind) -> Any:
    lane = FastLane(behind, routes=toy.routes)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=lane), base_url="http://t") as client:
        yield client


def test_the_servers_worker_routes_take_the_fast_lane_and_query_routes_do_not() -> None:
    routes = {
        route.operation_id: route
        for route in [*router.routes, *key_router.routes]
        if isinstance(route, APIRoute)
    }
    fast = {"claimTask", "completeTask", "heartbeat", "reportProgress", "createTask", "getTask"}
    assert all(direct(routes[name]) for name in fast)
    # FastAPI validates their query parameters (limit bounds, …): they stay with it.
    assert not direct(routes["listTasks"])
    assert not direct(routes["listTaskTypes"])


async def test_a_direct_route_is_answered_by_the_lane_with_its_path_values(
    client: httpx.AsyncClient, behind: Behind
) -> None:
    response = await client.get("/api/things/42")
    assert response.text == "thing 42 {'id': '42'}"
    response = await client.post("/api/things/7/poke", content=b"a stick")
    assert response.text == "poked 7 with a stick"
    response = await client.get("/api/files/a/b.txt")
    assert response.text == "file a/b.txt"
    assert behind.seen == []


async def test_an_error_a_direct_route_raises_is_the_error_envelope(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/things/missing/poke")
    assert response.status_code == 404
    body = response.json()
    assert (body["success"], body["code"], body["message"]) == (False, "not_found", "Thing not found")


async def test_routes_with_query_parameters_unknown_paths_and_wrong_methods_go_behind(
    client: httpx.AsyncClient, behind: Behind
) -> None:
    for method, path in (
        ("GET", "/api/things/special"),  # declared first, with a query parameter: FastAPI's
        ("GET", "/api/nowhere"),
        ("DELETE", "/api/things/42"),
        ("GET", "/api/things/42/poke"),
    ):
        response = await client.request(method, path)
        assert response.status_code == 299, (method, path)
    assert behind.seen == [
        ("GET", "/api/things/special"),
        ("GET", "/api/nowhere"),
        ("DELETE", "/api/things/42"),
        ("GET", "/api/things/42/poke"),
    ]


async def test_the_path_is_matched_below_the_root_path(behind: Behind) -> None:
    lane = FastLane(behind, routes=toy.routes)
    transport = httpx.ASGITransport(app=lane, root_path="/queue")
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.get("/queue/api/things/9")
    assert response.text == "thing 9 {'id': '9'}"


def test_only_fastapi_routes_are_accepted() -> None:
    from starlette.routing import Route

    with pytest.raises(TypeError, match="FastAPI routes only"):
        lanes([Route("/x", special)])
