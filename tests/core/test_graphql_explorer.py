"""The GraphQL explorer at GET /graphql in a real browser, offline: GraphiQL loads from the app's own
copy (graphene-django-graphiql-static), reads the schema, runs a typed query and shows the data, sends
a bearer token pasted into its headers pane, all under the page's self-only Content-Security-Policy
(a blocked inline style or script would be a console error) and with nothing leaving loopback."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from playwright.async_api import Page, expect

from core.graphql_explorer import EXPLORER_PAGE_POLICY, GRAPHIQL_ASSETS_PATH, GRAPHIQL_FILES
from tests.browser import WatchedPage
from tests.conftest import clipdex_environ, migrate
from tests.live_server import AppServer

TITLES = ["Explorer sourdough basics", "Explorer knife skills"]
USERNAME = "explorer_owner"


@dataclass
class ExplorerServer:
    server: AppServer
    token: str


@pytest.fixture(scope="module")
async def explorer_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ExplorerServer]:
    """The app under uvicorn on the embedded default (a fresh SQLite file, an in-memory index), with
    one user and two public videos added through the REST API."""
    database_url = f"sqlite:///{tmp_path_factory.mktemp('graphql-explorer') / 'clipdex.sqlite3'}"
    await asyncio.to_thread(migrate, database_url)
    environ = {**os.environ, **clipdex_environ(database_url, vector_index_path=":memory:")}
    server = AppServer("graphql-explorer", environ)
    try:
        await asyncio.to_thread(server.wait_until_ready)
        async with httpx.AsyncClient(base_url=f"{server.url}/api/v1", timeout=30) as client:
            account = {"username": USERNAME, "email": "explorer@example.com", "password": "a long passphrase"}
            (await client.post("/auth/register", json=account)).raise_for_status()
            login = await client.post(
                "/auth/login", json={"login": USERNAME, "password": account["password"]}
            )
            token = login.raise_for_status().json()["access_token"]
            for number, title in enumerate(TITLES):
                video = {
                    "title": title,
                    "url": f"https://videos.example.com/{number}",
                    "duration_seconds": 60,
                }
                added = await client.post("/videos", json=video, headers={"Authorization": f"Bearer {token}"})
                added.raise_for_status()
        yield ExplorerServer(server, token)
    finally:
        server.stop()


async def open_explorer(browser_page: WatchedPage, server: AppServer) -> Page:
    page = browser_page.page
    response = await page.goto(f"{server.url}/graphql")
    assert response is not None
    assert response.status == 200
    assert response.headers["content-security-policy"] == EXPLORER_PAGE_POLICY
    await expect(page.locator(".graphiql-container")).to_be_visible()
    return page


async def type_query(page: Page, query: str) -> None:
    await page.locator(".graphiql-query-editor .CodeMirror").click()
    await page.keyboard.press("Control+A")
    # Inserted as one piece of text: typed key by key, the editor would close each brace itself.
    await page.keyboard.insert_text(query)


async def run_query(page: Page) -> None:
    await page.get_by_role("button", name="Execute query (Ctrl-Enter)").click()


async def test_a_typed_query_shows_its_data_offline(
    explorer_server: ExplorerServer, browser_page: WatchedPage
) -> None:
    page = await open_explorer(browser_page, explorer_server.server)

    await type_query(page, "{ videos(first: 2) { edges { node { title } } } }")
    await run_query(page)

    result = page.locator(".result-window")
    for title in TITLES:
        await expect(result).to_contain_text(title)
    await expect(result).not_to_contain_text('"errors"')
    # The schema came in too: the documentation explorer lists the root types.
    await page.get_by_role("button", name="Show Documentation Explorer").click()
    await expect(page.locator(".graphiql-doc-explorer")).to_contain_text("Query")
    await page.wait_for_load_state("networkidle")
    browser_page.assert_offline_and_clean()


async def test_a_bearer_token_in_the_headers_pane_signs_the_query_in(
    explorer_server: ExplorerServer, browser_page: WatchedPage
) -> None:
    page = await open_explorer(browser_page, explorer_server.server)
    await type_query(page, "{ me { username } }")
    await page.get_by_role("button", name="Headers").click()
    await page.locator(".graphiql-editor-tool .CodeMirror").last.click()
    await page.keyboard.insert_text(f'{{"Authorization": "Bearer {explorer_server.token}"}}')

    await run_query(page)

    await expect(page.locator(".result-window")).to_contain_text(f'"username": "{USERNAME}"')
    # The history keeps the query, but not the token: that is gone with the tab.
    history = await page.evaluate("localStorage.getItem('graphiql:queries')")
    assert "{ me { username } }" in history
    keeping_it = await page.evaluate(
        "token => Object.keys(localStorage).filter(key => localStorage.getItem(key).includes(token))",
        explorer_server.token,
    )
    assert keeping_it == []
    browser_page.assert_offline_and_clean()


def test_graphiql_files_are_served_for_good_under_a_versioned_path(explorer_server: ExplorerServer) -> None:
    served = httpx.get(f"{explorer_server.server.url}{GRAPHIQL_ASSETS_PATH}/graphiql.min.js", timeout=10)
    assert served.status_code == 200
    assert served.content == (GRAPHIQL_FILES / "graphiql.min.js").read_bytes()
    assert "immutable" in served.headers["cache-control"]
    assert served.headers["content-type"].startswith("text/javascript")


def test_without_a_browser_get_graphql_still_needs_a_query(explorer_server: ExplorerServer) -> None:
    answer = httpx.get(
        f"{explorer_server.server.url}/graphql", headers={"Accept": "application/json"}, timeout=10
    )
    assert answer.status_code == 400
    assert answer.headers["content-type"].startswith("application/problem+json")
