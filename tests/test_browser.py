"""The browser fixture's guard (tests/browser.py): what a page asks for outside loopback is blocked and
recorded, so a page test that passes really ran offline."""

from __future__ import annotations

import pytest

from tests.browser import WatchedPage, is_loopback

# `.invalid` never resolves (RFC 2606); these are blocked before any lookup anyway.
OFFSITE_IMAGE = "https://cdn.example.invalid/pixel.png"
OFFSITE_SOCKET = "wss://socket.example.invalid/live"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1:8000/schema", True),
        ("http://localhost:8000/", True),
        ("http://[::1]:8000/", True),
        ("data:text/plain,hello", True),
        ("https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui.css", False),
        ("http://127.0.0.1.example.invalid/", False),
        ("http://10.0.0.1/", False),
    ],
)
def test_is_loopback(url: str, expected: bool) -> None:
    assert is_loopback(url) is expected


async def test_requests_leaving_loopback_are_blocked_and_recorded(browser_page: WatchedPage) -> None:
    page = browser_page.page
    await page.set_content(f'<img id="pixel" src="{OFFSITE_IMAGE}">')
    await page.evaluate(
        """url => new Promise(done => {
            const socket = new WebSocket(url);
            socket.onclose = socket.onerror = () => done();
        })""",
        OFFSITE_SOCKET,
    )

    assert OFFSITE_IMAGE in browser_page.offsite_requests
    assert OFFSITE_SOCKET in browser_page.offsite_requests
    assert await page.evaluate("document.getElementById('pixel').naturalWidth") == 0  # it never loaded
    with pytest.raises(AssertionError, match="tried to leave loopback"):
        browser_page.assert_offline_and_clean()
