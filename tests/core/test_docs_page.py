"""The interactive API docs in a real browser, offline: /schema and /schema/swagger load everything from
the app itself (no CDN, no fonts or favicons from elsewhere) and list every operation of the OpenAPI
document, without a console error."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import httpx
import pytest
from playwright.async_api import expect

from tests.browser import WatchedPage
from tests.conftest import clipdex_environ, migrate
from tests.live_server import AppServer

HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


@pytest.fixture(scope="module")
async def docs_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[AppServer]:
    """The app under uvicorn on the embedded default (a fresh SQLite file, an in-memory index)."""
    database_url = f"sqlite:///{tmp_path_factory.mktemp('docs') / 'clipdex.sqlite3'}"
    await asyncio.to_thread(migrate, database_url)
    server = AppServer("docs", {**os.environ, **clipdex_environ(database_url, vector_index_path=":memory:")})
    try:
        await asyncio.to_thread(server.wait_until_ready)
        yield server
    finally:
        server.stop()


def operation_summaries(server: AppServer) -> list[str]:
    document = httpx.get(f"{server.url}/schema/openapi.json", timeout=10).raise_for_status().json()
    return [
        operation["summary"]
        for path_item in document["paths"].values()
        for method, operation in path_item.items()
        if method in HTTP_METHODS
    ]


@pytest.mark.parametrize("path", ["/schema", "/schema/swagger"])
async def test_docs_list_every_operation_offline(
    docs_server: AppServer, browser_page: WatchedPage, path: str
) -> None:
    summaries = operation_summaries(docs_server)
    assert "Add a video to the catalogue" in summaries  # the document is the app's, not an empty one
    page = browser_page.page

    # Fonts, images and favicons come in after the scripts: wait until nothing has moved for 0.5 s.
    response = await page.goto(f"{docs_server.url}{path}", wait_until="networkidle")
    assert response is not None
    assert response.status == 200
    browser_page.assert_offline_and_clean()  # first, as it says why a blank page is blank

    listed = page.locator(".opblock .opblock-summary-description")
    await expect(listed).to_have_count(len(summaries))
    for index in range(len(summaries)):
        await expect(listed.nth(index)).to_be_visible()
    assert sorted(await listed.all_inner_texts()) == sorted(summaries)
    await page.wait_for_load_state("networkidle")
    browser_page.assert_offline_and_clean()
