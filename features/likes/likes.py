"""Likes: who likes which video, each video's exact like count, and the videos a viewer liked."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import msgspec
import strawberry
from litestar import Request, Response, Router, delete, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.security.jwt import Token
from piccolo.columns import UUID, ForeignKey, OnDelete, Timestamptz
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.engine.base import Engine
from piccolo.table import Table

from core.database import PreparedQuery, write_transaction
from core.errors import InvalidInput, NotFound, problem_responses
from core.graphql import Info, connection, page_size, parsed_id
from core.openapi import CACHE_STATUS_HEADER, BearerOperation
from core.outbox import publish
from core.pagination import Cursor, decode_cursor, encode_cursor, is_time_key, rows_after, sort_key
from features.users.users import User
from features.videos.videos import (
    VIDEO_CHANGES,
    Limit,
    PageCursor,
    Video,
    VideoConnection,
    VideoNode,
    VideoPage,
    VideoReads,
    VideoSummary,
)

# ---------------------------------------------------------------- tables


class VideoLike(Table, tablename="video_likes"):
    """Who liked what; (user, video) is unique, by an index the migration creates.

    The table stays in the videos Piccolo app (features/videos/piccolo_app.py), whose migrations
    created it: moving it to an app of its own would make Piccolo see it dropped and added again.
    """

    id = UUID(primary_key=True)
    user = ForeignKey(User, on_delete=OnDelete.cascade, null=False)
    video = ForeignKey(Video, on_delete=OnDelete.cascade, null=False, index=True)
    created_at = Timestamptz(default=TimestamptzNow(), index=True)


# ---------------------------------------------------------------- schemas


class LikeState(msgspec.Struct):
    liked: bool
    like_count: int


class LikedPage(msgspec.Struct):
    """Liked videos with the cursor after each (GraphQL's edges); REST shows it as a VideoPage."""

    items: list[VideoSummary]
    cursors: list[str]
    has_more: bool


# ---------------------------------------------------------------- rules: reading

# The liked video's columns under VideoSummary's names (its first two, id and owner_id, are named here).
_LIKED_COLUMNS = (
    VideoLike.id.as_alias("like_id"),
    VideoLike.created_at.as_alias("liked_at"),
    VideoLike.video.id.as_alias("id"),
    VideoLike.video.owner.as_alias("owner_id"),
    *(getattr(VideoLike.video, name).as_alias(name) for name in VideoSummary.__struct_fields__[2:]),
)


def _liked_video(row: dict[str, Any]) -> VideoSummary:
    # SQLite returns UUIDs and JSON as text, PostgreSQL as objects: normalise both.
    tags = row["tags"]
    fields = {
        **{key: row[key] for key in VideoSummary.__struct_fields__ if key in row},
        "id": uuid.UUID(str(row["id"])),
        "owner_id": uuid.UUID(str(row["owner_id"])),
        "tags": msgspec.json.decode(tags) if isinstance(tags, (str, bytes)) else tags,
    }
    return VideoSummary(**fields)


async def liked_page(user: User, limit: int, cursor: str | None) -> LikedPage:
    """Videos this user liked that they can still see, newest like first."""
    select = VideoLike.select(*_LIKED_COLUMNS).where(
        (VideoLike.user == user.id)
        & ((VideoLike.video.visibility != "private") | (VideoLike.video.owner == user.id))
    )
    if cursor:
        after = decode_cursor(cursor, "liked", "", is_time_key)
        select = select.where(rows_after(VideoLike.created_at, VideoLike.id, True, after))
    rows = await select.order_by(VideoLike.created_at, VideoLike.id, ascending=False).limit(limit + 1)
    cursors = [
        encode_cursor(Cursor("liked", "", sort_key(row["liked_at"]), str(row["like_id"])))
        for row in rows[:limit]
    ]
    return LikedPage([_liked_video(row) for row in rows[:limit]], cursors, len(rows) > limit)


async def liked_videos(user: User, limit: int, cursor: str | None) -> VideoPage:
    page = await liked_page(user, limit, cursor)
    return VideoPage(items=page.items, next_cursor=page.cursors[-1] if page.has_more else None)


async def liked_among(viewer_id: uuid.UUID, video_ids: list[uuid.UUID]) -> set[uuid.UUID]:
    """Which of these videos the viewer likes: one query for a whole page's likedByMe (app.py hands it
    to the videos feature as the `liked_among` service)."""
    if not video_ids:
        return set()
    rows = await VideoLike.select(VideoLike.video).where(
        (VideoLike.user == viewer_id) & VideoLike.video.is_in(list(set(video_ids)))
    )
    return {uuid.UUID(str(row["video"])) for row in rows}


# ---------------------------------------------------------------- rules: writes

# Who may like a video is can_see's rule (anyone, but only its owner for a private one), checked by
# the like's own statements: a like needs no read of the video before its transaction, and a video
# made private meanwhile is never liked by someone who can no longer see it. Raw SQL because Piccolo's
# on_conflict() misreads SQLite 3.40 as older than 3.24 and refuses; each runs compiled once (see
# PreparedQuery), its arguments in the order of its placeholders.
_MAY_SEE = "(visibility <> 'private' OR owner = {})"
_ADD_LIKE = PreparedQuery(  # (like id, created at, video, viewer, viewer)
    VideoLike,
    lambda _, *values: VideoLike.raw(
        'INSERT INTO video_likes (id, created_at, video, "user") SELECT {}, {}, id, {} FROM videos '
        f"WHERE id = {{}} AND {_MAY_SEE} ON CONFLICT DO NOTHING RETURNING id",
        *values,
    ),
)
_REMOVE_LIKE = PreparedQuery(  # (viewer, video, video, viewer)
    VideoLike,
    lambda _, *values: VideoLike.raw(
        'DELETE FROM video_likes WHERE "user" = {} AND video = {} AND EXISTS '
        f"(SELECT 1 FROM videos WHERE id = {{}} AND {_MAY_SEE}) RETURNING id",
        *values,
    ),
)
# Shaped by the step, +1 or -1.
_MOVE_LIKE_COUNT = PreparedQuery(
    Video,
    lambda step, video_id: (
        Video.update({Video.like_count: Video.like_count + step})
        .where(Video.id == video_id)
        .returning(Video.like_count)
    ),
)
_VISIBLE_LIKE_COUNT = PreparedQuery(  # (video, viewer)
    Video,
    lambda _, *values: Video.raw(f"SELECT like_count FROM videos WHERE id = {{}} AND {_MAY_SEE}", *values),
)


async def set_like(video_id: uuid.UUID, viewer: User, liked: bool, engine: Engine) -> LikeState:
    """Like or unlike a video the viewer can see, idempotently (404 for one they cannot); the count
    moves only when the like row really appeared or went.

    The count is adjusted with `like_count = like_count ± 1` in the same transaction as the row, so
    it stays exact under concurrent likes from many users on both engines; the UPDATE returns the new
    count, so a like is two statements whether it changes something or not.
    """
    async with write_transaction(engine):
        if liked:
            changed = await _ADD_LIKE.rows(uuid.uuid4(), datetime.now(UTC), viewer.id, video_id, viewer.id)
        else:
            changed = await _REMOVE_LIKE.rows(viewer.id, video_id, video_id, viewer.id)
        if changed:
            rows = await _MOVE_LIKE_COUNT.rows(video_id, shape=1 if liked else -1)
        else:
            rows = await _VISIBLE_LIKE_COUNT.rows(video_id, viewer.id)
            if not rows:
                raise NotFound("No video with that id.")
    return LikeState(liked=liked, like_count=rows[0]["like_count"])


async def like_as(
    viewer: User, video_id: uuid.UUID, liked: bool, engine: Engine, reads: VideoReads
) -> LikeState:
    """Like or unlike a video the viewer can see (404 for one they cannot)."""
    state = await set_like(video_id, viewer, liked, engine)
    await reads.changed(video_id)
    return state


async def delete_account(user_id: uuid.UUID, engine: Engine, reads: VideoReads) -> None:
    """Delete an account and everything it owns, keeping like counts exact and the cache fresh.

    For the users feature to call (through app.py) instead of deleting the user row itself: the cascade
    would drop the account's like rows without taking them off `like_count`, and cached details and
    lists would keep showing its videos and likes until they expire. It lives here, not in videos,
    because the like counts are what the cascade gets wrong, and only this feature sees both tables.
    """
    async with write_transaction(engine):
        liked = await VideoLike.delete().where(VideoLike.user == user_id).returning(VideoLike.video)
        liked_ids = [uuid.UUID(str(row["video"])) for row in liked]
        if liked_ids:
            await Video.update({Video.like_count: Video.like_count - 1}).where(Video.id.is_in(liked_ids))
        rows = await Video.select(Video.id).where(Video.owner == user_id)
        owned = [uuid.UUID(str(row["id"])) for row in rows]
        await User.delete().where(User.id == user_id)  # its videos, their tags and likes cascade
        await publish(VIDEO_CHANGES, *(str(video_id) for video_id in owned))
    # After the commit, so no reader can cache the old state under the new generations.
    await reads.changed(*liked_ids, *owned)


# ---------------------------------------------------------------- handlers

# What the OpenAPI document shows as these handlers' answers.
_BAD_CURSOR = InvalidInput("cursor", "is not a cursor this API issued", source="query")
_NO_SUCH_VIDEO = NotFound("No video with that id.")


@post(
    "/videos/{video_id:uuid}/like",
    status_code=200,
    summary="Like a video",
    operation_class=BearerOperation,
    responses=problem_responses(401, _NO_SUCH_VIDEO, 415, 503),
)
async def like_video(
    request: Request[User, Token, Any],
    video_id: FromPath[uuid.UUID],
    db: NamedDependency[Engine],
    video_reads: NamedDependency[VideoReads],
) -> LikeState:
    return await like_as(request.user, video_id, True, db, video_reads)


@delete(
    "/videos/{video_id:uuid}/like",
    status_code=200,
    summary="Take back a like",
    operation_class=BearerOperation,
    responses=problem_responses(401, _NO_SUCH_VIDEO, 415, 503),
)
async def unlike_video(
    request: Request[User, Token, Any],
    video_id: FromPath[uuid.UUID],
    db: NamedDependency[Engine],
    video_reads: NamedDependency[VideoReads],
) -> LikeState:
    return await like_as(request.user, video_id, False, db, video_reads)


@get(
    "/users/me/likes",
    summary="Videos I liked, newest like first",
    operation_class=BearerOperation,
    response_headers=[CACHE_STATUS_HEADER],
    responses=problem_responses(_BAD_CURSOR, 401, 503),
)
async def my_likes(
    request: Request[User, Token, Any],
    video_reads: NamedDependency[VideoReads],
    limit: Limit = 20,
    cursor: PageCursor = None,
) -> Response[VideoPage]:
    cache_key = {"list": "likes", "viewer": str(request.user.id), "limit": limit, "cursor": cursor}
    encoded, cache_status = await video_reads.list_page(
        cache_key, lambda: liked_videos(request.user, limit, cursor)
    )
    return Response(encoded, media_type="application/json", headers={"X-Cache": cache_status})


# ---------------------------------------------------------------- GraphQL


@strawberry.type(name="LikeState")
class LikeStateNode:
    liked: bool
    like_count: int


async def user_likes(info: Info, first: int, after: str | None) -> VideoConnection:
    """The viewer's liked videos, newest like first, as GET /users/me/likes (for User.likes)."""
    viewer = info.context.signed_in()
    limit = page_size(first)
    reads: VideoReads = info.context.service("video_reads")
    key = {"list": "likes-edges", "viewer": str(viewer.id), "limit": limit, "cursor": after}
    encoded, _ = await reads.list_page(key, lambda: liked_page(viewer, limit, after))
    page = msgspec.json.decode(encoded, type=LikedPage)
    return connection(
        VideoConnection, [VideoNode.of(video) for video in page.items], page.cursors, page.has_more
    )


async def _like_mutation(info: Info, raw_id: strawberry.ID, liked: bool) -> LikeStateNode:
    viewer, video_id = info.context.signed_in(), parsed_id(raw_id)
    state = await like_as(
        viewer, video_id, liked, info.context.service("db"), info.context.service("video_reads")
    )
    return LikeStateNode(liked=state.liked, like_count=state.like_count)


@strawberry.type
class LikeMutations:
    @strawberry.mutation(description="Like a video, idempotently.")
    async def like(self, info: Info, id: strawberry.ID) -> LikeStateNode:
        return await _like_mutation(info, id, True)

    @strawberry.mutation(description="Take back a like, idempotently.")
    async def unlike(self, info: Info, id: strawberry.ID) -> LikeStateNode:
        return await _like_mutation(info, id, False)


router = Router(path="/api/v1", route_handlers=[like_video, unlike_video, my_likes], tags=["videos"])
