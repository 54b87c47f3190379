"""Helpers shared by the videos tests (test_videos_*.py): request bodies, calls and assertions."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
from qstash import QStash
from qstash.log import LogState

from app import create_app
from core.qstash_jobs import SCHEDULE_ID_PREFIX
from core.settings import Settings
from core.vectors import VectorIndex
from tests.conftest import Account, Backend, serve_app

API = "/api/v1"
VIDEOS = f"{API}/videos"
MY_LIKES = f"{API}/users/me/likes"
PROBLEM_JSON = "application/problem+json"
# Periodic jobs (app.register_jobs): writing buffered views, and indexing what no job announced.
VIEWS_FLUSH_JOB = "views.flush"
OUTBOX_SWEEP_JOB = "search.outbox-sweep"
SUMMARY_FIELDS = {
    "id",
    "owner_id",
    "title",
    "description",
    "url",
    "thumbnail_url",
    "duration_seconds",
    "tags",
    "visibility",
    "like_count",
    "view_count",
    "has_transcript",
    "created_at",
    "updated_at",
}
DETAIL_FIELDS = SUMMARY_FIELDS | {"transcript"}


@asynccontextmanager
async def serve_here(
    make_settings: Callable[..., Settings], *, vector_index: VectorIndex | None = None, **overrides: object
) -> AsyncIterator[httpx.AsyncClient]:
    """The app, lifespan included, on the test's own event loop, with an HTTP client for it.

    Litestar's test client runs the app on a loop of its own and blocks until each request is done,
    so `asyncio.gather` over it sends requests one at a time. Through httpx's ASGI transport on this
    loop, gathered requests really overlap, which is what the concurrency tests need. Start it after
    `client` or `serve` (which empty the tables): the newest app is the one the tables are bound to.
    `vector_index` replaces the search index the settings select (see create_app). When QStash runs the
    jobs, the app is served as `serve_app` serves it (uvicorn on this loop, where QStash can call it).
    """
    settings = make_settings(**overrides)
    app = create_app(settings, vector_index=vector_index)
    if settings.uses_qstash:
        async with serve_app(app, settings) as http:
            yield http
        return
    transport = httpx.ASGITransport(app=app)
    async with (
        app.lifespan(),
        httpx.AsyncClient(transport=transport, base_url="http://testserver.local") as http,
    ):
        yield http


@asynccontextmanager
async def schedule_paused(backend: Backend, job: str, *, resume: bool = True) -> AsyncIterator[None]:
    """With QStash, periodic job `job` (its QStash schedule, on QStash's clock, not the app's) paused
    inside the block and resumed after it, unless `resume` is false (the next test's QStash starts
    empty anyway). In process it changes nothing: the test's interval alone says when the loop runs.
    """
    if backend.qstash is None:
        yield
        return
    client = backend.qstash.client
    schedule_id = SCHEDULE_ID_PREFIX + job
    await asyncio.to_thread(client.schedule.pause, schedule_id)
    # A run the schedule fired just before the pause may still be on its way to the app: the block
    # starts once every run it fired has ended, so none of them sees what the block does.
    await eventually(lambda: _runs_ended(client, schedule_id), within=10.0)
    try:
        yield
    finally:
        if resume:
            await asyncio.to_thread(client.schedule.resume, schedule_id)


async def _runs_ended(client: QStash, schedule_id: str) -> bool:
    logs = (await asyncio.to_thread(client.log.list, filter={"schedule_id": schedule_id})).logs
    latest: dict[str, LogState] = {}
    for log in logs:  # newest first
        latest.setdefault(log.message_id, log.state)
    return all(state in _ENDED for state in latest.values())


_ENDED = {LogState.DELIVERED, LogState.FAILED, LogState.CANCELED}


def video_url(video_id: str) -> str:
    return f"{VIDEOS}/{video_id}"


def user_videos_url(user_id: str) -> str:
    return f"{API}/users/{user_id}/videos"


def video_body(**overrides: Any) -> dict[str, Any]:
    """A valid POST /videos body; keyword arguments replace or add fields."""
    slug = uuid.uuid4().hex[:8]
    return {
        "title": f"Video {slug}",
        "url": f"https://media.example.com/{slug}.mp4",
        "duration_seconds": 90,
        **overrides,
    }


async def add_video(http: httpx.AsyncClient, owner: Account, **overrides: Any) -> dict[str, Any]:
    response = await http.post(VIDEOS, json=video_body(**overrides), headers=owner.headers)
    assert response.status_code == 201, response.text
    return response.json()


def auth(account: Account | None) -> dict[str, str]:
    return account.headers if account else {}


async def read_video(http: httpx.AsyncClient, video_id: str, viewer: Account | None = None) -> httpx.Response:
    return await http.get(video_url(video_id), headers=auth(viewer))


async def video_state(
    http: httpx.AsyncClient, video_id: str, viewer: Account | None = None
) -> dict[str, Any]:
    response = await read_video(http, video_id, viewer)
    assert response.status_code == 200, response.text
    return response.json()


async def list_page(
    http: httpx.AsyncClient, path: str = VIDEOS, viewer: Account | None = None, **params: Any
) -> dict[str, Any]:
    response = await http.get(path, params=params, headers=auth(viewer))
    assert response.status_code == 200, response.text
    return response.json()


async def ids_on_first_page(
    http: httpx.AsyncClient, path: str = VIDEOS, viewer: Account | None = None, **params: Any
) -> list[str]:
    return [item["id"] for item in (await list_page(http, path, viewer, **params))["items"]]


async def walk(
    http: httpx.AsyncClient,
    path: str = VIDEOS,
    viewer: Account | None = None,
    between_pages: Callable[[], Awaitable[object]] | None = None,
    **params: Any,
) -> list[dict[str, Any]]:
    """Every item of a list, following next_cursor; `between_pages` runs concurrently with each fetch."""
    items: list[dict[str, Any]] = []
    cursor = None
    for _ in range(1000):
        query = {**params, **({"cursor": cursor} if cursor else {})}
        if between_pages is None:
            page = await list_page(http, path, viewer, **query)
        else:
            page, _ = await asyncio.gather(list_page(http, path, viewer, **query), between_pages())
        items.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return items
    raise AssertionError("the cursor walk did not end")


async def in_test_loop(query: Any) -> Any:
    """Run a Piccolo query from the test itself.

    The test client serves the app on its own event loop; a PostgreSQL pool belongs to that loop, so
    a query from the test's loop takes a connection of its own instead.
    """
    return await query.run(in_pool=False)


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON), response.headers
    body = response.json()
    assert body["status"] == status
    return body


def assert_field_error(response: httpx.Response, field: str) -> dict[str, Any]:
    body = assert_problem(response, 400)
    assert body["errors"], body
    assert body["errors"][0]["field"] == field, body
    return body


async def eventually(
    check: Callable[[], Awaitable[bool]], within: float = 2.0, interval: float = 0.05
) -> None:
    """Wait until `check()` is true (for work the app does in the background, such as view flushes)."""
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within}s")
        await asyncio.sleep(interval)
