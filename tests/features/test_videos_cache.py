"""The read-through cache seen through the HTTP API: hits and misses, reads after writes, an outage."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import httpx
import pytest
from litestar.testing import AsyncTestClient

from app import create_app
from core.cache import Cache, InMemoryCache
from tests.conftest import Account, serve_app
from tests.features.search_support import indexed
from tests.features.videos_support import (
    MY_LIKES,
    VIDEOS,
    add_video,
    assert_problem,
    auth,
    eventually,
    list_page,
    read_video,
    user_videos_url,
    video_state,
    video_url,
)


async def test_detail_comes_from_the_cache_once_read(client, sign_up):
    owner, fan = await sign_up(), await sign_up()
    video = await add_video(client, owner)
    # A like changes the video, so the next read has to go to the database.
    assert (await client.post(f"{video_url(video['id'])}/like", headers=fan.headers)).status_code == 200

    first = await read_video(client, video["id"])
    second = await read_video(client, video["id"])
    as_owner = await read_video(client, video["id"], owner)

    assert first.headers["x-cache"] == "miss"
    assert second.headers["x-cache"] == "hit"
    assert as_owner.headers["x-cache"] == "hit"
    assert first.content == second.content == as_owner.content
    assert second.headers["etag"] == first.headers["etag"]
    assert "cache" not in second.json()


async def test_unknown_video_is_a_cached_404(client):
    missing = video_url("00000000-0000-4000-8000-000000000000")

    first, second = await client.get(missing), await client.get(missing)

    assert_problem(first, 404)
    assert_problem(second, 404)


async def test_first_list_pages_come_from_the_cache_per_query_and_viewer(client, sign_up):
    owner = await sign_up()
    for _ in range(3):
        await add_video(client, owner)
    private = await add_video(client, owner, visibility="private")

    first = await client.get(VIDEOS, params={"limit": 2})
    second = await client.get(VIDEOS, params={"limit": 2})
    other_query = await client.get(VIDEOS, params={"limit": 3})
    later_page = await client.get(VIDEOS, params={"limit": 2, "cursor": first.json()["next_cursor"]})
    later_again = await client.get(VIDEOS, params={"limit": 2, "cursor": first.json()["next_cursor"]})
    owners_first = await client.get(VIDEOS, params={"limit": 2}, headers=owner.headers)
    owners_second = await client.get(VIDEOS, params={"limit": 2}, headers=owner.headers)
    anonymous_again = await client.get(VIDEOS, params={"limit": 2})

    assert [r.headers["x-cache"] for r in (first, second, other_query)] == ["miss", "hit", "miss"]
    assert second.content == first.content
    assert [r.headers["x-cache"] for r in (later_page, later_again)] == ["miss", "miss"]
    assert [r.headers["x-cache"] for r in (owners_first, owners_second)] == ["miss", "hit"]
    # The owner's page (with their private video) is never served to anyone else.
    assert owners_second.json()["items"][0]["id"] == private["id"]
    assert private["id"] not in {item["id"] for item in anonymous_again.json()["items"]}
    assert anonymous_again.content == first.content


# ---------------------------------------------------------------- a read after a write sees the write


async def _like(http: httpx.AsyncClient, video_id: str, fan: Account) -> None:
    assert (await http.post(f"{video_url(video_id)}/like", headers=fan.headers)).status_code == 200


def _views(owner: Account, fan: Account) -> dict[str, tuple[str, dict[str, Any]]]:
    """Every cached view of videos: name -> (path, params and headers)."""
    return {
        "detail": ("detail", {}),
        "browse": (VIDEOS, {}),
        "browse as owner": (VIDEOS, {"headers": owner.headers}),
        "browse by tag": (VIDEOS, {"params": {"tag": "cached"}}),
        "user's videos": (user_videos_url(owner.id), {}),
        "fan's likes": (MY_LIKES, {"headers": fan.headers}),
    }


async def snapshot(
    http: httpx.AsyncClient, video_id: str, owner: Account, fan: Account
) -> tuple[dict[str, dict[str, Any] | None], list[str]]:
    """How each cached view shows the video (None: absent), and whether each came from the cache."""
    shown: dict[str, dict[str, Any] | None] = {}
    cache_states = []
    for name, (path, options) in _views(owner, fan).items():
        if path == "detail":
            response = await http.get(video_url(video_id))
            shown[name] = response.json() if response.status_code == 200 else None
        else:
            response = await http.get(path, **options)
            assert response.status_code == 200, response.text
            shown[name] = next((item for item in response.json()["items"] if item["id"] == video_id), None)
        cache_states.append(response.headers.get("x-cache", "none"))
    return shown, cache_states


def _all(shown: dict[str, Any], **fields: Any) -> bool:
    return all(view is not None and all(view[k] == v for k, v in fields.items()) for view in shown.values())


# For each kind of write: how every view must show the video after it.
EXPECTED_AFTER = {
    "update": lambda shown: _all(shown, title="Changed title", like_count=1),
    "make private": lambda shown: (
        shown["browse as owner"] is not None
        and shown["browse as owner"]["visibility"] == "private"
        and all(view is None for name, view in shown.items() if name != "browse as owner")
    ),
    "delete": lambda shown: all(view is None for view in shown.values()),
    "like": lambda shown: _all(shown, like_count=1),
    "unlike": lambda shown: (
        shown["fan's likes"] is None
        and _all({k: v for k, v in shown.items() if k != "fan's likes"}, like_count=0)
    ),
    "view flush": lambda shown: _all(shown, view_count=2, like_count=1),
}


@pytest.mark.parametrize("write", list(EXPECTED_AFTER))
async def test_a_read_after_a_write_sees_the_write(serve, sign_up, write):
    async with serve(view_flush_interval_seconds=0.2) as http:
        owner, fan = await sign_up(on=http), await sign_up(on=http)
        await add_video(http, owner, tags=["cached"])
        video = await add_video(http, owner, tags=["cached"])
        video_id = video["id"]
        if write != "like":
            await _like(http, video_id, fan)
        await snapshot(http, video_id, owner, fan)
        before, cache_states = await snapshot(http, video_id, owner, fan)
        assert cache_states == ["hit"] * len(cache_states), "the views were not cached before the write"
        assert not EXPECTED_AFTER[write](before)

        if write == "update":
            response = await http.patch(
                video_url(video_id), json={"title": "Changed title"}, headers=owner.headers
            )
        elif write == "make private":
            response = await http.patch(
                video_url(video_id), json={"visibility": "private"}, headers=owner.headers
            )
        elif write == "delete":
            response = await http.delete(video_url(video_id), headers=owner.headers)
        elif write == "like":
            response = await http.post(f"{video_url(video_id)}/like", headers=fan.headers)
        elif write == "unlike":
            response = await http.delete(f"{video_url(video_id)}/like", headers=fan.headers)
        else:
            responses = await asyncio.gather(*(http.post(f"{video_url(video_id)}/views") for _ in range(2)))
            response = responses[-1]
        assert response.status_code < 300, response.text

        async def shows_the_write() -> bool:
            return EXPECTED_AFTER[write]((await snapshot(http, video_id, owner, fan))[0])

        if write == "view flush":
            # The write is the background flush, within one flush interval (0.2 s in process; with
            # QStash a schedule's, a cron minute, which the local QStash server makes a second).
            await eventually(shows_the_write, within=3.0)
        else:
            after, _ = await snapshot(http, video_id, owner, fan)
            assert EXPECTED_AFTER[write](after), after


# ---------------------------------------------------------------- round trips


class CountedCache(InMemoryCache):
    """The in-process cache, naming each call made to it: each is a round trip on Upstash Redis."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    async def get(self, key: str, renew_for: Any = None) -> bytes | None:
        self.calls.append("get")
        return await super().get(key, renew_for)

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        self.calls.append("get_many")
        return await super().get_many(keys)

    async def set(self, key: str, value: str | bytes, expires_in: Any = None) -> None:
        self.calls.append("set")
        await super().set(key, value, expires_in)

    async def exists(self, key: str) -> bool:
        self.calls.append("exists")
        return await super().exists(key)

    async def incr(self, key: str, amount: int = 1, *, expires_in: int | None = None) -> int:
        self.calls.append("incr")
        return await super().incr(key, amount, expires_in=expires_in)


async def test_a_cached_read_is_one_round_trip_to_the_cache_and_a_token_adds_one(sign_up, make_settings):
    cache, settings = CountedCache(), make_settings()
    # Served so that QStash, where it runs the jobs, can deliver the indexing job awaited below.
    async with serve_app(create_app(settings, cache=cache), settings) as http:
        owner = await sign_up(on=http)
        video_id = (await add_video(http, owner, tags=["trips"]))["id"]
        # Indexing the video bumps the index's generation, which a search page is stamped with: fill
        # the cache after it, or a slow relay (PostgreSQL) makes the second search a miss.
        await indexed(http)
        reads = {
            "detail": (video_url(video_id), {}),
            "list": (VIDEOS, {"tag": "trips"}),
            "search": ("/api/v1/search", {"q": "trips", "mode": "keyword"}),
        }
        for viewer in (None, owner):  # the first reads fill the cache
            for path, params in reads.values():
                (await http.get(path, params=params, headers=auth(viewer))).raise_for_status()

        calls = {}
        for viewer in (None, owner):
            for name, (path, params) in reads.items():
                cache.calls.clear()
                response = await http.get(path, params=params, headers=auth(viewer))
                assert response.headers["x-cache"] == "hit", (name, viewer)
                calls[name, viewer is not None] = list(cache.calls)

    # One look-up answers each read; a token's account, version and revocation come in one more.
    assert calls == {
        (name, signed_in): ["get_many"] * (1 + signed_in)
        for name in ("detail", "list", "search")
        for signed_in in (False, True)
    }


# ---------------------------------------------------------------- cache outage


async def _unreachable(*args: object, **kwargs: object) -> Any:
    raise ConnectionError("cache service unreachable")


class BrokenCache(Cache):
    """A cache whose service cannot be reached: every call raises, as a client of a down server does."""

    set = get = get_many = delete = delete_all = exists = expires_in = _unreachable
    incr = increment_field = claim_fields = ping = close = _unreachable


async def test_the_api_answers_correctly_while_the_cache_is_down(client, sign_up, make_settings):
    app = create_app(make_settings(view_flush_interval_seconds=3600), cache=BrokenCache())
    async with AsyncTestClient(app=app) as http:
        owner, fan = await sign_up(on=http), await sign_up(on=http)
        video = await add_video(http, owner, tags=["outage"])
        video_id = video["id"]
        assert video["title"] == (await video_state(http, video_id))["title"]

        reads = [await read_video(http, video_id) for _ in range(2)]
        pages = [await http.get(VIDEOS, params={"tag": "outage"}) for _ in range(2)]
        like = await http.post(f"{video_url(video_id)}/like", headers=fan.headers)
        views = [await http.post(f"{video_url(video_id)}/views") for _ in range(3)]
        after_views = await video_state(http, video_id)
        changed = await http.patch(video_url(video_id), json={"title": "Still works"}, headers=owner.headers)
        after_change = await video_state(http, video_id)
        likes = await list_page(http, MY_LIKES, fan)
        by_owner = await list_page(http, user_videos_url(owner.id))
        unlike = await http.delete(f"{video_url(video_id)}/like", headers=fan.headers)
        after_unlike = await video_state(http, video_id)
        deleted = await http.delete(video_url(video_id), headers=owner.headers)
        gone = await read_video(http, video_id)

    assert [r.status_code for r in reads] == [200, 200]
    assert [r.headers["x-cache"] for r in reads] == ["miss", "miss"]
    assert [r.status_code for r in pages] == [200, 200]
    assert [[item["id"] for item in r.json()["items"]] for r in pages] == [[video_id], [video_id]]
    assert [r.headers["x-cache"] for r in pages] == ["miss", "miss"]
    assert like.json() == {"liked": True, "like_count": 1}
    assert [r.status_code for r in views] == [202] * 3
    # With nowhere to buffer them, views go straight to the database.
    assert after_views["view_count"] == 3
    assert after_views["like_count"] == 1
    assert changed.status_code == 200
    assert after_change["title"] == "Still works"
    assert [item["id"] for item in likes["items"]] == [video_id]
    assert [item["id"] for item in by_owner["items"]] == [video_id]
    assert unlike.json() == {"liked": False, "like_count": 0}
    assert after_unlike["like_count"] == 0
    assert deleted.status_code == 204
    assert_problem(gone, 404)
