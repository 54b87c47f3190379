"""Video lists through the HTTP API: sorting, filters, keyset pagination, a user's videos, my likes."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from features.videos.videos import Video
from tests.features.videos_support import (
    MY_LIKES,
    SUMMARY_FIELDS,
    VIDEOS,
    add_video,
    assert_field_error,
    assert_problem,
    eventually,
    ids_on_first_page,
    list_page,
    serve_here,
    user_videos_url,
    video_body,
    video_state,
    video_url,
    walk,
)


def ids(items: list[dict[str, Any]]) -> list[str]:
    return [item["id"] for item in items]


# ---------------------------------------------------------------- order and visibility


async def test_list_is_newest_first_by_default_and_oldest_on_request(client, sign_up):
    owner = await sign_up()
    created = [await add_video(client, owner) for _ in range(4)]

    page = await list_page(client)

    assert ids(page["items"]) == ids(created)[::-1]
    assert page["next_cursor"] is None
    assert all(set(item) == SUMMARY_FIELDS for item in page["items"])
    assert ids((await list_page(client, sort="newest"))["items"]) == ids(created)[::-1]
    assert ids((await list_page(client, sort="oldest"))["items"]) == ids(created)


async def test_sort_by_most_viewed_and_most_liked(serve, sign_up):
    async with serve(view_flush_interval_seconds=0.1) as http:
        owner = await sign_up(on=http)
        fans = [await sign_up(on=http) for _ in range(3)]
        quiet, popular, loved = [await add_video(http, owner) for _ in range(3)]
        for fan in fans:
            assert (await http.post(f"{video_url(loved['id'])}/like", headers=fan.headers)).status_code == 200
        assert (
            await http.post(f"{video_url(popular['id'])}/like", headers=fans[0].headers)
        ).status_code == 200
        for video, views in ((popular, 5), (loved, 2)):
            for _ in range(views):
                assert (await http.post(f"{video_url(video['id'])}/views")).status_code == 202

        await eventually(lambda: _views_are(http, popular["id"], 5))
        await eventually(lambda: _views_are(http, loved["id"], 2))

        most_viewed = (await list_page(http, sort="most_viewed"))["items"]
        most_liked = (await list_page(http, sort="most_liked"))["items"]

    assert ids(most_viewed) == [popular["id"], loved["id"], quiet["id"]]
    assert [v["view_count"] for v in most_viewed] == [5, 2, 0]
    assert ids(most_liked) == [loved["id"], popular["id"], quiet["id"]]
    assert [v["like_count"] for v in most_liked] == [3, 1, 0]


async def _views_are(http, video_id: str, count: int) -> bool:
    return (await video_state(http, video_id))["view_count"] == count


async def test_lists_show_public_videos_plus_the_callers_own(client, sign_up):
    owner, other = await sign_up(), await sign_up()
    mine = {
        v: (await add_video(client, owner, visibility=v))["id"] for v in ("public", "unlisted", "private")
    }
    theirs = {
        v: (await add_video(client, other, visibility=v))["id"] for v in ("public", "unlisted", "private")
    }

    anonymous = set(await ids_on_first_page(client))
    as_owner = set(await ids_on_first_page(client, viewer=owner))
    as_other = set(await ids_on_first_page(client, viewer=other))
    owner_filtered_by_other = set(await ids_on_first_page(client, viewer=other, owner=owner.id))

    assert anonymous == {mine["public"], theirs["public"]}
    assert as_owner == set(mine.values()) | {theirs["public"]}
    assert as_other == set(theirs.values()) | {mine["public"]}
    assert owner_filtered_by_other == {mine["public"]}


# ---------------------------------------------------------------- filters


async def test_filters_by_owner_tag_and_duration(client, sign_up):
    alice, bob = await sign_up(), await sign_up()
    short_cooking = await add_video(client, alice, duration_seconds=60, tags=["Cooking", "quick"])
    long_cooking = await add_video(client, bob, duration_seconds=3600, tags=["cooking"])
    music = await add_video(client, alice, duration_seconds=300, tags=["music"])
    untagged = await add_video(client, bob, duration_seconds=600)

    async def matching(**params: Any) -> set[str]:
        return set(await ids_on_first_page(client, **params))

    assert await matching(owner=alice.id) == {short_cooking["id"], music["id"]}
    assert await matching(owner=str(uuid.uuid4())) == set()
    assert await matching(tag="cooking") == {short_cooking["id"], long_cooking["id"]}
    assert await matching(tag="COOKING") == {short_cooking["id"], long_cooking["id"]}
    assert await matching(tag="knitting") == set()
    assert await matching(min_duration=300) == {music["id"], untagged["id"], long_cooking["id"]}
    assert await matching(max_duration=300) == {short_cooking["id"], music["id"]}
    assert await matching(min_duration=300, max_duration=600) == {music["id"], untagged["id"]}
    assert await matching(min_duration=300, max_duration=300) == {music["id"]}
    assert await matching(tag="cooking", owner=bob.id, max_duration=3600) == {long_cooking["id"]}


@pytest.mark.parametrize(
    ("field", "params"),
    [
        ("limit", {"limit": 0}),
        ("limit", {"limit": 101}),
        ("limit", {"limit": "many"}),
        ("min_duration", {"min_duration": 0}),
        ("max_duration", {"max_duration": 86_401}),
        ("min_duration", {"min_duration": 600, "max_duration": 300}),
        ("owner", {"owner": "not-a-uuid"}),
        ("sort", {"sort": "random"}),
        ("tag", {"tag": ""}),
        ("tag", {"tag": "t" * 41}),
        ("cursor", {"cursor": "not a cursor"}),
        ("cursor", {"cursor": base64.urlsafe_b64encode(b'{"key": 1}').decode()}),
        ("cursor", {"cursor": base64.urlsafe_b64encode(b'["newest", "x", 1, "not-a-uuid"]').decode()}),
    ],
)
async def test_list_rejects_bad_parameters_naming_them(client, sign_up, field, params):
    await add_video(client, await sign_up())

    assert_field_error(await client.get(VIDEOS, params=params), field)


async def test_limits_1_and_100_are_accepted(client, sign_up):
    owner = await sign_up()
    created = [await add_video(client, owner) for _ in range(2)]

    assert ids((await list_page(client, limit=1))["items"]) == [created[1]["id"]]
    assert len((await list_page(client, limit=100))["items"]) == 2


# ---------------------------------------------------------------- cursors


def retyped(cursor: str, key: object) -> str:
    """A cursor as the API encodes it, with its sort key replaced: what a client might forge."""
    decoded = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    decoded[2] = key
    return base64.urlsafe_b64encode(json.dumps(decoded).encode()).decode().rstrip("=")


async def test_pages_follow_the_cursor_to_the_end(client, sign_up):
    owner = await sign_up()
    created = [await add_video(client, owner, tags=["walk"]) for _ in range(5)]

    first = await list_page(client, limit=2, tag="walk")
    second = await list_page(client, limit=2, tag="walk", cursor=first["next_cursor"])
    third = await list_page(client, limit=2, tag="walk", cursor=second["next_cursor"])

    newest_first = ids(created)[::-1]
    assert ids(first["items"]) == newest_first[:2]
    assert ids(second["items"]) == newest_first[2:4]
    assert ids(third["items"]) == newest_first[4:]
    assert third["next_cursor"] is None
    # A last page that is exactly full says so too.
    exact = await list_page(client, limit=5, tag="walk")
    assert exact["next_cursor"] is None


async def test_cursor_reused_with_another_sort_or_filter_is_rejected(client, sign_up):
    owner = await sign_up()
    for duration in (10, 20, 30):
        await add_video(client, owner, duration_seconds=duration, tags=["a", "b"])
    cursor = (await list_page(client, limit=1, tag="a"))["next_cursor"]
    assert cursor

    assert (await client.get(VIDEOS, params={"limit": 1, "tag": "a", "cursor": cursor})).status_code == 200
    for changed in (
        {"tag": "a", "sort": "oldest"},
        {"tag": "a", "sort": "most_liked"},
        {"tag": "b"},
        {},
        {"tag": "a", "min_duration": 5},
        {"tag": "a", "owner": owner.id},
    ):
        response = await client.get(VIDEOS, params={"limit": 1, **changed, "cursor": cursor})
        assert_field_error(response, "cursor")
    assert_field_error(await client.get(MY_LIKES, params={"cursor": cursor}, headers=owner.headers), "cursor")


@pytest.mark.parametrize(
    ("sort", "forged_key"),
    [
        ("newest", "yesterday"),
        ("newest", 12),
        ("newest", "2026-01-01T00:00:00"),
        ("oldest", "2026-13-45T99:00:00"),
        ("most_viewed", "2026-01-01T00:00:00+00:00"),
        ("most_liked", "many"),
        ("most_liked", 2**40),
        ("most_viewed", -1),
    ],
)
async def test_forged_cursor_key_is_a_400_not_a_crash(client, sign_up, sort, forged_key):
    owner = await sign_up()
    for _ in range(2):
        await add_video(client, owner)
    cursor = (await list_page(client, limit=1, sort=sort))["next_cursor"]

    response = await client.get(
        VIDEOS, params={"limit": 1, "sort": sort, "cursor": retyped(cursor, forged_key)}
    )

    assert_field_error(response, "cursor")


async def test_forged_likes_cursor_is_a_400_not_a_crash(client, sign_up):
    owner = await sign_up()
    for _ in range(2):
        video = await add_video(client, owner)
        assert (await client.post(f"{video_url(video['id'])}/like", headers=owner.headers)).status_code == 200
    cursor = (await list_page(client, MY_LIKES, owner, limit=1))["next_cursor"]

    response = await client.get(MY_LIKES, params={"cursor": retyped(cursor, 7)}, headers=owner.headers)

    assert_field_error(response, "cursor")


@pytest.mark.parametrize("sort", ["newest", "oldest"])
async def test_cursor_walk_sees_every_video_once_while_new_ones_arrive(client, sign_up, make_settings, sort):
    async with serve_here(make_settings) as http:
        await _walk_while_adding(http, await sign_up(on=http), sort)


async def _walk_while_adding(http, owner, sort: str) -> None:
    # Rows straight into the table, for speed; three share each creation time, so the video id must
    # break ties, and a whole-second time sits next to fractional ones (their text forms differ).
    start = datetime(2025, 1, 1, tzinfo=UTC)
    rows = [
        Video(
            id=uuid.uuid4(),
            owner=uuid.UUID(owner.id),
            title=f"Existing {i}",
            url=f"https://media.example.com/existing-{i}.mp4",
            duration_seconds=60,
            visibility="public" if i % 10 else "unlisted",
            created_at=start + timedelta(milliseconds=500 * (i // 3)),
            updated_at=start,
        )
        for i in range(330)
    ]
    await Video.insert(*rows)
    existing = {str(row.id) for row in rows if row.visibility == "public"}
    added: list[str] = []

    async def add_two() -> None:
        for video in await asyncio.gather(add_video(http, owner), add_video(http, owner)):
            added.append(video["id"])

    # Each page is fetched while two videos are being added.
    items = await walk(http, between_pages=add_two, sort=sort, limit=10)

    seen = ids(items)
    assert len(seen) == len(set(seen)), "an item was repeated"
    assert existing <= set(seen), f"{len(existing - set(seen))} existing videos were skipped"
    assert set(seen) <= existing | set(added)
    if sort == "newest":
        # New videos sort first, so only the first page, fetched while they arrived, may show them.
        assert set(seen[10:]) <= existing
    times = [datetime.fromisoformat(item["created_at"]) for item in items]
    assert times == sorted(times, reverse=sort == "newest")


# ---------------------------------------------------------------- a user's videos


async def test_user_videos_lists_only_their_public_videos(client, sign_up):
    owner, other = await sign_up(), await sign_up()
    public = [await add_video(client, owner) for _ in range(3)]
    for visibility in ("unlisted", "private"):
        await add_video(client, owner, visibility=visibility)
    await add_video(client, other)

    anonymous = await walk(client, user_videos_url(owner.id), limit=2)
    as_owner = await walk(client, user_videos_url(owner.id), viewer=owner, limit=2)

    assert ids(anonymous) == ids(public)[::-1]
    assert ids(as_owner) == ids(public)[::-1]
    assert ids(await walk(client, user_videos_url(other.id))) != []
    assert_problem(await client.get(user_videos_url(str(uuid.uuid4()))), 404)
    assert_field_error(await client.get(user_videos_url(owner.id), params={"limit": 0}), "limit")
    assert_field_error(await client.get(user_videos_url(owner.id), params={"cursor": "bad"}), "cursor")


async def test_user_without_public_videos_has_an_empty_list(client, sign_up):
    owner = await sign_up()
    await add_video(client, owner, visibility="private")

    assert await list_page(client, user_videos_url(owner.id)) == {"items": [], "next_cursor": None}


# ---------------------------------------------------------------- my likes


async def test_my_likes_lists_newest_like_first_with_pages(client, sign_up):
    owner, fan = await sign_up(), await sign_up()
    videos = [await add_video(client, owner) for _ in range(5)]
    like_order = [videos[3], videos[0], videos[4], videos[1]]
    for video in like_order:
        assert (await client.post(f"{video_url(video['id'])}/like", headers=fan.headers)).status_code == 200
    # Liking again does not move a video to the top.
    assert (await client.post(f"{video_url(videos[3]['id'])}/like", headers=fan.headers)).status_code == 200

    liked = await walk(client, MY_LIKES, fan, limit=3)
    first = await list_page(client, MY_LIKES, fan, limit=3)

    assert ids(liked) == ids(like_order)[::-1]
    assert len(first["items"]) == 3
    assert first["next_cursor"]
    assert all(set(item) == SUMMARY_FIELDS for item in liked)
    assert liked[0]["like_count"] == 1
    assert (await list_page(client, MY_LIKES, owner))["items"] == []


async def test_my_likes_drops_videos_that_became_private_to_the_liker(client, sign_up):
    owner, fan = await sign_up(), await sign_up()
    video = await add_video(client, owner)
    assert (await client.post(f"{video_url(video['id'])}/like", headers=fan.headers)).status_code == 200
    assert (await client.post(f"{video_url(video['id'])}/like", headers=owner.headers)).status_code == 200

    made_private = await client.patch(
        video_url(video["id"]), json={"visibility": "private"}, headers=owner.headers
    )

    assert made_private.status_code == 200
    assert (await list_page(client, MY_LIKES, fan))["items"] == []
    assert ids((await list_page(client, MY_LIKES, owner))["items"]) == [video["id"]]


async def test_my_likes_requires_authentication(client):
    response = await client.get(MY_LIKES)

    assert_problem(response, 401)
    assert response.headers["www-authenticate"].lower().startswith("bearer")


async def test_created_video_appears_in_lists_at_once(client, sign_up):
    owner = await sign_up()
    await add_video(client, owner)
    before = await ids_on_first_page(client)
    await ids_on_first_page(client)  # warm

    response = await client.post(VIDEOS, json=video_body(), headers=owner.headers)

    assert response.status_code == 201
    assert await ids_on_first_page(client) == [response.json()["id"], *before]
