"""Likes and views through the HTTP API: idempotence, exact counts under concurrency, buffered views."""

from __future__ import annotations

import asyncio
import uuid

from features.likes.likes import VideoLike
from features.videos.videos import Video
from tests.features.videos_support import (
    MY_LIKES,
    VIEWS_FLUSH_JOB,
    add_video,
    assert_problem,
    eventually,
    in_test_loop,
    list_page,
    schedule_paused,
    serve_here,
    video_state,
    video_url,
)

# ---------------------------------------------------------------- likes


async def test_like_and_unlike_are_idempotent(client, sign_up):
    owner, fan = await sign_up(), await sign_up()
    video = await add_video(client, owner)
    like = f"{video_url(video['id'])}/like"

    first_like = await client.post(like, headers=fan.headers)
    second_like = await client.post(like, headers=fan.headers)
    liked_state = await video_state(client, video["id"])
    first_unlike = await client.delete(like, headers=fan.headers)
    second_unlike = await client.delete(like, headers=fan.headers)

    assert (first_like.status_code, second_like.status_code) == (200, 200)
    assert first_like.json() == second_like.json() == {"liked": True, "like_count": 1}
    assert liked_state["like_count"] == 1
    assert (first_unlike.status_code, second_unlike.status_code) == (200, 200)
    assert first_unlike.json() == second_unlike.json() == {"liked": False, "like_count": 0}
    assert (await video_state(client, video["id"]))["like_count"] == 0
    assert await in_test_loop(VideoLike.count().where(VideoLike.video == uuid.UUID(video["id"]))) == 0


async def test_likes_of_several_users_add_up_and_owners_may_like_their_own(client, sign_up):
    owner, fan = await sign_up(), await sign_up()
    video = await add_video(client, owner)
    like = f"{video_url(video['id'])}/like"

    by_fan = await client.post(like, headers=fan.headers)
    by_owner = await client.post(like, headers=owner.headers)
    unlike_never_liked = await client.delete(like, headers=(await sign_up()).headers)

    assert by_fan.json() == {"liked": True, "like_count": 1}
    assert by_owner.json() == {"liked": True, "like_count": 2}
    assert unlike_never_liked.json() == {"liked": False, "like_count": 2}


async def test_like_of_an_unknown_video_is_404(client, sign_up):
    fan = await sign_up()
    unknown = video_url(str(uuid.uuid4()))

    assert_problem(await client.post(f"{unknown}/like", headers=fan.headers), 404)
    assert_problem(await client.delete(f"{unknown}/like", headers=fan.headers), 404)
    assert_problem(await client.post(f"{unknown}/views"), 404)


async def test_a_video_made_private_can_be_neither_liked_nor_unliked_by_others(client, sign_up):
    """The like's own statements check who may see the video (no read before them): a video made
    private after a like is a 404 to the liker either way, and nothing of the like moves."""
    owner, fan, newcomer = await sign_up(), await sign_up(), await sign_up()
    video = await add_video(client, owner)
    like = f"{video_url(video['id'])}/like"
    assert (await client.post(like, headers=fan.headers)).json() == {"liked": True, "like_count": 1}
    made_private = await client.patch(
        video_url(video["id"]), json={"visibility": "private"}, headers=owner.headers
    )
    assert made_private.status_code == 200, made_private.text

    assert_problem(await client.delete(like, headers=fan.headers), 404)
    assert_problem(await client.post(like, headers=fan.headers), 404)
    assert_problem(await client.post(like, headers=newcomer.headers), 404)
    assert (await client.post(like, headers=owner.headers)).json() == {"liked": True, "like_count": 2}
    likers = VideoLike.select(VideoLike.user).where(VideoLike.video == uuid.UUID(video["id"]))
    assert {str(row["user"]) for row in await in_test_loop(likers)} == {fan.id, owner.id}

    await client.patch(video_url(video["id"]), json={"visibility": "unlisted"}, headers=owner.headers)
    assert (await client.delete(like, headers=fan.headers)).json() == {"liked": False, "like_count": 1}
    assert (await video_state(client, video["id"]))["like_count"] == 1


async def test_fifty_users_liking_and_unliking_at_once_keep_the_count_exact(client, sign_up, make_settings):
    async with serve_here(make_settings) as http:
        owner = await sign_up(on=http)
        video = await add_video(http, owner)
        like = f"{video_url(video['id'])}/like"
        fans = [await sign_up(on=http) for _ in range(50)]

        likes = await asyncio.gather(*(http.post(like, headers=fan.headers) for fan in fans))
        after_likes = await video_state(http, video["id"])
        unlikes = await asyncio.gather(*(http.delete(like, headers=fan.headers) for fan in fans))

        assert [r.status_code for r in likes + unlikes] == [200] * 100, [
            r.text for r in likes + unlikes if r.status_code != 200
        ][:3]
        assert all(r.json()["liked"] is True for r in likes)
        assert all(r.json()["liked"] is False for r in unlikes)
        # Each like ran alone against the count, so every one saw a different total.
        assert sorted(r.json()["like_count"] for r in likes) == list(range(1, 51))
        assert sorted(r.json()["like_count"] for r in unlikes) == list(range(50))
        assert after_likes["like_count"] == 50
        assert (await video_state(http, video["id"]))["like_count"] == 0
        assert await VideoLike.count().where(VideoLike.video == uuid.UUID(video["id"])) == 0
        assert (await list_page(http, MY_LIKES, fans[0]))["items"] == []


async def test_concurrent_double_likes_and_unlikes_count_once(client, sign_up, make_settings):
    async with serve_here(make_settings) as http:
        owner = await sign_up(on=http)
        video = await add_video(http, owner)
        like = f"{video_url(video['id'])}/like"
        fans = [await sign_up(on=http) for _ in range(10)]

        likes = await asyncio.gather(*(http.post(like, headers=fan.headers) for fan in fans * 3))
        liked = await video_state(http, video["id"])
        unlikes = await asyncio.gather(*(http.delete(like, headers=fan.headers) for fan in fans * 3))

        assert {r.status_code for r in likes + unlikes} == {200}
        assert liked["like_count"] == 10
        assert await VideoLike.count().where(VideoLike.video == uuid.UUID(video["id"])) == 0
        assert (await video_state(http, video["id"]))["like_count"] == 0


# ---------------------------------------------------------------- views


async def test_view_is_accepted_at_once_and_counted_at_the_next_flush(
    client, sign_up, make_settings, backend
):
    # The first flush runs as the app starts, the next one interval later: long enough for the views
    # below to be recorded in between even when each is a round trip to a shared cache (Upstash).
    interval = 1.5
    async with serve_here(make_settings, view_flush_interval_seconds=interval) as http:
        owner = await sign_up(on=http)
        video = await add_video(http, owner)
        views = f"{video_url(video['id'])}/views"

        async with schedule_paused(backend, VIEWS_FLUSH_JOB):
            responses = await asyncio.gather(*(http.post(views) for _ in range(40)))
            before_flush = await Video.select(Video.view_count).where(Video.id == uuid.UUID(video["id"]))

        assert [r.status_code for r in responses] == [202] * 40
        assert responses[0].json() == {"status": "accepted"}
        # Buffered: the requests wrote nothing to the database themselves.
        assert before_flush == [{"view_count": 0}]

        async def counted() -> bool:
            return (await video_state(http, video["id"]))["view_count"] == 40

        await eventually(counted, within=interval + 1.5)
        await asyncio.sleep(interval + 0.1)  # one more flush interval: nothing is counted twice
        assert (await video_state(http, video["id"]))["view_count"] == 40


async def test_views_of_several_videos_are_counted_apart(client, sign_up, make_settings):
    async with serve_here(make_settings, view_flush_interval_seconds=0.1) as http:
        owner = await sign_up(on=http)
        first, second = await add_video(http, owner), await add_video(http, owner, visibility="unlisted")
        posts = [http.post(f"{video_url(first['id'])}/views") for _ in range(3)]
        posts += [http.post(f"{video_url(second['id'])}/views", headers=owner.headers) for _ in range(5)]
        assert {r.status_code for r in await asyncio.gather(*posts)} == {202}

        async def counted() -> bool:
            states = [await video_state(http, v["id"]) for v in (first, second)]
            return [s["view_count"] for s in states] == [3, 5]

        await eventually(counted, within=3.0)  # with QStash, flushes come once a cron minute (1 s here)


async def test_graceful_shutdown_flushes_pending_views(client, sign_up, make_settings, backend):
    async with serve_here(make_settings, view_flush_interval_seconds=3600) as http:
        owner = await sign_up(on=http)
        video = await add_video(http, owner)
        async with schedule_paused(backend, VIEWS_FLUSH_JOB):  # QStash's hourly flush: any minute
            responses = await asyncio.gather(
                *(http.post(f"{video_url(video['id'])}/views") for _ in range(7))
            )
            assert [r.status_code for r in responses] == [202] * 7
            assert (await video_state(http, video["id"]))["view_count"] == 0

    # The same database, a new process: only a flush on the way out can have saved the views.
    async with serve_here(make_settings, view_flush_interval_seconds=3600) as http:
        assert (await video_state(http, video["id"]))["view_count"] == 7


# ---------------------------------------------------------------- account deletion


async def test_deleting_an_account_takes_back_its_likes_and_its_videos(client, sign_up):
    owner, leaving = await sign_up(), await sign_up()
    video = await add_video(client, owner)
    theirs = await add_video(client, leaving)
    for fan, liked in ((leaving, video), (owner, theirs)):
        assert (await client.post(f"{video_url(liked['id'])}/like", headers=fan.headers)).status_code == 200
    for _ in range(2):  # warm every cached view involved
        await video_state(client, video["id"])
        await video_state(client, theirs["id"])
        await list_page(client)
        await list_page(client, MY_LIKES, owner)

    response = await client.request(
        "DELETE", "/api/v1/users/me", json={"password": leaving.password}, headers=leaving.headers
    )

    assert response.status_code == 204, response.text
    assert (await video_state(client, video["id"]))["like_count"] == 0
    assert_problem(await client.get(video_url(theirs["id"])), 404)
    assert [item["id"] for item in (await list_page(client))["items"]] == [video["id"]]
    assert (await list_page(client, MY_LIKES, owner))["items"] == []
