"""Headless Chromium for the tests that look at a page as a person would, offline: Debian's Chromium
driven by Playwright, with every request that would leave loopback blocked and recorded.

tests/conftest.py registers this module as a plugin, so any test can ask for:

- `chromium`: one browser for the whole session (started only when a test needs it);
- `browser_page`: a `WatchedPage` in a fresh browser context of its own (no cookies or storage from
  another test), closed after the test.

The browser is `TEST_CHROMIUM` (default /usr/bin/chromium, Debian's `chromium` package; `make test`
installs it when run as root). Never `playwright install`: it downloads a browser build, which fails
here. Without a browser these tests skip; in CI (CI=true) they fail instead.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.async_api import (
    Browser,
    ConsoleMessage,
    Error,
    Page,
    Route,
    WebSocketRoute,
    async_playwright,
)

from tests.services import IN_CI

CHROMIUM = Path(os.environ.get("TEST_CHROMIUM", "/usr/bin/chromium"))
LAUNCH_ARGS = [
    "--no-sandbox",  # the tests run as root, where Chromium's sandbox refuses to start
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # Requests the browser makes on its own (not the page's, which the routes below see) go to a proxy
    # that is not there, so they fail on this machine instead of reaching the internet; Chromium
    # never sends loopback addresses through a proxy.
    "--proxy-server=http://127.0.0.1:9",
]
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
# Schemes that never touch the network.
LOCAL_SCHEMES = {"data", "blob", "about", "chrome-error"}


def is_loopback(url: str) -> bool:
    """Whether a request to this URL stays on this machine."""
    parts = urlsplit(url)
    if parts.scheme in LOCAL_SCHEMES:
        return True
    return (parts.hostname or "") in LOOPBACK_HOSTS


@dataclass
class WatchedPage:
    """A page and what it did that a test should see: requests that tried to leave loopback (all
    blocked), console errors and uncaught exceptions."""

    page: Page
    offsite_requests: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)

    def assert_offline_and_clean(self) -> None:
        """Nothing tried to leave loopback, nothing was logged as an error, nothing threw."""
        assert self.offsite_requests == [], f"requests that tried to leave loopback: {self.offsite_requests}"
        assert self.console_errors == [], f"console errors: {self.console_errors}"
        assert self.page_errors == [], f"uncaught exceptions: {self.page_errors}"


def _browser_missing(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"{reason}; CI needs it (apt-get install -y chromium, as `make test` does as root)")
    pytest.skip(f"{reason}: the browser tests need it (apt-get install chromium, or set TEST_CHROMIUM)")


@pytest.fixture(scope="session")
async def chromium() -> AsyncIterator[Browser]:
    """One headless Chromium for the session. Playwright gives it a fresh, temporary profile
    (user-data dir), removed when it closes."""
    if not os.access(CHROMIUM, os.X_OK):
        _browser_missing(f"no Chromium at {CHROMIUM}")
    async with async_playwright() as playwright:
        try:
            browser = await playwright.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS
            )
        except Error as exc:
            _browser_missing(f"Chromium at {CHROMIUM} did not start: {exc.message.splitlines()[0]}")
        try:
            yield browser
        finally:
            await browser.close()


@pytest.fixture
async def browser_page(chromium: Browser) -> AsyncIterator[WatchedPage]:
    """A page in a new browser context: every request that leaves loopback is aborted and recorded,
    console errors and uncaught exceptions are recorded; see `WatchedPage.assert_offline_and_clean`."""
    # Service workers could fetch outside the routes, so none are allowed.
    context = await chromium.new_context(service_workers="block")
    page = await context.new_page()
    watched = WatchedPage(page)

    async def guard(route: Route) -> None:
        if is_loopback(route.request.url):
            await route.continue_()
        else:
            watched.offsite_requests.append(route.request.url)
            await route.abort("blockedbyclient")

    async def guard_web_socket(socket: WebSocketRoute) -> None:
        if is_loopback(socket.url):
            socket.connect_to_server()
        else:
            watched.offsite_requests.append(socket.url)
            await socket.close(code=1008, reason="tests stay on loopback")

    def record_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            location = message.location
            watched.console_errors.append(f"{message.text} ({location.get('url', '')})")

    await context.route("**/*", guard)
    await context.route_web_socket("**/*", guard_web_socket)
    page.on("console", record_console)
    page.on("pageerror", lambda error: watched.page_errors.append(str(error)))
    try:
        yield watched
    finally:
        await context.close()
