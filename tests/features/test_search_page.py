"""The search page at / in a real browser, on the demo catalogue: suggestions picked with the keyboard,
highlighted results, facets, similar videos, paging, typo correction, sign-in for one's private videos
and the API's errors as messages, with no request leaving loopback and no console error.

One server and one seeded, fully indexed catalogue serve the whole module (tests/demo_server.py).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Locator, Page, expect

from features.demo.demo import DEMO_PASSWORD, DEMO_USERNAME
from tests.browser import WatchedPage
from tests.demo_server import start_demo_server
from tests.live_server import ROOT, AppServer

LOGIN_LIMIT = 5
CATALOGUE = json.loads((ROOT / "features/demo/demo_catalogue.json").read_text())


@pytest.fixture(scope="module")
async def demo_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[AppServer]:
    # The real sign-in limit (the test settings lift it), for the 429 test.
    directory = Path(tmp_path_factory.mktemp("search-page"))
    server = await asyncio.to_thread(
        start_demo_server, directory, "search-page", login_rate_limit=LOGIN_LIMIT
    )
    try:
        yield server
    finally:
        server.stop()


async def api_answer(server: AppServer, path: str, token: str | None = None, **params: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        return await client.get(path, params=params, headers=headers)


async def api(server: AppServer, path: str, **params: Any) -> dict[str, Any]:
    """What the API itself answers, to compare the page with."""
    return (await api_answer(server, path, **params)).raise_for_status().json()


async def open_page(browser_page: WatchedPage, server: AppServer, query: str = "") -> Page:
    page = browser_page.page
    response = await page.goto(f"{server.url}/{query}")
    assert response is not None
    assert response.status == 200
    await expect(page.locator("html[data-ready=true]")).to_be_attached()
    return page


def search_box(page: Page) -> Locator:
    return page.get_by_role("combobox", name="Search videos")


def results(page: Page) -> Locator:
    return page.locator("#result-list > li")


async def search(page: Page, text: str) -> None:
    box = search_box(page)
    await box.fill(text)
    await box.press("Enter")
    await expect(page.get_by_role("status").first).to_have_text(re.compile(r"^Results 1-"))


async def result_titles(page: Page) -> list[str]:
    return await page.locator(".result-title").all_inner_texts()


async def test_a_suggestion_picked_with_the_keyboard_searches_and_marks_the_words(
    demo_server: AppServer, browser_page: WatchedPage
) -> None:
    page = await open_page(browser_page, demo_server)
    box = search_box(page)
    await box.press_sequentially("sourd", delay=30)
    listbox = page.get_by_role("listbox", name="Suggestions")
    await expect(listbox).to_be_visible()
    await expect(box).to_have_attribute("aria-expanded", "true")
    completions = await api(demo_server, "/api/v1/search/suggest", q="sourd")
    expected = [item["text"] for item in completions["items"]]
    assert expected, "the API has no completion for 'sourd'"
    options = listbox.get_by_role("option")
    await expect(options).to_have_count(len(expected))
    # The typed part is marked in each suggestion, as text (the page builds the <mark> itself).
    assert {text.lower() for text in await options.locator("mark").all_inner_texts()} == {"sourd"}

    await box.press("ArrowDown")
    await box.press("ArrowDown")
    second = options.nth(1)
    await expect(second).to_have_attribute("aria-selected", "true")
    await expect(box).to_have_attribute("aria-activedescendant", await second.get_attribute("id") or "")
    await box.press("ArrowUp")
    await expect(options.first).to_have_attribute("aria-selected", "true")
    await box.press("Enter")

    await expect(box).to_have_value(expected[0])
    await expect(listbox).to_be_hidden()
    await expect(box).to_have_attribute("aria-expanded", "false")
    await expect(results(page).first).to_be_visible()
    marked = await page.locator(".result mark").all_inner_texts()
    assert marked, "no word of the query is marked in the results"
    query_words = set(expected[0].lower().split())
    assert {word.lower() for word in marked} <= query_words
    assert "q=" in page.url  # the search is in the address, so reload and back work

    # Escape closes the suggestions and leaves the text; a second Escape clears it.
    await box.fill("")
    await box.press_sequentially("bread", delay=30)
    await expect(listbox).to_be_visible()
    await box.press("Escape")
    await expect(listbox).to_be_hidden()
    await expect(box).to_have_value("bread")
    await box.press("Escape")
    await expect(box).to_have_value("")
    browser_page.assert_offline_and_clean()


async def tag_chips(page: Page) -> dict[str, str]:
    chips = page.locator("#tag-chips .chip")
    labels = await chips.locator(".chip-label").all_inner_texts()
    counts = await chips.locator(".chip-count").all_inner_texts()
    return dict(zip(labels, counts, strict=True))


async def test_a_tag_facet_narrows_the_results_and_their_counts(
    demo_server: AppServer, browser_page: WatchedPage
) -> None:
    page = await open_page(browser_page, demo_server)
    await search(page, "practice routine")
    await expect(page.locator("#tag-chips .chip").first).to_be_visible()
    before = await tag_chips(page)
    page_one = await result_titles(page)
    answer = await api(demo_server, "/api/v1/search", q="practice routine", facets="tags,duration")
    assert before == {tag["value"]: str(tag["count"]) for tag in answer["facets"]["tags"][:14]}
    # A tag that not every candidate has, so choosing it must change the list.
    tag = next(
        tag["value"]
        for tag in answer["facets"]["tags"]
        if tag["count"] < answer["facets"]["candidates"] and tag["value"] in before
    )

    chip = page.get_by_role("button", name=re.compile(rf"^{re.escape(tag)}\s*,\s*\d+ videos?$"))
    await chip.click()
    await expect(chip).to_have_attribute("aria-pressed", "true")
    await expect(page.locator("#result-list .result-tags").first).to_contain_text(tag)
    for tags in await page.locator(".result-tags").all_inner_texts():
        assert tag in tags.split("\n")
    after = await tag_chips(page)
    assert after != before
    # Every candidate now has the tag: its count is the whole candidate set, at least what it was.
    assert int(after[tag]) >= int(before[tag])
    await expect(page.locator("#facet-scope")).to_have_text(f"Counted over the best {after[tag]} matches.")
    assert await result_titles(page) != page_one
    assert f"tag={tag.replace(' ', '+')}" in page.url

    # The duration facet: only videos in the chosen range remain, and choosing it again lets go.
    duration = page.locator("#duration-chips .chip").first
    await duration.click()
    await expect(duration).to_have_attribute("aria-pressed", "true")
    narrowed = await api(demo_server, "/api/v1/search", q="practice routine", tag=tag, facets="duration")
    # The chips are shortest first: the first is the bucket with the lowest bounds.
    chosen = min(narrowed["facets"]["duration"], key=lambda bucket: bucket["min_duration"] or 0)
    clocks = await page.locator(".result .meta time").all_inner_texts()
    assert clocks
    for clock in clocks:
        minutes, seconds = clock.split(":")[-2:]
        hours = int(clock.split(":")[0]) if clock.count(":") == 2 else 0
        length = hours * 3600 + int(minutes) * 60 + int(seconds)
        assert (chosen["min_duration"] or 0) <= length <= (chosen["max_duration"] or 86_400)
    await duration.click()
    await expect(duration).to_have_attribute("aria-pressed", "false")
    browser_page.assert_offline_and_clean()


async def test_similar_videos_open_beside_a_result_and_close_with_escape(
    demo_server: AppServer, browser_page: WatchedPage
) -> None:
    page = await open_page(browser_page, demo_server)
    await search(page, "chess endgame technique")
    first = results(page).first
    title = await first.locator(".result-title").inner_text()
    opener = first.get_by_role("button", name="Similar videos")
    await opener.click()
    panel = page.get_by_role("complementary", name="Similar videos")
    await expect(panel).to_be_visible()
    await expect(panel).to_be_focused()
    top = await api(demo_server, "/api/v1/search", q="chess endgame technique", limit=1)
    video_id = top["items"][0]["id"]
    expected = [
        item["title"]
        for item in (await api(demo_server, f"/api/v1/videos/{video_id}/similar", limit=6))["items"]
    ]
    await expect(panel.locator(".similar-title")).to_have_text(expected)
    assert title not in expected
    await page.keyboard.press("Escape")
    await expect(panel).to_be_hidden()
    await expect(opener).to_be_focused()
    browser_page.assert_offline_and_clean()


async def test_next_page_shows_the_next_results(demo_server: AppServer, browser_page: WatchedPage) -> None:
    page = await open_page(browser_page, demo_server)
    await search(page, "how to get better at it")
    first_page = await result_titles(page)
    assert len(first_page) == 10
    await page.get_by_role("button", name="Next page").click()
    await expect(page.get_by_role("status").first).to_have_text(re.compile(r"^Results 11-"))
    await expect(page.locator("#page-number")).to_have_text("Page 2")
    second_page = await result_titles(page)
    assert second_page
    assert not set(second_page) & set(first_page)
    await expect(page.locator("#results")).to_be_focused()  # a screen reader starts at the new page
    await page.get_by_role("button", name="Previous page").click()
    await expect(page.locator("#page-number")).to_have_text("Page 1")
    assert await result_titles(page) == first_page
    browser_page.assert_offline_and_clean()


async def test_a_typo_is_corrected_and_says_so(demo_server: AppServer, browser_page: WatchedPage) -> None:
    typed = "sourdoug startr"
    corrected = (await api(demo_server, "/api/v1/search", q=typed))["corrected_query"]
    assert corrected
    assert corrected != typed
    page = await open_page(browser_page, demo_server)
    await search(page, typed)
    line = page.locator("#correction")
    await expect(line).to_be_visible()
    await expect(line).to_contain_text(f"Did you mean {corrected}?")
    await line.get_by_role("button", name=corrected).click()
    await expect(search_box(page)).to_have_value(corrected)
    await expect(line).to_be_hidden()
    await expect(results(page).first).to_be_visible()
    browser_page.assert_offline_and_clean()


async def test_signing_in_shows_ones_private_videos(
    demo_server: AppServer, browser_page: WatchedPage
) -> None:
    private = next(item for item in CATALOGUE if item["visibility"] == "private")
    page = await open_page(browser_page, demo_server)
    await search(page, private["title"])
    assert private["title"] not in await result_titles(page)

    # Keyboard only: open the form, fill it, submit with Enter.
    toggle = page.get_by_role("button", name="Sign in")
    await toggle.focus()
    await page.keyboard.press("Enter")
    await expect(page.get_by_label("Email or username")).to_be_focused()
    await page.keyboard.type(DEMO_USERNAME)
    await page.keyboard.press("Tab")
    await expect(page.get_by_label("Password")).to_be_focused()
    await page.keyboard.type(DEMO_PASSWORD)
    await page.keyboard.press("Enter")
    await expect(page.get_by_text("Signed in as")).to_be_visible()
    mine = results(page).filter(has_text=private["title"])
    await expect(mine).to_have_count(1)
    await expect(mine.locator(".badge")).to_have_text("private")
    stored = await page.evaluate("() => JSON.parse(sessionStorage.getItem('clipdex.session')).token")
    me = await api(demo_server, "/api/v1/users/me", token=stored)
    assert me["username"] == DEMO_USERNAME

    # Still signed in after a reload (sessionStorage), and signed out for good after "Sign out".
    await page.reload()
    await expect(results(page).filter(has_text=private["title"])).to_have_count(1)
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    await expect(results(page).first).to_be_visible()
    await expect(results(page).filter(has_text=private["title"])).to_have_count(0)
    assert await page.evaluate("() => sessionStorage.getItem('clipdex.session')") is None
    assert (await api_answer(demo_server, "/api/v1/users/me", token=stored)).status_code == 401
    browser_page.assert_offline_and_clean()


def only_failed_loads(watched: WatchedPage, status: int) -> None:
    """Chromium logs each failed fetch as a console error; those, and only those, are expected."""
    assert watched.offsite_requests == []
    assert watched.page_errors == []
    assert watched.console_errors, "the failed request was not even made"
    for message in watched.console_errors:
        assert f"status of {status}" in message, watched.console_errors


async def test_an_invalid_request_shows_the_apis_message(
    demo_server: AppServer, browser_page: WatchedPage
) -> None:
    page = await open_page(browser_page, demo_server, f"?q=bread&tag={'x' * 41}")
    alert = page.locator("#problem")
    await expect(alert).to_be_visible()
    await expect(alert).to_contain_text("tag")
    await expect(alert).to_have_attribute("role", "alert")
    await expect(search_box(page)).to_be_visible()  # the page is still there to try again
    await expect(results(page)).to_have_count(0)
    only_failed_loads(browser_page, 400)


async def test_too_many_sign_ins_show_when_to_try_again(
    demo_server: AppServer, browser_page: WatchedPage
) -> None:
    """Last in the module: it uses up this address's sign-in attempts for a minute."""
    page = await open_page(browser_page, demo_server)
    await page.get_by_role("button", name="Sign in").click()
    message = page.locator("#sign-in-message")
    for _ in range(LOGIN_LIMIT + 1):
        await page.get_by_label("Email or username").fill("nobody-here")
        await page.get_by_label("Password").fill("not-the-password")
        async with page.expect_response("**/api/v1/auth/login") as answer:
            await page.get_by_label("Password").press("Enter")
        if (await answer.value).status == 429:
            break
        await expect(message).to_have_text("That email or username and password do not match.")
    await expect(message).to_have_text(re.compile(r"^Too many requests\. Try again in \d+ s\.$"))
    assert all("status of 401" in m or "status of 429" in m for m in browser_page.console_errors)
    assert browser_page.offsite_requests == []
    assert browser_page.page_errors == []


async def test_the_page_needs_no_sign_in_and_stays_out_of_the_api_document(demo_server: AppServer) -> None:
    async with httpx.AsyncClient(base_url=demo_server.url, timeout=30) as client:
        # A stale token in the browser must not lock anyone out of the page itself.
        page = await client.get("/", headers={"Authorization": "Bearer not-a-token"})
        script = await client.get(
            "/search-ui/search-page.js", headers={"Authorization": "Bearer not-a-token"}
        )
        document = (await client.get("/schema/openapi.json")).json()
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    assert not [path for path in document["paths"] if path == "/" or path.startswith("/search-ui")]
