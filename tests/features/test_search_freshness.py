"""Search results stay fresh: cached briefly, never past a write; changes show before the index has them."""

from __future__ import annotations

import httpx
import pytest

from core.backends import build_vector_index
from tests.features.search_support import (
    TOPICS,
    BrokenIndex,
    add_topics,
    found,
    indexed,
    register,
    search,
)
from tests.features.videos_support import VIDEOS, serve_here, video_url


def _hits(response: httpx.Response) -> dict[str, dict]:
    assert response.status_code == 200, response.text
    return {item["id"]: item for item in response.json()["items"]}


async def test_a_repeated_search_comes_from_the_cache_per_query_and_viewer(client, sign_up):
    owner = await sign_up()
    await add_topics(client, owner, "sourdough", "baguette", "chess")
    await indexed(client)

    first = await search(client, "sourdough bread")
    second = await search(client, "sourdough bread")
    respelled = await search(client, "  Sourdough \t BREAD ")
    other_mode = await search(client, "sourdough bread", mode="keyword")
    other_limit = await search(client, "sourdough bread", limit=2)
    other_filter = await search(client, "sourdough bread", tag="bread")
    as_owner = await search(client, "sourdough bread", owner)
    as_owner_again = await search(client, "sourdough bread", owner)

    assert [r.headers["x-cache"] for r in (first, second, respelled)] == ["miss", "hit", "hit"]
    assert first.content == second.content == respelled.content
    assert [r.headers["x-cache"] for r in (other_mode, other_limit, other_filter)] == ["miss"] * 3
    assert [r.headers["x-cache"] for r in (as_owner, as_owner_again)] == ["miss", "hit"]
    page = await search(client, "sourdough bread", limit=2, cursor=other_limit.json()["next_cursor"])
    assert page.headers["x-cache"] == "miss"
    assert len(page.json()["items"]) == 1


WRITES = ["create", "update", "make private", "delete", "like"]


@pytest.mark.parametrize("write", WRITES)
async def test_a_search_after_a_write_is_a_miss_showing_the_write(client, sign_up, write):
    owner, fan = await sign_up(), await sign_up()
    ids = await add_topics(client, owner, "sourdough", "chess", "marathon")
    await indexed(client)
    await search(client, "baking bread")
    assert (await search(client, "baking bread")).headers["x-cache"] == "hit"

    if write == "create":
        response = await client.post(
            VIDEOS,
            json={**TOPICS["baguette"], "url": "https://media.example.com/baguette.mp4"},
            headers=owner.headers,
        )
    elif write == "update":
        change = {"title": "Baking rye bread", "description": "A dense rye loaf, fermented overnight."}
        response = await client.patch(video_url(ids["chess"]), json=change, headers=owner.headers)
    elif write == "make private":
        response = await client.patch(
            video_url(ids["sourdough"]), json={"visibility": "private"}, headers=owner.headers
        )
    elif write == "delete":
        response = await client.delete(video_url(ids["sourdough"]), headers=owner.headers)
    else:
        response = await client.post(f"{video_url(ids['sourdough'])}/like", headers=fan.headers)
    assert response.status_code < 300, response.text
    await indexed(client)

    after = await search(client, "baking bread")
    assert after.headers["x-cache"] == "miss"
    hits = _hits(after)
    if write == "create":
        assert list(hits)[:2] == [ids["sourdough"], response.json()["id"]]
    elif write == "update":
        assert hits[ids["chess"]]["title"] == "Baking rye bread"
        assert await found(client, "rye", mode="keyword") == [ids["chess"]]
        assert await found(client, "openings", mode="keyword") == []
    elif write in ("make private", "delete"):
        assert ids["sourdough"] not in hits
        assert await found(client, "sourdough", mode="keyword") == []
    else:
        assert hits[ids["sourdough"]]["like_count"] == 1


async def test_changes_show_in_results_before_the_index_has_them(serve, make_settings):
    index = BrokenIndex(build_vector_index(make_settings()))
    async with serve():
        pass  # empties the tables; the app below must be the only one relaying the outbox
    async with serve_here(make_settings, vector_index=index) as http:
        owner, other = await register(http), await register(http)
        ids = await add_topics(http, owner, "sourdough", "baguette", "chess", "watercolor", "marathon")
        await indexed(http)
        for viewer in (None, other, owner):
            assert set(_hits(await search(http, "baking bread", viewer))) == set(ids.values())
            assert (await search(http, "baking bread", viewer)).headers["x-cache"] == "hit"

        # The index still answers queries, but takes no writes: it falls behind the database.
        index.writes_failing = True
        changes = [
            http.patch(video_url(ids["sourdough"]), json={"visibility": "private"}, headers=owner.headers),
            http.patch(video_url(ids["baguette"]), json={"visibility": "unlisted"}, headers=owner.headers),
            http.patch(video_url(ids["watercolor"]), json={"title": "Oil portraits"}, headers=owner.headers),
            http.delete(video_url(ids["chess"]), headers=owner.headers),
        ]
        for change in changes:
            assert (await change).status_code < 300
        # Still ready (search answers), the index shown as catching up with what it lacks.
        response = await http.get("/ready")
        assert response.status_code == 200
        assert response.json()["status"] == "ready"
        ready = response.json()["dependencies"]["search_index"]
        assert ready["status"] == "catching_up"
        assert ready["details"]["pending"] == 4, ready
        assert ready["details"]["oldest_age_seconds"] > 0, ready

        for viewer in (None, other):
            hits = _hits(await search(http, "baking bread", viewer))
            assert set(hits) == {ids["watercolor"], ids["marathon"]}, viewer
            assert hits[ids["watercolor"]]["title"] == "Oil portraits"
        own = _hits(await search(http, "baking bread", owner))
        assert set(own) == set(ids.values()) - {ids["chess"]}
        assert own[ids["sourdough"]]["visibility"] == "private"
        assert own[ids["baguette"]]["visibility"] == "unlisted"
        assert await found(http, "portraits", mode="keyword") == []  # the index has the old title
        # Searches that meet the deleted video do not pile more changes onto the outbox.
        ready = (await http.get("/ready")).json()["dependencies"]["search_index"]
        assert ready["details"]["pending"] == 4, ready

        index.writes_failing = False
        await indexed(http)
        assert await found(http, "portraits", mode="keyword") == [ids["watercolor"]]
        for viewer in (None, other):
            assert set(_hits(await search(http, "baking bread", viewer))) == {
                ids["watercolor"],
                ids["marathon"],
            }
        own_after = set(_hits(await search(http, "baking bread", owner)))
        assert own_after == set(ids.values()) - {ids["chess"]}
