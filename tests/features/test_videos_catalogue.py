"""Videos through the HTTP API: creating, reading, changing and deleting, and who may do what.

Every test runs against a real app (lifespan included) on SQLite and, when configured, PostgreSQL.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import pytest

from features.likes.likes import VideoLike
from tests.features.videos_support import (
    DETAIL_FIELDS,
    MY_LIKES,
    VIDEOS,
    add_video,
    assert_field_error,
    assert_problem,
    in_test_loop,
    list_page,
    read_video,
    video_body,
    video_state,
    video_url,
)

# ---------------------------------------------------------------- create


async def test_create_returns_the_video_with_normalised_fields(client, sign_up):
    owner = await sign_up()
    body = video_body(
        title="  Knife skills: the claw grip  ",
        description="  Keep your fingertips tucked.  ",
        tags=["Cooking", "knife skills", "COOKING", " Basics "],
        thumbnail_url="http://img.example.com/claw.jpg",
        transcript="Today we practise the claw grip.",
        duration_seconds=754,
        visibility="unlisted",
    )

    response = await client.post(VIDEOS, json=body, headers=owner.headers)

    assert response.status_code == 201, response.text
    video = response.json()
    assert set(video) == DETAIL_FIELDS
    assert video["title"] == "Knife skills: the claw grip"
    assert video["description"] == "Keep your fingertips tucked."
    assert video["tags"] == ["cooking", "knife skills", "basics"]
    assert video["url"] == body["url"]
    assert video["thumbnail_url"] == "http://img.example.com/claw.jpg"
    assert video["transcript"] == "Today we practise the claw grip."
    assert video["has_transcript"] is True
    assert video["duration_seconds"] == 754
    assert video["visibility"] == "unlisted"
    assert video["owner_id"] == owner.id
    assert (video["like_count"], video["view_count"]) == (0, 0)
    assert datetime.fromisoformat(video["created_at"]).tzinfo is not None
    assert await video_state(client, video["id"]) == video


async def test_create_applies_defaults(client, sign_up):
    owner = await sign_up()

    video = await add_video(client, owner)

    assert video["description"] == ""
    assert video["tags"] == []
    assert video["thumbnail_url"] is None
    assert video["transcript"] is None
    assert video["has_transcript"] is False
    assert video["visibility"] == "public"


async def test_create_accepts_values_at_every_limit(client, sign_up):
    owner = await sign_up()
    body = video_body(
        title="t" * 200,
        description="d" * 5000,
        transcript="w" * 100_000,
        duration_seconds=86_400,
        tags=[f"tag{i:02d}" + "x" * 35 for i in range(20)],
    )

    response = await client.post(VIDEOS, json=body, headers=owner.headers)

    assert response.status_code == 201, response.text
    video = response.json()
    assert len(video["title"]) == 200
    assert len(video["tags"]) == 20
    assert all(len(tag) == 40 for tag in video["tags"])
    assert len(video["transcript"]) == 100_000
    shortest = await client.post(VIDEOS, json=video_body(duration_seconds=1), headers=owner.headers)
    assert shortest.status_code == 201, shortest.text


INVALID_CREATES = [
    ("title", {"title": ""}),
    ("title", {"title": "    "}),
    ("title", {"title": "t" * 201}),
    ("title", {"title": " " + "t" * 200}),  # the documented limit is on the title as sent
    ("title", {"title": "t" * 401}),
    ("title", {"title": None}),
    ("title", {"title": "a\x00b"}),
    ("title", {"title": "two\nlines"}),
    ("title", {"title": "tab\tbed"}),
    ("title", {"title": "trailing newline\n"}),
    ("title", {"title": "bell\x07"}),
    ("title", {"title": "delete\x7f"}),
    ("description", {"description": "d" * 5001}),
    ("description", {"description": "a\x00b"}),
    ("description", {"description": "colour\x1b[31m"}),
    ("description", {"description": "vertical\x0btab"}),
    ("transcript", {"transcript": "w" * 100_001}),
    ("transcript", {"transcript": "a\x00b"}),
    ("transcript", {"transcript": "form\x0cfeed"}),
    ("url", {"url": "https://media.example.com/a\x00.mp4"}),
    ("url", {"url": "https://media.example.com/a.mp4\n"}),
    ("url", {"url": " https://media.example.com/a.mp4"}),
    ("url", {"url": "https://media.example.com:port/a.mp4"}),
    ("url", {"url": "https://media.example.com/a\u3000b.mp4"}),
    ("thumbnail_url", {"thumbnail_url": "https://img.example.com/\x00.jpg"}),
    ("url", {"url": "ftp://media.example.com/a.mp4"}),
    ("url", {"url": "/relative/a.mp4"}),
    ("url", {"url": "media.example.com/a.mp4"}),
    ("url", {"url": "https://"}),
    ("url", {"url": "https://media.example .com/a.mp4"}),
    ("url", {"url": "http://[::1/a.mp4"}),
    ("thumbnail_url", {"thumbnail_url": "javascript:alert(1)"}),
    ("thumbnail_url", {"thumbnail_url": "//img.example.com/a.jpg"}),
    ("duration_seconds", {"duration_seconds": 0}),
    ("duration_seconds", {"duration_seconds": 86_401}),
    ("duration_seconds", {"duration_seconds": 12.5}),
    ("tags", {"tags": [f"t{i}" for i in range(21)]}),
    ("tags[1]", {"tags": ["ok", "x" * 41]}),
    ("tags[1]", {"tags": ["ok", "   "]}),
    ("tags[0]", {"tags": ["a\x00b"]}),
    ("tags[0]", {"tags": ["İ" * 40]}),  # 80 characters in lower case, longer than the column
    ("tags[1]", {"tags": ["ok", "new\nline"]}),
    ("shiny", {"shiny": True}),
    ("visibility", {"visibility": "secret"}),
]


@pytest.mark.parametrize(
    ("field", "change"), INVALID_CREATES, ids=[f"{field}-{i}" for i, (field, _) in enumerate(INVALID_CREATES)]
)
async def test_create_rejects_invalid_input_naming_the_field(client, sign_up, field, change):
    owner = await sign_up()

    response = await client.post(VIDEOS, json=video_body(**change), headers=owner.headers)

    assert_field_error(response, field)
    assert (await list_page(client, viewer=owner))["items"] == []


async def test_urls_the_documented_pattern_takes_are_taken_as_sent(client, sign_up):
    owner = await sign_up()

    for url in (
        "HTTPS://Media.Example.com/A.mp4",
        "http://user:secret@[2001:db8::1]:8080/a.mp4?t=1#start",
        "https://media.example.com",
        "http://192.0.2.7/ünïcode/path",
    ):
        video = await add_video(client, owner, url=url, thumbnail_url=url)

        assert (video["url"], video["thumbnail_url"]) == (url, url)


async def test_multi_line_text_keeps_tabs_and_line_breaks(client, sign_up):
    owner = await sign_up()
    description = "Step 1:\tmelt.\r\nStep 2:\tseed.\nStep 3:\tcool."
    transcript = "\tIntro.\n\nThen the\tdetail.\r\n"

    video = await add_video(client, owner, description=description, transcript=transcript)

    assert video["description"] == description
    assert video["transcript"] == transcript
    assert await video_state(client, video["id"]) == video


@pytest.mark.parametrize("missing", ["title", "url", "duration_seconds"])
async def test_create_requires_title_url_and_duration(client, sign_up, missing):
    owner = await sign_up()
    body = video_body()
    del body[missing]

    assert_field_error(await client.post(VIDEOS, json=body, headers=owner.headers), missing)


async def test_create_requires_authentication(client):
    response = await client.post(VIDEOS, json=video_body())

    assert_problem(response, 401)
    assert response.headers["www-authenticate"].lower().startswith("bearer")
    bad_token = await client.post(VIDEOS, json=video_body(), headers={"Authorization": "Bearer nonsense"})
    assert_problem(bad_token, 401)


# ---------------------------------------------------------------- read


async def test_read_unknown_video_is_404(client, sign_up):
    viewer = await sign_up()

    assert_problem(await read_video(client, str(uuid.uuid4())), 404)
    assert_problem(await read_video(client, str(uuid.uuid4()), viewer), 404)
    assert_problem(await client.get(f"{VIDEOS}/not-a-uuid"), 404)


async def test_read_sends_an_etag_and_answers_304_while_it_matches(client, sign_up):
    owner, fan = await sign_up(), await sign_up()
    video = await add_video(client, owner)

    first = await read_video(client, video["id"])
    etag = first.headers["etag"]
    again = await read_video(client, video["id"])
    not_modified = await client.get(video_url(video["id"]), headers={"If-None-Match": etag})
    liked = await client.post(f"{video_url(video['id'])}/like", headers=fan.headers)
    after_like = await client.get(video_url(video["id"]), headers={"If-None-Match": etag})

    assert first.status_code == 200
    assert etag.startswith('"')
    assert etag.endswith('"')
    assert again.headers["etag"] == etag
    assert not_modified.status_code == 304
    assert not_modified.content == b""
    assert not_modified.headers["etag"] == etag
    assert liked.status_code == 200
    assert after_like.status_code == 200
    assert after_like.json()["like_count"] == 1
    assert after_like.headers["etag"] != etag
    other = await client.get(video_url(video["id"]), headers={"If-None-Match": '"something-else"'})
    assert other.status_code == 200


# ---------------------------------------------------------------- change


async def test_patch_changes_only_the_fields_sent(client, sign_up):
    owner = await sign_up()
    video = await add_video(
        client, owner, description="Original.", tags=["a", "b"], transcript="Words.", duration_seconds=30
    )

    response = await client.patch(
        video_url(video["id"]), json={"title": "  Renamed  ", "tags": ["C", "c", "D"]}, headers=owner.headers
    )

    assert response.status_code == 200, response.text
    changed = response.json()
    assert changed["title"] == "Renamed"
    assert changed["tags"] == ["c", "d"]
    unchanged = {"description", "url", "duration_seconds", "transcript", "visibility", "created_at"}
    assert {key: changed[key] for key in unchanged} == {key: video[key] for key in unchanged}
    assert changed["updated_at"] > video["updated_at"]
    assert await video_state(client, video["id"]) == changed
    # The tag filter follows the replaced tags.
    assert [v["id"] for v in (await list_page(client, tag="c"))["items"]] == [video["id"]]
    assert (await list_page(client, tag="a"))["items"] == []


async def test_patch_null_clears_thumbnail_and_transcript(client, sign_up):
    owner = await sign_up()
    video = await add_video(
        client, owner, thumbnail_url="https://img.example.com/t.jpg", transcript="Spoken words."
    )

    response = await client.patch(
        video_url(video["id"]), json={"thumbnail_url": None, "transcript": None}, headers=owner.headers
    )

    assert response.status_code == 200, response.text
    cleared = await video_state(client, video["id"])
    assert cleared["thumbnail_url"] is None
    assert cleared["transcript"] is None
    assert cleared["has_transcript"] is False
    assert cleared["title"] == video["title"]


async def test_patch_can_set_every_field(client, sign_up):
    owner = await sign_up()
    video = await add_video(client, owner)
    change = {
        "url": "https://cdn.example.org/new.mp4",
        "thumbnail_url": "https://cdn.example.org/new.jpg",
        "description": "New words.",
        "duration_seconds": 86_400,
        "transcript": "Now with a transcript.",
        "visibility": "private",
    }

    response = await client.patch(video_url(video["id"]), json=change, headers=owner.headers)

    assert response.status_code == 200, response.text
    changed = await video_state(client, video["id"], owner)
    assert {key: changed[key] for key in change} == change
    assert changed["has_transcript"] is True
    assert_problem(await read_video(client, video["id"]), 404)


async def test_empty_patch_changes_nothing(client, sign_up):
    owner = await sign_up()
    video = await add_video(client, owner)

    response = await client.patch(video_url(video["id"]), json={}, headers=owner.headers)

    assert response.status_code == 200, response.text
    assert response.json() == video


INVALID_PATCHES = [
    ("title", {"title": "   "}),
    ("title", {"title": None}),
    ("title", {"title": "t" * 201}),
    ("url", {"url": "mailto:someone@example.com"}),
    ("url", {"url": None}),
    ("thumbnail_url", {"thumbnail_url": "img.jpg"}),
    ("duration_seconds", {"duration_seconds": 0}),
    ("description", {"description": "d" * 5001}),
    ("transcript", {"transcript": "w" * 100_001}),
    ("tags[0]", {"tags": ["x" * 41]}),
    ("tags", {"tags": [f"t{i}" for i in range(21)]}),
    ("title", {"title": "a\x00b"}),
    ("description", {"description": "\x00"}),
    ("transcript", {"transcript": "\x00"}),
    ("tags[0]", {"tags": ["\x00"]}),
    ("url", {"url": "https://media.example.com/\x00"}),
    ("visibility", {"visibility": "hidden"}),
    ("owner_id", {"owner_id": str(uuid.uuid4())}),
    ("like_count", {"like_count": 1000}),
]


@pytest.mark.parametrize(
    ("field", "change"), INVALID_PATCHES, ids=[f"{field}-{i}" for i, (field, _) in enumerate(INVALID_PATCHES)]
)
async def test_patch_rejects_invalid_input_and_changes_nothing(client, sign_up, field, change):
    owner = await sign_up()
    video = await add_video(client, owner, tags=["keep"])

    response = await client.patch(video_url(video["id"]), json=change, headers=owner.headers)

    assert_field_error(response, field)
    assert await video_state(client, video["id"]) == video


# ---------------------------------------------------------------- delete


async def test_delete_removes_the_video_and_its_likes(client, sign_up):
    owner, fan = await sign_up(), await sign_up()
    video = await add_video(client, owner)
    kept = await add_video(client, owner)
    for liked in (video, kept):
        assert (await client.post(f"{video_url(liked['id'])}/like", headers=fan.headers)).status_code == 200
    assert {v["id"] for v in (await list_page(client, MY_LIKES, fan))["items"]} == {video["id"], kept["id"]}

    response = await client.delete(video_url(video["id"]), headers=owner.headers)

    assert response.status_code == 204, response.text
    assert response.content == b""
    assert [v["id"] for v in (await list_page(client, MY_LIKES, fan))["items"]] == [kept["id"]]
    assert await in_test_loop(VideoLike.count().where(VideoLike.video == uuid.UUID(video["id"]))) == 0
    assert_problem(await read_video(client, video["id"], owner), 404)
    assert [v["id"] for v in (await list_page(client, viewer=owner))["items"]] == [kept["id"]]
    assert_problem(await client.delete(video_url(video["id"]), headers=owner.headers), 404)
    assert_problem(await client.post(f"{video_url(video['id'])}/like", headers=fan.headers), 404)
    assert_problem(await client.post(f"{video_url(video['id'])}/views"), 404)


# ---------------------------------------------------------------- authorization matrix

ANONYMOUS, OWNER, OTHER = "anonymous", "owner", "other"


def expected_status(action: str, visibility: str, actor: str) -> int:
    """What each actor gets for each action, as the issue specifies."""
    visible = visibility != "private" or actor == OWNER
    if action in {"patch", "delete", "like", "unlike"} and actor == ANONYMOUS:
        return 401
    if not visible:
        return 404
    if action in {"patch", "delete"} and actor == OTHER:
        return 403
    return {"read": 200, "patch": 200, "delete": 204, "like": 200, "unlike": 200, "view": 202}[action]


async def perform(client, action: str, video_id: str, headers: dict[str, str]) -> Any:
    url = video_url(video_id)
    if action == "read":
        return await client.get(url, headers=headers)
    if action == "patch":
        return await client.patch(url, json={"description": "changed"}, headers=headers)
    if action == "delete":
        return await client.delete(url, headers=headers)
    if action == "like":
        return await client.post(f"{url}/like", headers=headers)
    if action == "unlike":
        return await client.delete(f"{url}/like", headers=headers)
    return await client.post(f"{url}/views", headers=headers)


@pytest.mark.parametrize("visibility", ["public", "unlisted", "private"])
async def test_authorization_matrix(client, sign_up, visibility):
    owner, other = await sign_up(), await sign_up()
    video = await add_video(client, owner, visibility=visibility)
    headers = {ANONYMOUS: {}, OWNER: owner.headers, OTHER: other.headers}

    outcomes = {}
    # Owner last, and delete last, so that every other request meets the video still there.
    for action in ["read", "view", "like", "unlike", "patch", "delete"]:
        for actor in [ANONYMOUS, OTHER, OWNER]:
            if (action, actor) == ("delete", OWNER):
                continue
            response = await perform(client, action, video["id"], headers[actor])
            outcomes[action, actor] = response.status_code
            if response.status_code >= 400:
                assert response.headers["content-type"].startswith("application/problem+json")
    outcomes["delete", OWNER] = (await perform(client, "delete", video["id"], owner.headers)).status_code

    expected = {key: expected_status(*key[:1], visibility, key[1]) for key in outcomes}
    assert outcomes == expected
    assert (await client.get(video_url(video["id"]), headers=owner.headers)).status_code == 404


async def test_reads_with_an_invalid_token_are_refused_not_anonymous(client, sign_up):
    video = await add_video(client, await sign_up())
    bad = {"Authorization": "Bearer not-a-token"}

    for response in (
        await client.get(VIDEOS, headers=bad),
        await client.get(video_url(video["id"]), headers=bad),
        await client.post(f"{video_url(video['id'])}/views", headers=bad),
    ):
        assert_problem(response, 401)


@pytest.mark.parametrize("visibility", ["unlisted", "private"])
async def test_refused_writes_leave_the_video_unchanged(client, sign_up, visibility):
    owner, other = await sign_up(), await sign_up()
    video = await add_video(client, owner, visibility=visibility, description="original")

    for headers in ({}, other.headers):
        await client.patch(video_url(video["id"]), json={"description": "hijacked"}, headers=headers)
        await client.delete(video_url(video["id"]), headers=headers)

    assert await video_state(client, video["id"], owner) == video
