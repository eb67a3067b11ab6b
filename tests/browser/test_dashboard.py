"""The dashboard (API.md E) in Chromium against a real server, on each database: signing in with a
key (or none in open mode), the counts, a task's detail and its actions, retrying a type's
failed tasks, filters and paging, a live update from ``/events``; and every request the page made
went to the server itself, none with the key in its URL.

The servers keep no ``/stats`` answer (``stats_max_age=0``): their clock is frozen, so a kept
answer would never age. Nothing sleeps: each step waits for what the page shows."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.api.conftest import OPEN_SCHEMA, ok, register
from tests.browser.conftest import BrowserPage
from tests.browser.test_docs_page import origin
from tests.conftest import ADMIN_KEY, Api, ServerFactory

HOSTILE = "<img src=x onerror=alert(1)>"


@pytest.fixture
def server(make_live_api: ServerFactory) -> Api:
    return make_live_api(stats_max_age=0)


@pytest.fixture
def browser(server: Api, open_browser_page: Callable[[], BrowserPage]) -> BrowserPage:
    """A page opened after ``server`` started (the order the browser fixtures need)."""
    return open_browser_page()


def create(api: Api, n: int = 1, type_name: str = "demo.echo", **fields: Any) -> list[int]:
    bodies = [{"type": type_name, "params": {"n": i}, **fields} for i in range(n)]
    return [ok(api.post("/api/tasks", json=body))["id"] for body in bodies]


def create_failed(api: Api, n: int = 1, type_name: str = "demo.echo") -> list[int]:
    """``n`` tasks of one attempt, claimed and failed (``error: boom``)."""
    ids = create(api, n, type_name, max_attempts=1)
    for _ in ids:
        claimed = ok(api.post("/api/tasks/claim", json={"worker_id": "w1", "task_type_id": None}))
        report = {"worker_id": "w1", "success": False, "error": "boom"}
        ok(api.post(f"/api/tasks/{claimed['id']}/complete", json=report))
    return ids


def span(first: int, last: int, total: int) -> str:
    """The pager's text: first and last shown (an en dash between them), of how many."""
    return f"{first}\N{EN DASH}{last} of {total}"


def status_of(api: Api, task_id: int) -> str:
    found: str = ok(api.get(f"/api/tasks/{task_id}"))["status"]
    return found


def sign_in(page: Page, api: Api) -> None:
    page.goto(f"{api.url}/dashboard")
    page.get_by_label("API key").fill(ADMIN_KEY)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#main")).to_be_visible()
    expect(page.locator("#live")).to_have_text("live")


def count(page: Page, type_name: str, status: str) -> Any:
    return page.locator(f'#types tr[data-type="{type_name}"] td[data-status="{status}"]')


def assert_only_the_server_was_asked(browser: BrowserPage, api: Api) -> None:
    assert browser.requests, "the page made no requests"
    outside = [url for url in browser.requests if origin(url) != api.url]
    assert outside == [], f"the page asked other origins: {outside}"
    assert not [url for url in browser.requests if ADMIN_KEY in url], "the key went into a URL"


def test_sign_in_see_the_counts_and_retry_a_failed_task(server: Api, browser: BrowserPage) -> None:
    register(server, schema=OPEN_SCHEMA)
    (failed,) = create(server, 1, params={"text": HOSTILE}, max_attempts=1)
    claimed = ok(server.post("/api/tasks/claim", json={"worker_id": "w1", "task_type_id": None}))
    report = {"worker_id": "w1", "success": False, "error": HOSTILE}
    ok(server.post(f"/api/tasks/{claimed['id']}/complete", json=report))
    create(server, 2)
    page = browser.page

    page.goto(f"{server.url}/dashboard")
    expect(page.get_by_label("API key")).to_be_visible()
    page.get_by_label("API key").fill("not-a-key")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#sign-in-error")).to_contain_text("refused")
    sign_in(page, server)

    expect(count(page, "demo.echo", "pending")).to_have_text("2")
    expect(count(page, "demo.echo", "failed")).to_have_text("1")
    expect(page.locator("#throughput-summary")).to_have_text("0 completed, 1 failed in the last hour")
    expect(page.locator("#throughput rect.failed")).to_have_count(1)
    page.get_by_role("button", name=f"#{failed}", exact=True).click()
    detail = page.locator("#detail")
    expect(detail.locator("#detail-id")).to_have_text(f"#{failed}")
    expect(detail.locator('dd[data-field="Status"]')).to_have_text("failed")
    expect(detail.locator("#detail-error")).to_have_text(HOSTILE)  # shown as text, never as markup
    expect(detail.locator("#detail-params")).to_contain_text(HOSTILE)
    expect(detail.locator("#detail-history")).to_contain_text("failed")
    assert page.locator("img").count() == 0

    page.get_by_role("button", name="Retry", exact=True).click()
    expect(detail.locator('dd[data-field="Status"]')).to_have_text("pending")
    expect(detail.locator("#detail-history")).to_contain_text("retried")
    expect(count(page, "demo.echo", "pending")).to_have_text("3")
    assert status_of(server, failed) == "pending"
    assert page.evaluate("Object.values(sessionStorage)") == [ADMIN_KEY]
    assert_only_the_server_was_asked(browser, server)

    page.reload()  # the key is kept for the session: no second prompt
    expect(count(page, "demo.echo", "pending")).to_have_text("3")
    expect(page.locator("#sign-in")).to_be_hidden()
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_label("API key")).to_be_visible()
    assert page.evaluate("sessionStorage.length") == 0


def test_a_key_that_may_only_read_sees_its_retry_refused(server: Api, browser: BrowserPage) -> None:
    register(server, schema=OPEN_SCHEMA)
    (task_id,) = create_failed(server)
    body = {"name": "reader", "scopes": ["tasks:read"]}
    reader = ok(server.post("/api/api-keys", json=body))["key"]
    page = browser.page
    page.goto(f"{server.url}/dashboard")
    page.get_by_label("API key").fill(reader)
    page.get_by_role("button", name="Sign in").click()

    page.get_by_role("button", name=f"#{task_id}", exact=True).click()
    page.get_by_role("button", name="Retry", exact=True).click()
    expect(page.locator("#detail-message")).to_have_text(
        f"Task #{task_id} was not retried: Insufficient permissions"
    )
    expect(page.locator('#detail dd[data-field="Status"]')).to_have_text("failed")
    page.locator('#types tr[data-type="demo.echo"]').get_by_role("button", name="Retry all failed").click()
    expect(page.locator("#bulk-progress")).to_contain_text("stopped: Insufficient permissions")
    assert status_of(server, task_id) == "failed"
    expect(page.locator("#schedules")).to_contain_text("This key may not read schedules.")


def test_the_schedules_are_listed(server: Api, browser: BrowserPage) -> None:
    """B.8: the dashboard lists the schedules (as a list): cadence, next and last run."""
    register(server, schema=OPEN_SCHEMA)
    hourly = {"name": "hourly", "type": "demo.echo", "cron": "0 * * * *", "timezone": "Europe/Prague"}
    paused = {"name": "paused", "type": "demo.echo", "interval_seconds": 90, "enabled": False}
    saved = ok(server.post("/api/schedules", json=hourly))
    ok(server.post("/api/schedules", json=paused))
    page = browser.page
    sign_in(page, server)

    row = page.locator('#schedules tr[data-schedule="hourly"]')
    expect(row.locator("td").nth(0)).to_have_text("demo.echo")
    expect(row.locator("td").nth(1)).to_have_text("0 * * * * (Europe/Prague)")
    expect(row.locator("td").nth(2)).to_have_text(
        re.sub(r"\.\d+Z$", "Z", saved["next_run_at"].replace("T", " "))
    )
    expect(row.locator("td").nth(3)).to_have_text("\N{EM DASH}")
    paused_row = page.locator('#schedules tr[data-schedule="paused"]')
    expect(paused_row.locator("td").nth(1)).to_have_text("every 90 s")
    expect(paused_row.locator("td").nth(2)).to_have_text("disabled")

    ok(server.delete("/api/schedules/paused"))
    create(server)  # an event: the page refreshes without a reload
    expect(paused_row).to_have_count(0)
    expect(row).to_have_count(1)


def test_cancel_and_delete_a_task(server: Api, browser: BrowserPage) -> None:
    register(server, schema=OPEN_SCHEMA)
    (task_id,) = create(server)
    page = browser.page
    sign_in(page, server)

    page.get_by_role("button", name=f"#{task_id}", exact=True).click()
    status = page.locator('#detail dd[data-field="Status"]')
    expect(status).to_have_text("pending")
    page.get_by_role("button", name="Cancel", exact=True).click()
    expect(status).to_have_text("cancelled")
    assert status_of(server, task_id) == "cancelled"

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete", exact=True).click()
    expect(page.locator("#detail")).to_be_hidden()
    expect(page.locator(f'#tasks tr[data-task-id="{task_id}"]')).to_have_count(0)
    assert server.get(f"/api/tasks/{task_id}").status_code == 404
    assert_only_the_server_was_asked(browser, server)


def test_retry_all_failed_of_one_type(server: Api, browser: BrowserPage) -> None:
    register(server, schema=OPEN_SCHEMA)
    register(server, "demo.other", schema=OPEN_SCHEMA)
    echoes = create_failed(server, 4)
    (other,) = create_failed(server, 1, "demo.other")
    page = browser.page
    sign_in(page, server)
    expect(count(page, "demo.echo", "failed")).to_have_text("4")

    row = page.locator('#types tr[data-type="demo.echo"]')
    row.get_by_role("button", name="Retry all failed").click()  # one POST /tasks/bulk
    expect(page.locator("#bulk-progress")).to_have_text("Retried 4 failed demo.echo tasks.")
    expect(count(page, "demo.echo", "failed")).to_have_text("0")
    expect(count(page, "demo.echo", "pending")).to_have_text("4")
    expect(count(page, "demo.other", "failed")).to_have_text("1")
    assert [status_of(server, task_id) for task_id in echoes] == ["pending"] * 4
    assert status_of(server, other) == "failed"
    assert f"{server.url}/api/tasks/bulk" in browser.requests
    assert not [url for url in browser.requests if url.endswith("/retry")], "retried one by one"


def test_retry_all_failed_retries_each_task_on_a_server_without_the_bulk_route(
    server: Api, browser: BrowserPage
) -> None:
    """A server older than ``POST /tasks/bulk`` answers it ``404 Endpoint not found`` (as the
    browser is told here): the page then retries each failed task of the type itself."""
    register(server, schema=OPEN_SCHEMA)
    register(server, "demo.other", schema=OPEN_SCHEMA)
    failed = create_failed(server, 3)
    (other,) = create_failed(server, 1, "demo.other")
    page = browser.page
    refused = {"success": False, "error": "Endpoint not found", "message": "Endpoint not found"}
    missing = {**refused, "code": "not_found", "timestamp": 0}
    page.route(f"{server.url}/api/tasks/bulk", lambda route: route.fulfill(status=404, json=missing))
    sign_in(page, server)

    page.locator('#types tr[data-type="demo.echo"]').get_by_role("button", name="Retry all failed").click()
    expect(page.locator("#bulk-progress")).to_have_text("Retried 3 failed demo.echo tasks.")
    expect(count(page, "demo.echo", "pending")).to_have_text("3")
    assert [status_of(server, task_id) for task_id in failed] == ["pending"] * 3
    assert status_of(server, other) == "failed"
    retried = sorted(url for url in browser.requests if url.endswith("/retry"))
    assert retried == sorted(f"{server.url}/api/tasks/{task_id}/retry" for task_id in failed)


def test_filters_and_paging(server: Api, browser: BrowserPage) -> None:
    register(server, schema=OPEN_SCHEMA)
    register(server, "demo.other", schema=OPEN_SCHEMA)
    create(server, 30)
    others = create(server, 3, "demo.other")
    page = browser.page
    sign_in(page, server)
    info = page.locator("#page-info")
    rows = page.locator("#tasks tbody tr")

    expect(info).to_have_text(span(1, 25, 33))
    expect(rows).to_have_count(25)
    page.get_by_role("button", name="Next").click()
    expect(info).to_have_text(span(26, 33, 33))
    expect(rows).to_have_count(8)
    expect(page.get_by_role("button", name="Next")).to_be_disabled()
    page.get_by_role("button", name="Previous").click()
    expect(info).to_have_text(span(1, 25, 33))

    page.locator("#types").get_by_role("button", name="demo.other").click()  # a type's tasks
    expect(info).to_have_text(span(1, 3, 3))
    expect(page.locator("#filter-type")).to_have_value("demo.other")
    shown = [int(n) for n in rows.evaluate_all("rows => rows.map(r => r.dataset.taskId)")]
    assert shown == sorted(others, reverse=True)

    page.locator("#filter-status").select_option("failed")
    expect(info).to_have_text("none")
    expect(rows).to_have_text(["No tasks match."])
    page.locator("#filter-status").select_option("pending")
    page.locator("#filter-type").select_option("")
    expect(info).to_have_text(span(1, 25, 33))


def test_a_new_task_appears_live_without_a_reload(server: Api, browser: BrowserPage) -> None:
    register(server, schema=OPEN_SCHEMA)
    page = browser.page
    sign_in(page, server)
    expect(page.locator("#page-info")).to_have_text("none")
    navigations: list[str] = []
    page.on("framenavigated", lambda frame: navigations.append(frame.url))

    (task_id,) = create(server)
    expect(page.locator(f'#tasks tr[data-task-id="{task_id}"]')).to_be_visible()
    expect(count(page, "demo.echo", "pending")).to_have_text("1")
    ok(server.post(f"/api/tasks/{task_id}/cancel", json={}))
    expect(count(page, "demo.echo", "cancelled")).to_have_text("1")
    assert navigations == []
    assert any(url.endswith("/api/events") for url in browser.requests)


def test_a_key_revoked_while_the_page_is_open_asks_for_another(
    make_live_api: ServerFactory, open_browser_page: Callable[[], BrowserPage]
) -> None:
    server = make_live_api(stats_max_age=0, key_cache_seconds=0)
    register(server, schema=OPEN_SCHEMA)
    made = ok(server.post("/api/api-keys", json={"name": "ops", "scopes": ["tasks:read"]}))
    page = open_browser_page().page
    page.goto(f"{server.url}/dashboard")
    page.get_by_label("API key").fill(made["key"])
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#live")).to_have_text("live")

    ok(server.delete(f"/api/api-keys/{made['id']}"))
    create(server)  # an event: the page refreshes, and its key is refused
    expect(page.locator("#sign-in-error")).to_contain_text("refused")
    assert page.evaluate("sessionStorage.length") == 0
    sign_in(page, server)  # another key: the page and its live stream come back
    expect(count(page, "demo.echo", "pending")).to_have_text("1")


def test_open_mode_asks_for_no_key(
    make_live_api: ServerFactory, open_browser_page: Callable[[], BrowserPage]
) -> None:
    server = make_live_api(api_key=None, stats_max_age=0)
    register(server, schema=OPEN_SCHEMA)
    create(server, 2)
    browser = open_browser_page()
    page = browser.page

    page.goto(f"{server.url}/dashboard")
    expect(count(page, "demo.echo", "pending")).to_have_text("2")
    expect(page.locator("#live")).to_have_text("live")
    expect(page.locator("#sign-in")).to_be_hidden()
    expect(page.get_by_role("button", name="Sign out")).to_be_hidden()
    assert page.evaluate("sessionStorage.length") == 0
    assert_only_the_server_was_asked(browser, server)
