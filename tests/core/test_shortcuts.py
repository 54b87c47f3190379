"""`GET /api/v1/videos/{id}` answered beneath Litestar (core/shortcuts.py) is the route's own answer,
header for header; whatever the shortcut cannot answer completely (a 404, a refused token, an id that
is not one) it leaves to the route, and the whole app then answers as the route does."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from core.shortcuts import Answer, CachedAnswers
from tests.features.videos_support import add_video, video_url

VIDEO_ROUTE = "/api/v1/videos/{video_id:uuid}"
T = TypeVar("T")


def _shortcut_layer(app: Any) -> CachedAnswers:
    layer = app.asgi_handler
    while not isinstance(layer, CachedAnswers):
        # The request id and access log, the QStash announcer: plain wrappers around it.
        layer = getattr(layer, "app", None) or layer._app
    return layer


def _scope(app: Any, path: str, headers: dict[str, str]) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver")]
        + [(name.lower().encode(), value.encode()) for name, value in headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
        "app": app,
        "litestar_app": app,  # as Litestar's own entry point sets them
        "state": {},
    }


async def _route_answer(app: Any, path: str, headers: dict[str, str]) -> Answer:
    """What Litestar's route answers, the shortcut layer left out."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = _scope(app, path, headers)
    await _shortcut_layer(app).app(scope, receive, app._wrap_send(send=send, scope=scope))
    body = b"".join(message.get("body", b"") for message in sent[1:])
    return Answer(sent[0]["status"], list(sent[0]["headers"]), body)


async def _on_app_loop(client: Any, work: Callable[..., Awaitable[T]], *args: Any) -> T:
    """Run `work` on the event loop serving the app: Litestar's test client serves it on a loop of its
    own (its portal's), which the PostgreSQL pool belongs to; uvicorn (the QStash backend) on this one."""
    portal = getattr(client, "blocking_portal", None)
    if portal is None:
        return await work(*args)
    return await asyncio.to_thread(portal.call, work, *args)


async def _both(
    client: Any, path: str, headers: dict[str, str] | None = None
) -> tuple[Answer | None, Answer]:
    """The shortcut's answer (None: it passes) and then the route's, to the same request."""
    headers = headers or {}
    layer = _shortcut_layer(client.app)
    shortcut = await _on_app_loop(client, layer.answer, _scope(client.app, path, headers))
    return shortcut, await _on_app_loop(client, _route_answer, client.app, path, headers)


def _without_request_id(problem: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in problem.items() if key != "request_id"}


def _requests_counted(metrics: str, status: int) -> float:
    pattern = rf'clipdex_requests_total{{[^}}]*path="{re.escape(VIDEO_ROUTE)}"[^}}]*status_code="{status}"[^}}]*}} (\S+)'
    found = re.search(pattern, metrics)
    return float(found.group(1)) if found else 0.0


async def test_the_shortcut_answers_as_the_route_does(client, sign_up):
    owner, other = await sign_up(), await sign_up()
    public = await add_video(client, owner)
    unlisted = await add_video(client, owner, visibility="unlisted")
    private = await add_video(client, owner, visibility="private")
    for video in (public, unlisted, private):
        await client.get(video_url(video["id"]), headers=owner.headers)  # cached: both answers are hits

    cases = [
        (public, {}, video_url(public["id"])),
        (unlisted, {}, video_url(unlisted["id"])),
        (public, other.headers, video_url(public["id"])),
        (private, owner.headers, video_url(private["id"])),
        # Other spellings of the id, as the route's uuid path type reads them.
        (public, {}, video_url(public["id"].upper())),
        (public, {}, video_url(uuid.UUID(public["id"]).hex)),
    ]
    for video, headers, path in cases:
        shortcut, route = await _both(client, path, headers)
        assert shortcut is not None, (video["visibility"], headers)
        assert (shortcut.status, shortcut.headers, shortcut.body) == (route.status, route.headers, route.body)
        assert shortcut.status == 200
        assert dict(shortcut.headers)[b"x-cache"] == b"hit"

        etag = dict(route.headers)[b"etag"].decode()
        for if_none_match, status in ((etag, 304), (f'"other", {etag}', 304), ('"stale"', 200)):
            shortcut, route = await _both(client, path, {**headers, "If-None-Match": if_none_match})
            assert shortcut is not None
            assert (shortcut.status, shortcut.headers, shortcut.body) == (
                route.status,
                route.headers,
                route.body,
            )
            assert shortcut.status == status


async def test_a_read_through_the_shortcut_fills_the_cache_as_the_route_would(client, sign_up):
    owner = await sign_up()
    video = await add_video(client, owner)
    await client.get(video_url(video["id"]))
    liked = await client.post(
        f"{video_url(video['id'])}/like", headers=owner.headers
    )  # the entry is stale now
    assert liked.status_code == 200

    first, route = await _both(client, video_url(video["id"]))

    assert first is not None
    assert dict(first.headers)[b"x-cache"] == b"miss"
    assert dict(route.headers)[b"x-cache"] == b"hit"
    assert first.body == route.body
    assert b'"like_count":1' in first.body


async def test_what_the_shortcut_cannot_answer_the_route_does(client, sign_up):
    owner, other = await sign_up(), await sign_up()
    private = await add_video(client, owner, visibility="private")
    public = await add_video(client, owner)
    await client.get(video_url(private["id"]), headers=owner.headers)

    cases = [
        (video_url(private["id"]), {}, 404),  # not for anonymous readers
        (video_url(private["id"]), other.headers, 404),  # nor for other accounts
        (video_url(str(uuid.uuid4())), {}, 404),
        (video_url(public["id"]), {"Authorization": "Bearer not-a-token"}, 401),
        (video_url(public["id"]), {"Authorization": owner.headers["Authorization"] + "x"}, 401),
        ("/api/v1/videos/not-an-id", {}, 404),
        (f"{video_url(public['id'])}/like", {}, 405),
    ]
    for path, headers, status in cases:
        shortcut, route = await _both(client, path, headers)
        assert shortcut is None, path
        assert route.status == status, (path, route)
        whole = await client.get(path, headers=headers)
        assert whole.status_code == status
        assert _without_request_id(whole.json()) == _without_request_id(json.loads(route.body))
        assert whole.headers["content-type"].startswith("application/problem+json")


async def test_answers_of_the_shortcut_are_counted_under_the_route(client, sign_up):
    owner = await sign_up()
    video = await add_video(client, owner)
    await client.get(video_url(video["id"]))
    before = _requests_counted((await client.get("/metrics")).text, 200)

    for _ in range(3):
        response = await client.get(video_url(video["id"]))
        assert response.status_code == 200
        assert response.headers["x-request-id"]

    assert _requests_counted((await client.get("/metrics")).text, 200) == before + 3
