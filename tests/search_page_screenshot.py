"""`python -m tests.search_page_screenshot [OUT]` (`make screenshot`): the README's picture of the search
page, taken, not drawn. It serves a fresh copy of the demo catalogue (a temporary SQLite file and
index), opens `/` in the browser the tests use (Debian's Chromium, every request off loopback
blocked), types a query, opens "similar videos" for the first hit and saves a PNG (docs/search-page.png
by default)."""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

from playwright.async_api import Route, async_playwright, expect

from tests.browser import CHROMIUM, LAUNCH_ARGS, is_loopback
from tests.demo_server import start_demo_server
from tests.live_server import ROOT

QUERY = "bread that rises slowly overnight"
VIEWPORT = {"width": 1280, "height": 900}


async def screenshot(url: str, out: Path) -> None:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS)
        try:
            context = await browser.new_context(viewport=VIEWPORT, service_workers="block")
            offsite: list[str] = []

            async def guard(route: Route) -> None:
                if is_loopback(route.request.url):
                    await route.continue_()
                else:
                    offsite.append(route.request.url)
                    await route.abort("blockedbyclient")

            await context.route("**/*", guard)
            page = await context.new_page()
            await page.goto(url, wait_until="networkidle")
            box = page.get_by_role("combobox", name="Search videos")
            await box.press_sequentially(QUERY, delay=20)
            await box.press("Enter")
            results = page.locator("#result-list > li")
            await expect(results.first).to_be_visible()
            await results.first.get_by_role("button", name="Similar videos").click()
            await expect(page.locator("#similar-list > li").first).to_be_visible()
            await page.locator("#query").focus()
            await page.mouse.move(0, 0)
            await page.wait_for_load_state("networkidle")
            if offsite:
                raise SystemExit(f"the page tried to leave loopback: {offsite}")
            await page.screenshot(path=str(out), full_page=False)
        finally:
            await browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.search_page_screenshot", description=__doc__)
    parser.add_argument("out", nargs="?", type=Path, default=ROOT / "docs" / "search-page.png")
    arguments = parser.parse_args()
    arguments.out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="clipdex-screenshot-") as directory:
        server = start_demo_server(Path(directory), "screenshot")
        try:
            asyncio.run(screenshot(f"{server.url}/", arguments.out))
        finally:
            server.stop()
    print(f"wrote {arguments.out} ({arguments.out.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main()
