"""The video catalogue: videos and their tags, with read-through caching of what is read most.

Likes and views are features of their own (features/likes, features/views), built on this one.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, NamedTuple

import msgspec
import strawberry
from litestar import Request, Response, Router, delete, get, patch, post
from litestar.datastructures import ResponseHeader
from litestar.di import NamedDependency
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, HeaderParameter, JSONBody, QueryParameter
from litestar.security.jwt import Token
from litestar.types import Scope
from piccolo.columns import (
    JSON,
    UUID,
    BigInt,
    Boolean,
    ForeignKey,
    Integer,
    OnDelete,
    Text,
    Timestamptz,
    Varchar,
)
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.engine.base import Engine
from piccolo.table import Table

from core import text
from core.auth import OptionalAuthOperation, PublicOperation, optional_user
from core.cache import Cache, CacheStatus, ReadThroughCache
from core.database import PreparedQuery, write_transaction
from core.errors import Forbidden, InvalidInput, NotFound, problem_responses
from core.graphql import Connection, Info, connection, converted, page_size, parsed_id
from core.openapi import CACHE_STATUS_HEADER, BearerOperation
from core.outbox import publish
from core.pagination import (
    Cursor,
    cursor_position,
    decode_cursor,
    encode_cursor,
    is_count_key,
    is_time_key,
    rows_after_key,
    sort_key,
)
from core.settings import Settings
from core.shortcuts import Answer, Shortcut
from core.single_flight import SingleFlight
from features.users.users import User, UserNode, users_by_ids

# The outbox topic of video creates, updates and deletes (the search index follows it).
VIDEO_CHANGES = "videos"

# ---------------------------------------------------------------- tables


class Video(Table, tablename="videos"):
    id = UUID(primary_key=True)
    owner = ForeignKey(User, on_delete=OnDelete.cascade, null=False, index=True)
    title = Varchar(length=200)
    description = Text(default="")
    url = Varchar(length=2048)
    thumbnail_url = Varchar(length=2048, null=True, default=None)
    duration_seconds = Integer()
    tags = JSON(default=[])
    transcript = Text(null=True, default=None)
    # Lets lists say whether a transcript exists without reading up to 100k characters per row.
    has_transcript = Boolean(default=False)
    visibility = Varchar(length=10, default="public", index=True)
    like_count = Integer(default=0)
    view_count = BigInt(default=0)
    created_at = Timestamptz(default=TimestamptzNow(), index=True)
    updated_at = Timestamptz(default=TimestamptzNow())


class VideoTag(Table, tablename="video_tags"):
    """One row per tag of a video: what the `tag` filter searches (tags are also kept on the video)."""

    video = ForeignKey(Video, on_delete=OnDelete.cascade, null=False, index=True)
    tag = Varchar(length=40, index=True)


# ---------------------------------------------------------------- schemas

TAG_LENGTH = 40  # the video_tags column's length
Visibility = Literal["public", "unlisted", "private"]
Sort = Literal["newest", "oldest", "most_viewed", "most_liked"]
Title = Annotated[
    str,
    text.single_line(
        min_length=1,
        max_length=200,
        not_blank=True,
        description="Not blank; surrounding whitespace is trimmed.",
    ),
]
Description = Annotated[
    str, text.multi_line(max_length=5_000, description="Surrounding whitespace is trimmed.")
]
Transcript = Annotated[str, text.multi_line(max_length=100_000)]
Url = Annotated[
    str, text.single_line(max_length=2048, pattern=text.HTTP_URL, description="An absolute http(s) URL.")
]
Duration = Annotated[int, msgspec.Meta(ge=1, le=86_400, description="Seconds, 1 to 86,400.")]
# One rule for a tag, whether it is given to a video or looked for in a filter.
TAG = text.single_line(min_length=1, max_length=TAG_LENGTH, not_blank=True)
Tags = Annotated[
    list[Annotated[str, TAG]],
    msgspec.Meta(
        max_length=20,
        description="At most 20 tags. Each is stored trimmed and in lower case (which must fit 40 characters"
        " too), repeats once.",
    ),
]


class VideoCreate(msgspec.Struct, forbid_unknown_fields=True):
    title: Title
    url: Url
    duration_seconds: Duration
    description: Description = ""
    thumbnail_url: Url | None = None
    tags: Tags = msgspec.field(default_factory=list)
    transcript: Transcript | None = None
    visibility: Visibility = "public"


class VideoUpdate(msgspec.Struct, forbid_unknown_fields=True):
    title: Title | msgspec.UnsetType = msgspec.UNSET
    url: Url | msgspec.UnsetType = msgspec.UNSET
    duration_seconds: Duration | msgspec.UnsetType = msgspec.UNSET
    description: Description | msgspec.UnsetType = msgspec.UNSET
    thumbnail_url: Url | msgspec.UnsetType | None = msgspec.UNSET
    tags: Tags | msgspec.UnsetType = msgspec.UNSET
    transcript: Transcript | msgspec.UnsetType | None = msgspec.UNSET
    visibility: Visibility | msgspec.UnsetType = msgspec.UNSET


class VideoSummary(msgspec.Struct):
    """A video as lists show it: everything but the (possibly long) transcript."""

    id: uuid.UUID
    owner_id: uuid.UUID
    title: str
    description: str
    url: str
    thumbnail_url: str | None
    duration_seconds: int
    tags: list[str]
    visibility: Visibility
    like_count: int
    view_count: int
    has_transcript: bool
    created_at: datetime
    updated_at: datetime


class VideoRead(VideoSummary):
    transcript: str | None = None


class VideoPage(msgspec.Struct):
    items: list[VideoSummary]
    next_cursor: Annotated[
        str | None, msgspec.Meta(description="Pass as `cursor` for the next page; null on the last.")
    ] = None


# ---------------------------------------------------------------- rules: validation


def clean_title(raw: str) -> str:
    return raw.strip()  # Title's pattern has made sure something is left


def clean_tags(raw: list[str]) -> list[str]:
    tags: list[str] = []
    for index, tag in enumerate(t.strip().lower() for t in raw):
        if len(tag) > TAG_LENGTH:  # lower case can be longer: "İ".lower() is two characters
            raise InvalidInput(f"tags[{index}]", f"must be at most {TAG_LENGTH} characters in lower case")
        if tag not in tags:
            tags.append(tag)
    return tags


def clean_fields(data: VideoCreate | VideoUpdate) -> dict[str, Any]:
    """The validated, normalised column values a create or update sets."""
    values = {name: getattr(data, name) for name in data.__struct_fields__}
    values = {name: value for name, value in values.items() if value is not msgspec.UNSET}
    if "title" in values:
        values["title"] = clean_title(values["title"])
    if "tags" in values:
        values["tags"] = clean_tags(values["tags"])
    if "description" in values:
        values["description"] = values["description"].strip()
    return values


# ---------------------------------------------------------------- rules: reading and caching

_DETAIL_COLUMNS = (
    Video.id,
    Video.owner.as_alias("owner_id"),
    Video.title,
    Video.description,
    Video.url,
    Video.thumbnail_url,
    Video.duration_seconds,
    Video.tags,
    Video.visibility,
    Video.like_count,
    Video.view_count,
    Video.has_transcript,
    Video.created_at,
    Video.updated_at,
)


# The hot reads (a detail miss, a list page, a search page's videos) run as prepared queries: Piccolo
# builds their SQL once per shape, and rows become structs without the ORM's row processing.
_VIDEO_FIELDS = [column._alias or column._meta.name for column in _DETAIL_COLUMNS]
assert list(VideoSummary.__struct_fields__) == _VIDEO_FIELDS, "columns in the structs' field order"
_TAGS_AT = _VIDEO_FIELDS.index("tags")


def _video_from_values(values: Any, struct: type[VideoSummary] = VideoSummary) -> VideoSummary:
    """A prepared read's row (its values in _DETAIL_COLUMNS order, then the transcript for a detail)."""
    fields = list(values)
    tags = fields[_TAGS_AT]
    # Both engines hand JSON columns over as text.
    if isinstance(tags, (str, bytes)):
        fields[_TAGS_AT] = msgspec.json.decode(tags)
    return struct(*fields)


_DETAIL_READ = PreparedQuery(
    Video, lambda _, video_id: Video.select(*_DETAIL_COLUMNS, Video.transcript).where(Video.id == video_id)
)
# Shaped by the number of ids (a search page's, mostly 10 or 20).
_READ_BY_IDS = PreparedQuery(
    Video, lambda _, *video_ids: Video.select(*_DETAIL_COLUMNS).where(Video.id.is_in(list(video_ids)))
)


async def videos_by_ids(video_ids: list[uuid.UUID]) -> dict[uuid.UUID, VideoSummary]:
    """Current summaries of these videos, by id; ids with no video are absent (for search hits)."""
    if not video_ids:
        return {}
    rows = await _READ_BY_IDS.rows(*video_ids, shape=len(video_ids))
    summaries = (_video_from_values(row.values()) for row in rows)
    return {summary.id: summary for summary in summaries}


def can_see(video: VideoSummary, viewer: User | None) -> bool:
    return video.visibility != "private" or (viewer is not None and viewer.id == video.owner_id)


class VideoReads:
    """Video detail and list pages, served from the cache when warm.

    Detail entries depend on the video's generation, list pages on one generation shared by all
    lists; every write bumps the generations it affects (see ReadThroughCache).
    """

    LISTS = "videos:lists"

    def __init__(self, cache: Cache, settings: Settings) -> None:
        self.cache = ReadThroughCache(cache, SingleFlight(settings.single_flight_wait_seconds))
        self.detail_ttl = settings.video_cache_ttl_seconds
        self.list_ttl = settings.list_cache_ttl_seconds

    async def detail(self, video_id: uuid.UUID) -> tuple[CachedVideo | None, CacheStatus]:
        """The video as cached (None when no such video) and whether the cache had it (X-Cache)."""
        video = str(video_id)  # spelt once: a UUID's str() is a good part of a cached read's cost

        async def load() -> bytes:
            rows = await _DETAIL_READ.rows(video_id)
            # An empty entry remembers "no such video" too, so probing unknown ids stays cheap.
            return msgspec.json.encode(_video_from_values(rows[0].values(), VideoRead)) if rows else b""

        async def entry() -> bytes:
            return CachedVideo.entry(await load())

        cached, status = await self.cache.read(
            f"videos:video:{video}", (f"video:{video}",), entry, self.detail_ttl
        )
        return CachedVideo.of(cached), status

    async def changed(self, *video_ids: uuid.UUID, lists: bool = True) -> None:
        await self.cache.bump(
            *(f"video:{video_id}" for video_id in video_ids), *([self.LISTS] if lists else [])
        )

    async def list_page(self, query: dict[str, Any], load: Any) -> tuple[bytes, CacheStatus]:
        """A list page; first pages are cached per (query, viewer), later pages always come from the DB."""
        if query.get("cursor"):
            return msgspec.json.encode(await load()), "miss"
        fingerprint = hashlib.sha256(msgspec.json.encode(query, order="sorted")).hexdigest()[:32]

        async def encoded_page() -> bytes:
            return msgspec.json.encode(await load())

        return await self.cache.read(f"videos:list:{fingerprint}", (self.LISTS,), encoded_page, self.list_ttl)


class CachedVideo(NamedTuple):
    """A detail cache entry: the encoded VideoRead with its ETag and what decides who may see it, so a
    cached read neither decodes the video nor hashes it again.

    Stored as one line `<etag> <visibility> <owner id>` and the encoded video after it; an empty entry
    is "no such video".
    """

    encoded: bytes
    etag: str
    visibility: str
    owner_id: str

    @staticmethod
    def entry(encoded: bytes) -> bytes:
        if not encoded:
            return b""
        video = msgspec.json.decode(encoded, type=_WhoMaySee)
        etag = '"' + hashlib.sha256(encoded).hexdigest()[:32] + '"'
        return f"{etag} {video.visibility} {video.owner_id}\n".encode() + encoded

    @classmethod
    def of(cls, entry: bytes) -> CachedVideo | None:
        if not entry:
            return None
        head, _, encoded = entry.partition(b"\n")
        etag, visibility, owner_id = head.decode().split(" ")
        return cls(encoded, etag, visibility, owner_id)

    def visible_to(self, viewer: User | None) -> bool:
        # can_see's rule, on the entry's line rather than a decoded video.
        return self.visibility != "private" or (viewer is not None and str(viewer.id) == self.owner_id)


class _WhoMaySee(msgspec.Struct):
    visibility: str
    owner_id: uuid.UUID


async def visible_entry(
    reads: VideoReads, video_id: uuid.UUID, viewer: User | None
) -> tuple[CachedVideo, CacheStatus]:
    """The video's cache entry if this viewer may see it; 404 otherwise, so private ids do not leak."""
    video, cache_status = await reads.detail(video_id)
    if video is None or not video.visible_to(viewer):
        raise NotFound("No video with that id.")
    return video, cache_status


async def visible_video(
    reads: VideoReads, video_id: uuid.UUID, viewer: User | None
) -> tuple[VideoRead, bytes, CacheStatus]:
    """The video if this viewer may see it; 404 otherwise, so private ids do not leak."""
    video, cache_status = await visible_entry(reads, video_id, viewer)
    return msgspec.json.decode(video.encoded, type=VideoRead), video.encoded, cache_status


async def owned_video(reads: VideoReads, video_id: uuid.UUID, viewer: User) -> VideoRead:
    """The video if the viewer owns it: 403 when they can see it but do not own it, 404 when they can't."""
    video, _, _ = await visible_video(reads, video_id, viewer)
    if video.owner_id != viewer.id:
        raise Forbidden("Only the owner can change this video.")
    return video


# ---------------------------------------------------------------- rules: pagination

# The sort key a cursor of each order carries; counts are bounded by their columns' integer types.
_CURSOR_KEY_CHECKS = {
    "newest": is_time_key,
    "oldest": is_time_key,
    "most_viewed": is_count_key(64),
    "most_liked": is_count_key(32),
}

# (column, descending) for each sort; the video id breaks ties so the order is total.
_SORT_KEYS: dict[str, tuple[Any, bool]] = {
    "newest": (Video.created_at, True),
    "oldest": (Video.created_at, False),
    "most_viewed": (Video.view_count, True),
    "most_liked": (Video.like_count, True),
}


class ListQuery(msgspec.Struct, kw_only=True):
    # The rules REST's query parameters state, for GraphQL's filter (converted into this struct).
    limit: int = 20
    cursor: str | None = None
    sort: Sort = "newest"
    owner: uuid.UUID | None = None
    tag: Annotated[str, TAG] | None = None
    min_duration: Duration | None = None
    max_duration: Duration | None = None

    def filters_fingerprint(self) -> str:
        filters = [str(self.owner), self.tag, self.min_duration, self.max_duration]
        return hashlib.sha256(msgspec.json.encode(filters)).hexdigest()[:12]


class _ListShape(msgspec.Struct, frozen=True, array_like=True):
    """What changes a list page's SQL: the order, which filters are on, the page size."""

    sort: str
    with_own: bool  # the viewer's own videos of any visibility too
    owner: bool
    tag: bool
    min_duration: bool
    max_duration: bool
    after: bool
    limit: int


def _list_select(
    shape: _ListShape,
    viewer_id: Any,
    owner: Any,
    tag: Any,
    min_duration: Any,
    max_duration: Any,
    after_key: Any,
    after_id: Any,
) -> Any:
    column, descending = _SORT_KEYS[shape.sort]
    select = Video.select(*_DETAIL_COLUMNS)
    if shape.with_own:
        select = select.where((Video.visibility == "public") | (Video.owner == viewer_id))
    else:
        select = select.where(Video.visibility == "public")
    if shape.owner:
        select = select.where(Video.owner == owner)
    if shape.tag:
        select = select.where(Video.id.is_in(VideoTag.select(VideoTag.video).where(VideoTag.tag == tag)))
    if shape.min_duration:
        select = select.where(Video.duration_seconds >= min_duration)
    if shape.max_duration:
        select = select.where(Video.duration_seconds <= max_duration)
    if shape.after:
        select = select.where(rows_after_key(column, Video.id, descending, after_key, after_id))
    # One row more than the page tells whether another page follows.
    return select.order_by(column, Video.id, ascending=not descending).limit(shape.limit + 1)


_LIST_PAGE = PreparedQuery(Video, _list_select)


async def list_videos(query: ListQuery, viewer: User | None, *, public_only: bool = False) -> VideoPage:
    """A keyset page: rows strictly after the cursor's (sort key, id), so inserts never shift a walk."""
    if query.min_duration and query.max_duration and query.min_duration > query.max_duration:
        raise InvalidInput("min_duration", "must not exceed max_duration", source="query")
    fingerprint = query.filters_fingerprint()
    after_key = after_id = None
    if query.cursor:
        after = decode_cursor(query.cursor, query.sort, fingerprint, _CURSOR_KEY_CHECKS[query.sort])
        after_key, after_id = cursor_position(after)
    with_own = not public_only and viewer is not None
    shape = _ListShape(
        sort=query.sort,
        with_own=with_own,
        owner=query.owner is not None,
        tag=bool(query.tag),
        min_duration=query.min_duration is not None,
        max_duration=query.max_duration is not None,
        after=after_id is not None,
        limit=query.limit,
    )
    rows = await _LIST_PAGE.rows(
        viewer.id if with_own and viewer is not None else None,
        query.owner,
        query.tag.lower() if query.tag else None,
        query.min_duration,
        query.max_duration,
        after_key,
        after_id,
        shape=shape,
    )
    items = [_video_from_values(row.values()) for row in rows]
    next_cursor = None
    if len(items) > query.limit:
        items = items[: query.limit]
        next_cursor = list_cursor(query, items[-1])
    return VideoPage(items=items, next_cursor=next_cursor)


def list_cursor(query: ListQuery, video: VideoSummary) -> str:
    """The cursor of the page after this video, in this list's order and filters."""
    column, _ = _SORT_KEYS[query.sort]
    key = getattr(video, column._meta.name)
    return encode_cursor(Cursor(query.sort, query.filters_fingerprint(), sort_key(key), str(video.id)))


# ---------------------------------------------------------------- rules: writes


async def _replace_tags(video_id: uuid.UUID, tags: list[str]) -> None:
    await VideoTag.delete().where(VideoTag.video == video_id)
    if tags:
        await VideoTag.insert(*(VideoTag(video=video_id, tag=tag) for tag in tags))


async def create_video(
    owner: User, data: VideoCreate, engine: Engine, *, created_at: datetime | None = None
) -> uuid.UUID:
    values = clean_fields(data)
    if created_at is not None:
        values["created_at"] = values["updated_at"] = created_at
    video = Video(owner=owner.id, has_transcript=bool(values.get("transcript")), **values)
    async with write_transaction(engine):
        await video.save()
        await _replace_tags(video.id, values["tags"])
        await publish(VIDEO_CHANGES, str(video.id))
    return video.id


async def update_video(video_id: uuid.UUID, data: VideoUpdate, engine: Engine) -> None:
    values = clean_fields(data)
    if not values:
        return
    if "transcript" in values:
        values["has_transcript"] = bool(values["transcript"])
    values["updated_at"] = datetime.now(UTC)
    async with write_transaction(engine):
        await Video.update(
            {Video._meta.get_column_by_name(name): value for name, value in values.items()}
        ).where(Video.id == video_id)
        if "tags" in values:
            await _replace_tags(video_id, values["tags"])
        await publish(VIDEO_CHANGES, str(video_id))


async def delete_video(video_id: uuid.UUID, engine: Engine) -> None:
    async with write_transaction(engine):
        await Video.delete().where(Video.id == video_id)  # its likes and tags go with it (ON DELETE CASCADE)
        await publish(VIDEO_CHANGES, str(video_id))


async def add_video_of(
    owner: User, data: VideoCreate, engine: Engine, reads: VideoReads
) -> tuple[VideoRead, bytes]:
    """Create the video and show it as its detail reads now (and is cached)."""
    video_id = await create_video(owner, data, engine)
    await reads.changed(video_id)
    video, encoded, _ = await visible_video(reads, video_id, owner)
    return video, encoded


async def change_video_of(
    viewer: User, video_id: uuid.UUID, data: VideoUpdate, engine: Engine, reads: VideoReads
) -> tuple[VideoRead, bytes]:
    await owned_video(reads, video_id, viewer)
    await update_video(video_id, data, engine)
    await reads.changed(video_id)
    video, encoded, _ = await visible_video(reads, video_id, viewer)
    return video, encoded


async def remove_video_of(viewer: User, video_id: uuid.UUID, engine: Engine, reads: VideoReads) -> None:
    await owned_video(reads, video_id, viewer)
    await delete_video(video_id, engine)
    await reads.changed(video_id)


# ---------------------------------------------------------------- handlers

_OPTIONAL_AUTH = {"auth_optional": True}
# What the OpenAPI document shows as these handlers' answers.
_BAD_URL = InvalidInput("url", "must be an absolute http(s) URL")
_BAD_CURSOR = InvalidInput("cursor", "is not a cursor this API issued", source="query")
_NO_SUCH_VIDEO = NotFound("No video with that id.")
_NOT_THE_OWNER = Forbidden("Only the owner can change this video.")
_ETAG = ResponseHeader(
    name="ETag",
    value='"3f1d0c2a9b8e7f6a5d4c3b2a19087f6e"',
    documentation_only=True,
    required=True,
    description="Send it back in If-None-Match: while the video is unchanged the answer is 304.",
)

Limit = Annotated[int, QueryParameter(ge=1, le=100, description="Items per page, 1-100.")]
DurationFilter = Annotated[int | None, QueryParameter(ge=1, le=86_400)]
PageCursor = Annotated[
    str | None,
    QueryParameter(max_length=512, pattern=text.CURSOR, description="`next_cursor` of the page before."),
]
TagFilter = Annotated[str | None, text.query_text(TAG, description="Only videos with this tag.")]


def _json(
    encoded: bytes, *, cache_status: CacheStatus, status_code: int = 200, etag: str | None = None
) -> Response[bytes]:
    headers: dict[str, str] = {"X-Cache": cache_status}
    if etag:
        headers["ETag"] = etag
    return Response(encoded, media_type="application/json", status_code=status_code, headers=headers)


@post(
    "/videos",
    summary="Add a video to the catalogue",
    operation_class=BearerOperation,
    response_headers=[CACHE_STATUS_HEADER],
    responses=problem_responses(_BAD_URL, 401, 413, 415, 503),
)
async def add_video(
    request: Request[User, Token, Any],
    data: JSONBody[VideoCreate],
    db: NamedDependency[Engine],
    video_reads: NamedDependency[VideoReads],
) -> Response[VideoRead]:
    _, encoded = await add_video_of(request.user, data, db, video_reads)
    return _json(encoded, cache_status="miss", status_code=201)


@get(
    "/videos",
    opt=_OPTIONAL_AUTH,
    operation_class=OptionalAuthOperation,
    summary="Browse the catalogue",
    response_headers=[CACHE_STATUS_HEADER],
    responses=problem_responses(_BAD_CURSOR, 401, 503),
)
async def browse_videos(
    request: Request[Any, Any, Any],
    video_reads: NamedDependency[VideoReads],
    limit: Limit = 20,
    cursor: PageCursor = None,
    sort: Annotated[Sort, QueryParameter()] = "newest",
    owner: Annotated[uuid.UUID | None, QueryParameter()] = None,
    tag: TagFilter = None,
    min_duration: DurationFilter = None,
    max_duration: DurationFilter = None,
) -> Response[VideoPage]:
    """Public videos, plus the caller's own of any visibility. Pages follow `next_cursor`."""
    query = ListQuery(
        limit=limit,
        cursor=cursor,
        sort=sort,
        owner=owner,
        tag=tag,
        min_duration=min_duration,
        max_duration=max_duration,
    )
    viewer = optional_user(request)
    cache_key = {"list": "all", "viewer": str(viewer.id) if viewer else None, **msgspec.structs.asdict(query)}
    encoded, cache_status = await video_reads.list_page(cache_key, lambda: list_videos(query, viewer))
    return _json(encoded, cache_status=cache_status)


@get(
    "/videos/{video_id:uuid}",
    opt=_OPTIONAL_AUTH,
    operation_class=OptionalAuthOperation,
    summary="One video",
    response_headers=[CACHE_STATUS_HEADER, _ETAG],
    responses={
        304: ResponseSpec(None, description="Not modified: the ETag sent in If-None-Match is current."),
        **problem_responses(401, _NO_SUCH_VIDEO, 503),
    },
)
async def read_video(
    request: Request[Any, Any, Any],
    video_id: FromPath[uuid.UUID],
    video_reads: NamedDependency[VideoReads],
    if_none_match: Annotated[
        str | None,
        # Unbounded here (the server bounds header sizes), so it can never be a 400.
        HeaderParameter(name="If-None-Match", description="ETags of copies the client holds."),
    ] = None,
) -> Response[VideoRead]:
    """Public and unlisted videos for anyone, private ones for their owner. Supports `If-None-Match`."""
    video, cache_status = await visible_entry(video_reads, video_id, optional_user(request))
    answer = video_answer(video, cache_status, if_none_match)
    return Response(
        answer.body, status_code=answer.status, headers=dict(answer.text_headers), media_type=None
    )


class VideoAnswer(NamedTuple):
    """What a read of a video the viewer may see answers, the route's and the shortcut's alike."""

    status: int
    text_headers: list[tuple[str, str]]
    body: bytes


def video_answer(video: CachedVideo, cache_status: CacheStatus, if_none_match: str | None) -> VideoAnswer:
    if if_none_match and video.etag in if_none_match:
        return VideoAnswer(304, [("x-cache", cache_status), ("etag", video.etag)], b"")
    headers = [("x-cache", cache_status), ("etag", video.etag), ("content-type", "application/json")]
    return VideoAnswer(200, headers, video.encoded)


def video_read_shortcut(reads: VideoReads) -> Shortcut:
    """`GET /api/v1/videos/{id}` answered beneath Litestar (core.shortcuts) when the video is one the
    viewer may see; anything else (a 404, an id that is not one) is left to read_video."""

    async def answer(rest: str, viewer: User | None, scope: Scope) -> Answer | None:
        try:
            video_id = uuid.UUID(rest)  # as the route's `uuid` path type reads it
        except ValueError:
            return None
        sent = [value for name, value in scope["headers"] if name == b"if-none-match"]
        if len(sent) > 1:
            return None  # several If-None-Match headers: the route's header parsing decides
        try:
            video, cache_status = await visible_entry(reads, video_id, viewer)
        except NotFound:
            return None
        status, headers, body = video_answer(video, cache_status, sent[0].decode("latin-1") if sent else None)
        raw = [(name.encode(), value.encode("latin-1")) for name, value in headers]
        if status == 200:
            raw.append((b"content-length", str(len(body)).encode()))
        return Answer(status, raw, body)

    return Shortcut(prefix="/api/v1/videos/", path_template="/api/v1/videos/{video_id:uuid}", answer=answer)


@patch(
    "/videos/{video_id:uuid}",
    summary="Change a video (owner only)",
    operation_class=BearerOperation,
    response_headers=[CACHE_STATUS_HEADER],
    responses=problem_responses(_BAD_URL, 401, _NOT_THE_OWNER, _NO_SUCH_VIDEO, 413, 415, 503),
)
async def change_video(
    request: Request[User, Token, Any],
    video_id: FromPath[uuid.UUID],
    data: JSONBody[VideoUpdate],
    db: NamedDependency[Engine],
    video_reads: NamedDependency[VideoReads],
) -> Response[VideoRead]:
    _, encoded = await change_video_of(request.user, video_id, data, db, video_reads)
    return _json(encoded, cache_status="miss")


@delete(
    "/videos/{video_id:uuid}",
    summary="Delete a video (owner only)",
    operation_class=BearerOperation,
    responses=problem_responses(401, _NOT_THE_OWNER, _NO_SUCH_VIDEO, 415, 503),
)
async def remove_video(
    request: Request[User, Token, Any],
    video_id: FromPath[uuid.UUID],
    db: NamedDependency[Engine],
    video_reads: NamedDependency[VideoReads],
) -> None:
    await remove_video_of(request.user, video_id, db, video_reads)


@get(
    "/users/{user_id:uuid}/videos",
    opt={"exclude_from_auth": True},
    operation_class=PublicOperation,
    summary="A user's public videos",
    response_headers=[CACHE_STATUS_HEADER],
    responses=problem_responses(_BAD_CURSOR, NotFound("No user with that id."), 503),
)
async def videos_of_user(
    user_id: FromPath[uuid.UUID],
    video_reads: NamedDependency[VideoReads],
    limit: Limit = 20,
    cursor: PageCursor = None,
) -> Response[VideoPage]:
    if not await User.exists().where(User.id == user_id):
        raise NotFound("No user with that id.")
    query = ListQuery(limit=limit, cursor=cursor, owner=user_id)
    cache_key = {"list": "user", **msgspec.structs.asdict(query)}
    encoded, cache_status = await video_reads.list_page(
        cache_key, lambda: list_videos(query, None, public_only=True)
    )
    return _json(encoded, cache_status=cache_status)


# ---------------------------------------------------------------- GraphQL

SimilarLookup = Callable[[list[tuple[uuid.UUID, int]], User | None], Awaitable[list[list[VideoSummary]]]]
"""Videos most like each of these (video id, how many); the search feature supplies it (app.py wires
it as the `similar_videos` service), as the users feature gets AccountRemoval from the likes one."""

LikedAmong = Callable[[uuid.UUID, list[uuid.UUID]], Awaitable[set[uuid.UUID]]]
"""Which of these videos this viewer likes, for likedByMe; the likes feature supplies it (the
`liked_among` service), since it is built on this one and this one must not import it."""


@strawberry.type(name="Video", description="A video; private ones only ever reach their owner.")
class VideoNode:
    id: strawberry.ID
    owner_id: strawberry.Private[uuid.UUID]
    title: str
    description: str
    url: str
    thumbnail_url: str | None
    duration_seconds: int
    tags: list[str]
    visibility: str
    like_count: int
    view_count: int
    has_transcript: bool
    created_at: datetime
    updated_at: datetime
    read_transcript: strawberry.Private[str | msgspec.UnsetType | None] = msgspec.UNSET

    @classmethod
    def of(cls, video: VideoSummary) -> VideoNode:
        fields = {name: getattr(video, name) for name in VideoSummary.__struct_fields__}
        fields["id"] = strawberry.ID(str(video.id))
        transcript = video.transcript if isinstance(video, VideoRead) else msgspec.UNSET
        return cls(**fields, read_transcript=transcript)

    @strawberry.field(description="Up to 100,000 characters.")
    async def transcript(self, info: Info) -> str | None:
        if self.read_transcript is not msgspec.UNSET:
            return self.read_transcript
        reads: VideoReads = info.context.service("video_reads")
        video, _, _ = await visible_video(reads, uuid.UUID(self.id), info.context.viewer)
        return video.transcript

    @strawberry.field
    async def owner(self, info: Info) -> UserNode | None:
        owner = await info.context.loader("users.by_id", users_by_ids).load(self.owner_id)
        return UserNode.of(owner) if owner is not None else None

    @strawberry.field(description="Whether the signed-in viewer likes it (false when signed out).")
    async def liked_by_me(self, info: Info) -> bool:
        viewer = info.context.viewer
        if viewer is None:
            return False

        liked_among: LikedAmong = info.context.service("liked_among")

        async def likes(video_ids: list[uuid.UUID]) -> list[bool]:
            liked = await liked_among(viewer.id, video_ids)
            return [video_id in liked for video_id in video_ids]

        return await info.context.loader("videos.liked_by_me", likes).load(uuid.UUID(self.id))

    @strawberry.field(description="Videos most like this one (as search's `similar`), best first; 1-50.")
    async def similar(self, info: Info, first: int = 5) -> list[VideoNode]:
        wanted = page_size(first, SIMILAR_MAX)
        lookup: SimilarLookup = info.context.service("similar_videos")
        viewer = info.context.viewer

        async def similar_pages(keys: list[tuple[uuid.UUID, int]]) -> list[list[VideoSummary]]:
            return await lookup(keys, viewer)

        found = await info.context.loader("videos.similar", similar_pages).load((uuid.UUID(self.id), wanted))
        return [VideoNode.of(video) for video in found]


SIMILAR_MAX = 50


@strawberry.type
class VideoConnection(Connection[VideoNode]):
    pass


@strawberry.input(description="Narrows a list; every filter is optional.")
class VideoFilter:
    owner: strawberry.ID | None = None
    tag: str | None = None
    min_duration: int | None = None
    max_duration: int | None = None


@strawberry.input
class VideoInput:
    title: str
    url: str
    duration_seconds: int
    description: str | None = strawberry.UNSET
    thumbnail_url: str | None = strawberry.UNSET
    tags: list[str] | None = strawberry.UNSET
    transcript: str | None = strawberry.UNSET
    visibility: str | None = strawberry.field(
        default=strawberry.UNSET, description="public, unlisted or private."
    )


@strawberry.input(description="Only the fields given change; thumbnailUrl and transcript may be null.")
class VideoChanges:
    title: str | None = strawberry.UNSET
    url: str | None = strawberry.UNSET
    duration_seconds: int | None = strawberry.UNSET
    description: str | None = strawberry.UNSET
    thumbnail_url: str | None = strawberry.UNSET
    tags: list[str] | None = strawberry.UNSET
    transcript: str | None = strawberry.UNSET
    visibility: str | None = strawberry.UNSET


def _video_page(page: VideoPage, cursor_of: Callable[[VideoSummary], str]) -> VideoConnection:
    return connection(
        VideoConnection,
        [VideoNode.of(video) for video in page.items],
        [cursor_of(video) for video in page.items],
        page.next_cursor is not None,
    )


async def _cached_list(
    info: Info, key: dict[str, Any], query: ListQuery, public_only: bool
) -> VideoConnection:
    # The REST list's own cache entry: the same key, so either API warms it for the other.
    reads: VideoReads = info.context.service("video_reads")
    viewer = None if public_only else info.context.viewer
    encoded, _ = await reads.list_page(key, lambda: list_videos(query, viewer, public_only=public_only))
    return _video_page(msgspec.json.decode(encoded, type=VideoPage), lambda video: list_cursor(query, video))


async def user_videos(info: Info, user_id: uuid.UUID, first: int, after: str | None) -> VideoConnection:
    """A user's public videos, as GET /users/{id}/videos lists them (for User.videos)."""
    query = ListQuery(limit=page_size(first), cursor=after, owner=user_id)
    return await _cached_list(info, {"list": "user", **msgspec.structs.asdict(query)}, query, True)


async def _visible_or_none(info: Info, raw_id: strawberry.ID) -> VideoRead | None:
    try:
        video, _, _ = await visible_video(
            info.context.service("video_reads"), parsed_id(raw_id), info.context.viewer
        )
    except NotFound:
        return None  # missing and hidden look the same, as REST's 404 makes them
    return video


@strawberry.type
class VideoQueries:
    @strawberry.field(description="A video: public and unlisted to anyone, private to its owner; else null.")
    async def video(self, info: Info, id: strawberry.ID) -> VideoNode | None:
        video = await _visible_or_none(info, id)
        return VideoNode.of(video) if video is not None else None

    @strawberry.field(description="Public videos plus the viewer's own, as GET /api/v1/videos; first 1-100.")
    async def videos(
        self,
        info: Info,
        filter: VideoFilter | None = None,
        sort: Annotated[
            str, strawberry.argument(description="newest, oldest, most_viewed or most_liked.")
        ] = "newest",
        first: int = 20,
        after: str | None = None,
    ) -> VideoConnection:
        filters = {key: value for key, value in vars(filter).items() if value is not None} if filter else {}
        query = converted({**filters, "limit": page_size(first), "cursor": after, "sort": sort}, ListQuery)
        viewer = info.context.viewer
        key = {"list": "all", "viewer": str(viewer.id) if viewer else None, **msgspec.structs.asdict(query)}
        return await _cached_list(info, key, query, False)


def _engine_and_reads(info: Info) -> tuple[Engine, VideoReads]:
    return info.context.service("db"), info.context.service("video_reads")


@strawberry.type
class VideoMutations:
    @strawberry.mutation(description="Add a video (as POST /api/v1/videos, with the same rules).")
    async def create_video(self, info: Info, input: VideoInput) -> VideoNode:
        data = converted(input, VideoCreate)
        video, _ = await add_video_of(info.context.signed_in(), data, *_engine_and_reads(info))
        return VideoNode.of(video)

    @strawberry.mutation(description="Change a video: its owner only.")
    async def update_video(self, info: Info, id: strawberry.ID, input: VideoChanges) -> VideoNode:
        video_id, data = parsed_id(id), converted(input, VideoUpdate)
        video, _ = await change_video_of(info.context.signed_in(), video_id, data, *_engine_and_reads(info))
        return VideoNode.of(video)

    @strawberry.mutation(description="Delete a video: its owner only. True once it is gone.")
    async def delete_video(self, info: Info, id: strawberry.ID) -> bool:
        await remove_video_of(info.context.signed_in(), parsed_id(id), *_engine_and_reads(info))
        return True


router = Router(
    path="/api/v1",
    route_handlers=[
        add_video,
        browse_videos,
        read_video,
        change_video,
        remove_video,
        videos_of_user,
    ],
    tags=["videos"],
)
