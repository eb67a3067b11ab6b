"""``/docs`` in Chromium: Swagger UI renders the API's operations from files the server serves
itself, and the page asks nothing of any other origin (it must work with no internet)."""

from __future__ import annotations

from urllib.parse import urlsplit

from playwright.sync_api import expect

from tests.browser.conftest import BrowserPage
from tests.conftest import Api


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def test_docs_renders_the_operations_from_the_server_alone(live_api: Api, browser_page: BrowserPage) -> None:
    page = browser_page.page
    page.goto(f"{live_api.url}/docs")

    expect(page.locator(".swagger-ui .info .title")).to_contain_text("TaskManager API", timeout=15000)
    create = page.locator(".opblock-summary-path", has_text="/api/tasks/claim").first
    expect(create).to_be_visible()
    expect(page.locator(".opblock-summary-description", has_text="Claim").first).to_be_visible()
    page.wait_for_load_state("networkidle")

    assert browser_page.requests, "the page made no requests"
    outside = [url for url in browser_page.requests if origin(url) != live_api.url]
    assert outside == [], f"the page asked other origins: {outside}"
    assert f"{live_api.url}/api/docs/swagger-ui-bundle.js" in browser_page.requests


def test_docs_under_the_api_prefix_is_the_same_page(live_api: Api) -> None:
    page = live_api.get("/api/docs")
    assert page.status_code == 200
    assert "cdn" not in page.text.lower()
    for asset in ("swagger-ui.css", "swagger-ui-bundle.js"):
        served = live_api.get(f"/api/docs/{asset}")
        assert served.status_code == 200, asset
        assert len(served.content) > 10_000
