"""A Chromium page for the browser tests: Debian's Chromium (scripts/services.sh installs it),
driven by Playwright, against a real uvicorn server (``live_api``).

Playwright's own browser download is not used (CI cannot reach it): the page is launched from
``/usr/bin/chromium``. Playwright's sync API keeps an event loop running in the test's thread
while it is open, and the database fixtures use ``asyncio.run``: so the page is opened after the
server (``browser_page`` asks for ``live_api``) and closed, with its Chromium, at the test's end.
Every request the page makes is recorded in ``BrowserPage.requests``, so a
test can check that nothing came from outside the server.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
from playwright.sync_api import Page, Request, sync_playwright

from tests.conftest import Api

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@dataclass
class BrowserPage:
    """A fresh page, and the URL of every request it made."""

    page: Page
    requests: list[str] = field(default_factory=list)


@pytest.fixture
def open_browser_page() -> Iterator[Callable[[], BrowserPage]]:
    """Opens a page of a fresh Chromium when called: after the test has started its servers
    (``make_live_api``), for a test that needs a server other than ``live_api``."""
    with contextlib.ExitStack() as stack:

        def open_page() -> BrowserPage:
            playwright = stack.enter_context(sync_playwright())
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            stack.callback(browser.close)
            page = browser.new_page()
            found = BrowserPage(page)

            def record(request: Request) -> None:
                found.requests.append(request.url)

            page.on("request", record)
            return found

        yield open_page


@pytest.fixture
def browser_page(live_api: Api, open_browser_page: Callable[[], BrowserPage]) -> BrowserPage:
    """A page of a fresh Chromium, opened once ``live_api`` runs."""
    return open_browser_page()
