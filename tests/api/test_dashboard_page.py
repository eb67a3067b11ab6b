"""``GET /dashboard`` and its files: public, from the package, under a strict
Content-Security-Policy (self only), and outside the API's OpenAPI document."""

from __future__ import annotations

import asyncio

from starlette.requests import Request

from taskmanager.server.dashboard import ASSETS, CONTENT_SECURITY_POLICY, dashboard_routes
from tests.conftest import ServerFactory


def test_the_page_and_its_files_need_no_key_and_allow_only_their_own_origin(make_api: ServerFactory) -> None:
    api = make_api(send_key=False)
    page = api.get("/dashboard")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "script-src 'self'" in CONTENT_SECURITY_POLICY
    assert "unsafe" not in CONTENT_SECURITY_POLICY
    assert page.headers["x-frame-options"] == "DENY"
    assert '<script type="module" src="/dashboard/dashboard.js">' in page.text
    assert "http" not in page.text.replace("http-equiv", "")
    for name, media_type in ASSETS.items():
        served = api.get(f"/dashboard/{name}")
        assert served.status_code == 200, name
        assert served.headers["content-type"].startswith(media_type)
        assert served.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert "innerHTML" not in served.text
        assert "insertAdjacentHTML" not in served.text


def test_the_page_is_not_an_api_operation(make_api: ServerFactory) -> None:
    api = make_api(send_key=False)
    document = api.get("/openapi.json").json()
    assert not [path for path in document["paths"] if "dashboard" in path]
    assert api.get("/dashboard/nothing.js").status_code == 404


def test_under_a_sub_path_the_page_names_its_files_below_it() -> None:
    page_route = dashboard_routes()[0]
    scope = {"type": "http", "method": "GET", "path": "/tm/dashboard", "root_path": "/tm", "headers": []}
    response = asyncio.run(page_route.endpoint(Request(scope)))
    assert b'<script type="module" src="/tm/dashboard/dashboard.js">' in response.body
    assert b'href="/tm/dashboard/dashboard.css"' in response.body
