"""Search over the catalogue: semantic, keyword and hybrid search, similar videos, suggestions, the page.

The index follows the database (features/search_index). Hits are re-read from the database, so what a
result shows (and who may see it) is never older than the index.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import strawberry
from litestar import Request, Response, Router, get
from litestar.datastructures import CacheControlHeader
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter
from litestar.response import File
from litestar.static_files import create_static_files_router
from piccolo.querystring import QueryString

from core import text
from core.auth import OptionalAuthOperation, optional_user
from core.cache import CacheStatus, ReadThroughCache
from core.errors import InvalidInput, InvalidValue, NotFound, Problem, problem_responses
from core.facets import Bucket, count_buckets, count_values
from core.graphql import Connection, Info, connection, converted, page_size, parsed_id
from core.highlights import (
    DEFAULT_HIGHLIGHTING,
    DEFAULT_LENGTH,
    Highlight,
    Highlighter,
    Highlighting,
    HighlightLength,
    HighlightPost,
    HighlightPre,
    Match,
    query_terms,
)
from core.openapi import CACHE_STATUS_HEADER
from core.outbox import OutboxEvent, publish
from core.pagination import cursor_offset, offset_cursor
from core.ranking import CatalogueSize, fuse_linear
from core.settings import Settings
from core.typos import RULE as TYPO_RULE
from core.typos import corrected, corrections
from core.vectors import QueryResult, VectorIndex
from core.vocabulary import Vocabulary
from features.search_index.search_index import MAX_INDEXED_CHARACTERS, SearchIndexer
from features.users.users import User
from features.videos.videos import (
    VIDEO_CHANGES,
    TagFilter,
    Video,
    VideoNode,
    VideoReads,
    VideoSummary,
    can_see,
    videos_by_ids,
)

logger = logging.getLogger("clipdex.search")

# ---------------------------------------------------------------- schemas

Mode = Literal["hybrid", "semantic", "keyword"]
_QUERY_MODES = {"hybrid": "HYBRID", "semantic": "DENSE", "keyword": "SPARSE"}
MAX_RESULTS = 500  # how deep a client may page into one query's ranking


class HitHighlights(msgspec.Struct):
    title: Highlight
    description: Highlight
    transcript: Annotated[
        Highlight | None, msgspec.Meta(description="An excerpt around the best match; null without one.")
    ] = None


class SearchHit(VideoSummary, omit_defaults=True):  # highlights omitted where a hit has none
    score: Annotated[
        float, msgspec.Meta(description="Relevance; higher is better. Comparable within one query.")
    ]
    highlights: Annotated[
        HitHighlights | None,
        msgspec.Meta(description="Snippets with the query's words marked (search results only)."),
    ] = None


class SearchPage(msgspec.Struct):
    items: list[SearchHit]
    next_cursor: str | None = None
    facets: SearchFacets | msgspec.UnsetType = msgspec.UNSET  # only when asked for (facets=)
    corrected_query: Annotated[
        str | None,
        msgspec.Meta(description="The query with misspelt words corrected, as BM25 used it; null if none."),
    ] = None


class SimilarVideos(msgspec.Struct):
    items: list[SearchHit]


class TagCount(msgspec.Struct):
    value: Annotated[str, msgspec.Meta(description="A tag; search with tag=<value> to filter by it.")]
    count: int


class DurationCount(msgspec.Struct):
    bucket: Annotated[
        str,
        msgspec.Meta(
            description="under_5_min (duration < 300 s), 5_to_20_min (300 <= d < 1200), 20_to_60_min"
            " (1200 <= d < 3600) or over_60_min (d >= 3600)."
        ),
    ]
    count: int
    min_duration: Annotated[int | None, msgspec.Meta(description="The filters that select this bucket.")]
    max_duration: int | None


class SearchFacets(msgspec.Struct):
    candidates: Annotated[
        int,
        msgspec.Meta(
            description="How many videos the counts are over: every candidate of the ranking this page was"
            " cut from (the best 100 for offsets below 100, 200 below 200, ... up to 500) that the caller"
            " may see."
        ),
    ]
    tags: list[TagCount] | msgspec.UnsetType = msgspec.UNSET
    duration: list[DurationCount] | msgspec.UnsetType = msgspec.UNSET


SUGGEST_MAX_QUERY, SUGGEST_MAX_LIMIT = 100, 20
SUGGEST_QUERY = text.multi_line(
    min_length=1,
    max_length=SUGGEST_MAX_QUERY,
    not_blank=True,
    description=f"What was typed; 1-{SUGGEST_MAX_QUERY} characters.",
)


class Suggestion(msgspec.Struct):
    text: Annotated[str, msgspec.Meta(description="The title or tag as written.")]
    kind: Literal["title", "tag"]
    marked: Annotated[str, msgspec.Meta(description="`text` HTML-escaped, the typed words marked.")]
    matches: list[Match]
    video_count: Annotated[int, msgspec.Meta(description="Videos the caller may see with this text.")]
    video_id: Annotated[uuid.UUID | None, msgspec.Meta(description="A title's video; null for tags.")]


class Suggestions(msgspec.Struct):
    items: list[Suggestion]


# ---------------------------------------------------------------- rules: querying


def _quoted(field: str, value: str) -> str:
    # The filter language reads a backslash as an escape: doubled, a tag ending in one does not leave
    # the string open (a 503), and `a\'b` does not turn into `a'b`.
    escaped = value.replace("\\", "\\\\")
    for quote in ("'", '"'):
        if quote not in value:
            return f"{quote}{escaped}{quote}"
    raise InvalidInput(field, "must not contain both ' and \"", source="query")


class SearchFilters(msgspec.Struct, kw_only=True):
    tag: str | None = None
    owner: uuid.UUID | None = None
    min_duration: int | None = None
    max_duration: int | None = None

    def expression(self, viewer: User | None) -> str:
        """The index filter: what the viewer may see, narrowed by the client's filters."""
        if self.min_duration and self.max_duration and self.min_duration > self.max_duration:
            raise InvalidInput("min_duration", "must not exceed max_duration", source="query")
        visible = "visibility = 'public'"
        if viewer is not None:
            visible = f"({visible} OR owner = '{viewer.id}')"
        clauses = [visible]
        if self.tag:
            clauses.append(f"tags CONTAINS {_quoted('tag', self.tag.strip().lower())}")
        if self.owner:
            clauses.append(f"owner = '{self.owner}'")
        if self.min_duration is not None:
            clauses.append(f"duration_seconds >= {self.min_duration}")
        if self.max_duration is not None:
            clauses.append(f"duration_seconds <= {self.max_duration}")
        return " AND ".join(clauses)


# What `q` may be: its limits are on the text as sent, which is searched with each run of whitespace
# (tabs and line breaks of pasted text included) as one space.
QUERY = text.multi_line(
    min_length=1, max_length=500, not_blank=True, description="What to look for; 1-500 characters."
)


def normalise_query(raw: str) -> str:
    query = re.sub(r"\s+", " ", raw).strip()
    if not query:  # QUERY's pattern refuses a blank q before this; a caller with rules of its own may not
        raise InvalidInput("q", "must not be empty", source="query")
    return query


class SearchUnavailable(Problem):
    def __init__(self) -> None:
        super().__init__(
            503,
            "Search is temporarily unavailable; the catalogue itself still answers. Try again shortly.",
            kind="search-unavailable",
            headers={"Retry-After": "5"},
        )


def _listed_for(video: VideoSummary, viewer: User | None) -> bool:
    return video.visibility == "public" or (viewer is not None and viewer.id == video.owner_id)


async def _transcript_beginnings(video_ids: list[uuid.UUID]) -> dict[uuid.UUID, str]:
    """The indexed part of these videos' transcripts (what BM25 matched), read in the database: a
    transcript can hold 100,000 characters."""
    if not video_ids:
        return {}
    beginning = QueryString(f"substr({{}}, 1, {MAX_INDEXED_CHARACTERS})", Video.transcript, alias="beginning")
    rows = await Video.select(Video.id, beginning).where(Video.id.is_in(video_ids))
    return {uuid.UUID(str(row["id"])): row["beginning"] or "" for row in rows}


async def _highlights(hits: list[SearchHit], highlighter: Highlighter) -> None:
    # Transcripts only for hits that have one, and only when the query has a word to find there.
    with_transcript = [hit.id for hit in hits if hit.has_transcript] if highlighter.terms else []
    transcripts = await _transcript_beginnings(with_transcript)
    for hit in hits:
        hit.highlights = HitHighlights(
            title=highlighter.whole(hit.title),
            description=highlighter.whole(hit.description),
            transcript=highlighter.where_matched(transcripts[hit.id]) if hit.id in transcripts else None,
        )


async def _hits(
    results: list[QueryResult], viewer: User | None, highlighter: Highlighter | None = None
) -> list[SearchHit]:
    """Hits as the database shows them now, dropping any the viewer may no longer see."""
    ids = [uuid.UUID(result.id) for result in results]
    current = await videos_by_ids(ids)
    stale = [str(video_id) for video_id in ids if video_id not in current]
    if stale:
        # Deleted with their owner's account (a cascade the outbox never saw): tell the indexer. Once:
        # while the index is behind, every search meets these ids, and would add rows at search rate.
        queued = await OutboxEvent.select(OutboxEvent.key).where(
            (OutboxEvent.topic == VIDEO_CHANGES) & OutboxEvent.key.is_in(stale)
        )
        if missing := sorted(set(stale) - {row["key"] for row in queued}):
            await publish(VIDEO_CHANGES, *missing)
    hits = []
    for result in results:
        video = current.get(uuid.UUID(result.id))
        # Search lists public videos and the viewer's own: an unlisted one the index still has as
        # public (its change not indexed yet) is for people with the link, not for search.
        if video is not None and can_see(video, viewer) and _listed_for(video, viewer):
            hits.append(SearchHit(**msgspec.structs.asdict(video), score=round(result.score, 6)))
    if highlighter is not None:
        await _highlights(hits, highlighter)
    return hits


async def ranked_ids(
    index: VectorIndex,
    catalogue_size: CatalogueSize,
    query: str,
    mode: Mode,
    filter_: str,
    depth: int,
    keywords: str | None = None,
) -> list[QueryResult]:
    """The ranking of a query; `keywords` (default: the query) is what BM25 looks for."""
    keywords = keywords or query
    if mode != "hybrid":
        text = query if mode == "semantic" else keywords
        return await index.query(data=text, top_k=depth, filter=filter_, query_mode=_QUERY_MODES[mode])
    dense, sparse, documents = await asyncio.gather(
        index.query(data=query, top_k=depth, filter=filter_, query_mode="DENSE"),
        index.query(data=keywords, top_k=depth, filter=filter_, query_mode="SPARSE"),
        catalogue_size(),
    )
    return fuse_linear(dense, sparse, documents)[:depth]


def keywords_for(query: str, fixes: dict[str, str]) -> str:
    """What BM25 looks for: the query and its corrections. The typed words stay: one unknown to the
    public vocabulary may be in the viewer's own private video, and a word no video has scores nothing."""
    return " ".join([query, *fixes.values()])


# Facets: counts over the whole candidate set, most frequent first; choosing a value is a filter.
FACETS = ("tags", "duration")
TOP_TAGS = 20
# Bounds inclusive, in seconds, as the min_duration and max_duration filters take them.
DURATION_BUCKETS = (
    Bucket("under_5_min", None, 299),
    Bucket("5_to_20_min", 300, 1199),
    Bucket("20_to_60_min", 1200, 3599),
    Bucket("over_60_min", 3600, None),
)


# What one `facets` value may be (the document states it; a value outside it is a 400 naming facets).
FACET_LIST = r"^(tags|duration)(,(tags|duration))*$"
FACET_LIST_LENGTH = 40
FacetList = Annotated[str, msgspec.Meta(pattern=FACET_LIST, max_length=FACET_LIST_LENGTH)]


def facet_names(requested: list[str] | None) -> tuple[str, ...]:
    """The facets asked for, as `facets=tags,duration` or `facets=tags&facets=duration`."""
    names = {name.strip() for value in requested or [] for name in value.split(",") if name.strip()}
    if unknown := sorted(names - set(FACETS)):
        raise InvalidInput("facets", f"has no facet {unknown[0]!r}; use tags, duration", source="query")
    return tuple(name for name in FACETS if name in names)


async def count_facets(
    results: list[QueryResult], viewer: User | None, names: tuple[str, ...]
) -> SearchFacets:
    """Facets over every candidate, as the database has it now; counts only what _hits would show the
    viewer, so a video the viewer may not see is never counted, even while the index is behind."""
    current = await videos_by_ids([uuid.UUID(result.id) for result in results])
    shown = [video for video in current.values() if can_see(video, viewer) and _listed_for(video, viewer)]
    facets = SearchFacets(candidates=len(shown))
    if "tags" in names:
        facets.tags = [TagCount(tag, n) for tag, n in count_values((video.tags for video in shown), TOP_TAGS)]
    if "duration" in names:
        durations = (video.duration_seconds for video in shown)
        facets.duration = [
            DurationCount(bucket.name, n, bucket.low, bucket.high)
            for bucket, n in count_buckets(durations, DURATION_BUCKETS)
        ]
    return facets


async def search_videos(
    index: VectorIndex,
    catalogue_size: CatalogueSize,
    query: str,
    mode: Mode,
    filters: SearchFilters,
    viewer: User | None,
    offset: int,
    limit: int,
    highlighting: Highlighting = DEFAULT_HIGHLIGHTING,
    vocabulary: Vocabulary | None = None,
    facets: tuple[str, ...] = (),
) -> SearchPage:
    # A fixed ranking depth per block of 100 keeps consecutive pages of one query in one ranking.
    depth = min(MAX_RESULTS, 100 * math.ceil((offset + limit + 1) / 100))
    filter_ = filters.expression(viewer)
    fixes = (
        {}
        if vocabulary is None or mode == "semantic"
        else corrections(query, (await vocabulary.current()).typos)
    )
    keywords = keywords_for(query, fixes)
    try:
        results = await ranked_ids(index, catalogue_size, query, mode, filter_, depth, keywords)
    except Exception as exc:
        logger.warning("search index query failed: %r", exc)
        raise SearchUnavailable() from exc
    window = results[offset : offset + limit]
    more = len(results) > offset + limit
    highlighter = Highlighter(query_terms(keywords), highlighting)
    return SearchPage(
        items=await _hits(window, viewer, highlighter),
        next_cursor=offset_cursor(offset + limit) if more else None,
        facets=await count_facets(results, viewer, facets) if facets else msgspec.UNSET,
        corrected_query=corrected(query.lower(), fixes) if fixes else None,
    )


# Similar videos: neighbours of the video's own dense vector (by meaning), fused as hybrid search fuses
# with a BM25 query of its title and tags (what it says it is about). Chosen on the similar labels
# (tests/features/similar_relevance.json, 117 demo videos): nDCG@10 0.816 against 0.705 for the dense
# vector alone; BM25 over title, tags and description scored 0.769, pseudo-relevance feedback (Rocchio
# over the 3-10 nearest) 0.67-0.70. A fixed depth keeps a shorter list a prefix of a longer one.
SIMILAR_DEPTH = 100


def similar_keywords(title: str, tags: list[str]) -> str:
    return " ".join([title, *tags])


async def similar_ranking(
    index: VectorIndex, catalogue_size: CatalogueSize, video_id: str, keywords: str, filter_: str
) -> list[QueryResult]:
    """Videos most like this indexed one, best first, itself excluded; [] while it is not indexed."""
    found = await index.fetch([video_id], include_vectors=True, include_metadata=False, include_data=False)
    record = found[0] if found else None
    if record is None or record.vector is None:
        return []
    dense, sparse, documents = await asyncio.gather(
        index.query(vector=record.vector, top_k=SIMILAR_DEPTH, filter=filter_, query_mode="DENSE"),
        index.query(data=keywords, top_k=SIMILAR_DEPTH, filter=filter_, query_mode="SPARSE"),
        catalogue_size(),
    )
    return [result for result in fuse_linear(dense, sparse, documents) if result.id != video_id]


async def similar_videos(
    index: VectorIndex, catalogue_size: CatalogueSize, video_id: uuid.UUID, viewer: User | None, limit: int
) -> SimilarVideos:
    [found] = await similar_for_many(index, catalogue_size, [(video_id, limit)], viewer)
    if found is None:
        raise NotFound("No video with that id.")
    return SimilarVideos(items=found)


async def similar_for_many(
    index: VectorIndex,
    catalogue_size: CatalogueSize,
    wanted: list[tuple[uuid.UUID, int]],
    viewer: User | None,
) -> list[list[SearchHit] | None]:
    """The similar videos of each (video id, how many), None for a video the viewer may not see: one
    read of the videos, their rankings side by side, one read of all the hits (GraphQL's pages)."""
    sources = await videos_by_ids(list({video_id for video_id, _ in wanted}))
    filter_ = SearchFilters().expression(viewer)

    async def ranking(video_id: uuid.UUID, limit: int) -> list[QueryResult] | None:
        video = sources.get(video_id)
        if video is None or not can_see(video, viewer):
            return None
        keywords = similar_keywords(video.title, video.tags)
        return (await similar_ranking(index, catalogue_size, str(video_id), keywords, filter_))[:limit]

    try:
        rankings = await asyncio.gather(*(ranking(video_id, limit) for video_id, limit in wanted))
    except Exception as exc:
        logger.warning("search index unavailable for similar videos: %r", exc)
        raise SearchUnavailable() from exc
    hits = await _hits([result for found in rankings for result in found or []], viewer)
    shown = {hit.id: hit for hit in hits}
    # One video may be similar to several: each list keeps the score of its own ranking.
    return [
        None
        if found is None
        else [
            msgspec.structs.replace(shown[uuid.UUID(result.id)], score=round(result.score, 6))
            for result in found
            if uuid.UUID(result.id) in shown
        ]
        for found in rankings
    ]


def search_cache_key(
    query: str,
    mode: Mode,
    limit: int,
    offset: int,
    filters: SearchFilters,
    viewer: User | None,
    facets: tuple[str, ...],
    typo_tolerance: bool,
    highlighting: Highlighting,
) -> str:
    """The cache key of one search's page."""
    key_parts = [
        query.lower(),
        mode,
        limit,
        offset,
        msgspec.structs.asdict(filters),
        str(viewer.id) if viewer else None,
        facets,
        typo_tolerance,
        msgspec.structs.astuple(highlighting),
    ]
    digest = hashlib.sha256(msgspec.json.encode(key_parts, enc_hook=str)).hexdigest()[:32]
    return f"search:{digest}"


# Hits show the videos as the database has them, so a cached page is stale after any video write (a
# title, a like, a video made private), not only after the index changed: it depends on both. Video
# writes bump the lists generation at once, before the outbox gets the change into the index.
SEARCH_PAGE_DEPENDS_ON = (SearchIndexer.INDEX_GENERATION, VideoReads.LISTS)


class SearchRequest(msgspec.Struct, kw_only=True):
    """One search as a client asks for it, through either API."""

    q: str
    mode: Mode = "hybrid"
    limit: int = 10
    cursor: str | None = None
    filters: SearchFilters = msgspec.field(default_factory=SearchFilters)
    facets: list[str] | None = None
    typo_tolerance: bool = True
    highlighting: Highlighting = DEFAULT_HIGHLIGHTING


@dataclass(frozen=True)
class Searching:
    """What a search runs on (the app's objects), and how long its pages are cached."""

    index: VectorIndex
    catalogue_size: CatalogueSize
    cache: ReadThroughCache
    vocabulary: Vocabulary
    ttl_seconds: int


async def cached_search(
    asked: SearchRequest, viewer: User | None, searching: Searching
) -> tuple[bytes, CacheStatus]:
    """The encoded SearchPage, from the cache while no video or index change made it stale."""
    query = normalise_query(asked.q)
    offset = cursor_offset(asked.cursor, MAX_RESULTS)
    wanted_facets = facet_names(asked.facets)
    key = search_cache_key(
        query,
        asked.mode,
        asked.limit,
        offset,
        asked.filters,
        viewer,
        wanted_facets,
        asked.typo_tolerance,
        asked.highlighting,
    )

    async def compute() -> bytes:
        typos = searching.vocabulary if asked.typo_tolerance else None
        page = await search_videos(
            searching.index,
            searching.catalogue_size,
            query,
            asked.mode,
            asked.filters,
            viewer,
            offset,
            asked.limit,
            asked.highlighting,
            typos,
            facets=wanted_facets,
        )
        return msgspec.json.encode(page)

    return await searching.cache.read(key, SEARCH_PAGE_DEPENDS_ON, compute, searching.ttl_seconds)


async def suggestions(
    vocabulary: Vocabulary, q: str, viewer: User | None, limit: int, pre: str, post: str
) -> Suggestions:
    """Completions of what was typed, from videos this viewer may see."""
    query = normalise_query(q)
    completions = (await vocabulary.current()).completions
    found = completions.complete(query, str(viewer.id) if viewer else None, limit, pre, post)
    return Suggestions(
        items=[
            Suggestion(
                c.text,
                c.kind,
                c.marked,
                c.matches,
                c.video_count,
                uuid.UUID(c.document) if c.document else None,
            )
            for c in found
        ]
    )


# ---------------------------------------------------------------- handlers


@get(
    "/search",
    opt={"auth_optional": True},
    operation_class=OptionalAuthOperation,
    summary="Search videos by meaning, by keyword, or both",
    response_headers=[CACHE_STATUS_HEADER],
    responses=problem_responses(
        InvalidValue("q", "is required", source="query"), 401, SearchUnavailable(), 503
    ),
)
async def search(
    request: Request[Any, Any, Any],
    search_index: NamedDependency[VectorIndex],
    catalogue_size: NamedDependency[CatalogueSize],
    search_cache: NamedDependency[ReadThroughCache],
    settings: NamedDependency[Settings],
    vocabulary: NamedDependency[Vocabulary],
    q: Annotated[str, text.query_text(QUERY)],
    mode: Annotated[Mode, QueryParameter(description="hybrid (default), semantic or keyword.")] = "hybrid",
    limit: Annotated[int, QueryParameter(ge=1, le=50)] = 10,
    cursor: Annotated[
        str | None,
        QueryParameter(max_length=200, pattern=text.CURSOR, description="`next_cursor` of the page before."),
    ] = None,
    tag: TagFilter = None,
    owner: Annotated[uuid.UUID | None, QueryParameter()] = None,
    min_duration: Annotated[int | None, QueryParameter(ge=1, le=86_400)] = None,
    max_duration: Annotated[int | None, QueryParameter(ge=1, le=86_400)] = None,
    facets: Annotated[
        list[FacetList] | None,
        QueryParameter(
            description="Counts beside the hits, over the whole candidate set: tags (the top 20) and/or"
            " duration (under_5_min: < 300 s, 5_to_20_min: 300-1199 s, 20_to_60_min: 1200-3599 s,"
            " over_60_min: >= 3600 s). Comma-separated or repeated.",
            max_items=len(FACETS),
            # Litestar documents no constraint of a list's items: FacetList's, stated for it.
            schema_extra={"items": {"type": "string", "pattern": FACET_LIST, "maxLength": FACET_LIST_LENGTH}},
        ),
    ] = None,
    typo_tolerance: Annotated[
        bool, QueryParameter(description=f"Keyword and hybrid modes: {TYPO_RULE}")
    ] = True,
    highlight_length: HighlightLength = DEFAULT_LENGTH,
    highlight_pre: HighlightPre = "<mark>",
    highlight_post: HighlightPost = "</mark>",
) -> Response[SearchPage]:
    """Public videos, plus the caller's own. Results are cached briefly, never past an index change.

    Each hit carries highlights: snippets of its title, description and (when a word matched there)
    transcript, with the query's words marked as BM25 matched them, typo corrections included."""
    encoded, cache_status = await cached_search(
        SearchRequest(
            q=q,
            mode=mode,
            limit=limit,
            cursor=cursor,
            filters=SearchFilters(tag=tag, owner=owner, min_duration=min_duration, max_duration=max_duration),
            facets=facets,
            typo_tolerance=typo_tolerance,
            highlighting=Highlighting(highlight_length, highlight_pre, highlight_post),
        ),
        optional_user(request),
        Searching(search_index, catalogue_size, search_cache, vocabulary, settings.search_cache_ttl_seconds),
    )
    return Response(encoded, media_type="application/json", headers={"X-Cache": cache_status})


@get(
    "/videos/{video_id:uuid}/similar",
    opt={"auth_optional": True},
    operation_class=OptionalAuthOperation,
    summary="Videos most like this one",
    responses=problem_responses(
        InvalidValue("limit", "must be at most 50", source="query"),
        401,
        NotFound("No video with that id."),
        SearchUnavailable(),
        503,
    ),
)
async def similar(
    request: Request[Any, Any, Any],
    video_id: FromPath[uuid.UUID],
    search_index: NamedDependency[VectorIndex],
    catalogue_size: NamedDependency[CatalogueSize],
    limit: Annotated[int, QueryParameter(ge=1, le=50)] = 10,
) -> SimilarVideos:
    """Videos most like this one, by meaning and by the words of its title and tags, excluding the
    video itself, under the same visibility rules as search."""
    return await similar_videos(search_index, catalogue_size, video_id, optional_user(request), limit)


@get(
    "/search/suggest",
    opt={"auth_optional": True},
    operation_class=OptionalAuthOperation,
    summary="Completions of a partly typed query: titles and tags",
    # 503: with a token, its account is read from the database.
    responses=problem_responses(InvalidValue("q", "is required", source="query"), 401, 503),
)
async def suggest(
    request: Request[Any, Any, Any],
    vocabulary: NamedDependency[Vocabulary],
    q: Annotated[str, text.query_text(SUGGEST_QUERY)],
    limit: Annotated[int, QueryParameter(ge=1, le=SUGGEST_MAX_LIMIT)] = 8,
    highlight_pre: HighlightPre = "<mark>",
    highlight_post: HighlightPost = "</mark>",
) -> Suggestions:
    """Titles and tags holding the typed words (the last one as a prefix, both typo-tolerant), from
    videos the caller may see, most relevant first: those that start with the typed words before those
    that hold them elsewhere, then tags, then the most videos, then the shortest. As fresh as the
    search index (seconds behind at most)."""
    return await suggestions(vocabulary, q, optional_user(request), limit, highlight_pre, highlight_post)


# ---------------------------------------------------------------- GraphQL


@strawberry.type(name="Match")
class MatchNode:
    start: int
    length: int


@strawberry.type(name="Highlight")
class HighlightNode:
    snippet: str
    marked: str = strawberry.field(description="`snippet` HTML-escaped, the matches marked.")
    matches: list[MatchNode]

    @classmethod
    def of(cls, highlight: Highlight) -> HighlightNode:
        matches = [MatchNode(start=m.start, length=m.length) for m in highlight.matches]
        return cls(snippet=highlight.snippet, marked=highlight.marked, matches=matches)


@strawberry.type(name="HitHighlights")
class HitHighlightsNode:
    title: HighlightNode
    description: HighlightNode
    transcript: HighlightNode | None = strawberry.field(
        description="Around the best match; null without one."
    )


@strawberry.type(name="SearchHit")
class SearchHitNode:
    score: float = strawberry.field(description="Relevance; higher is better. Comparable within one query.")
    highlights: HitHighlightsNode | None = strawberry.field(description="Search results only.")
    video: VideoNode

    @classmethod
    def of(cls, hit: SearchHit) -> SearchHitNode:
        marks = hit.highlights
        highlights = (
            HitHighlightsNode(
                title=HighlightNode.of(marks.title),
                description=HighlightNode.of(marks.description),
                transcript=HighlightNode.of(marks.transcript) if marks.transcript else None,
            )
            if marks is not None
            else None
        )
        return cls(score=hit.score, highlights=highlights, video=VideoNode.of(hit))


@strawberry.type(name="TagCount")
class TagCountNode:
    value: str
    count: int


@strawberry.type(name="DurationCount")
class DurationCountNode:
    bucket: str = strawberry.field(description="under_5_min, 5_to_20_min, 20_to_60_min or over_60_min.")
    count: int
    min_duration: int | None
    max_duration: int | None


@strawberry.type(name="SearchFacets")
class SearchFacetsNode:
    candidates: int
    tags: list[TagCountNode] | None
    duration: list[DurationCountNode] | None


@strawberry.type
class SearchResults(Connection[SearchHitNode]):
    facets: SearchFacetsNode | None = strawberry.field(
        default=None, description="Only when asked for (facets)."
    )
    corrected_query: str | None = strawberry.field(
        default=None, description="The query as BM25 used it; null if unchanged."
    )


@strawberry.type(name="Suggestion")
class SuggestionNode:
    text: str
    kind: str = strawberry.field(description="title or tag.")
    marked: str
    matches: list[MatchNode]
    video_count: int
    video_id: strawberry.ID | None = strawberry.field(description="A title's video; null for tags.")


@strawberry.input
class SearchFilter:
    tag: str | None = strawberry.UNSET
    owner: strawberry.ID | None = strawberry.UNSET
    min_duration: int | None = strawberry.UNSET
    max_duration: int | None = strawberry.UNSET


def _facets(facets: SearchFacets | msgspec.UnsetType) -> SearchFacetsNode | None:
    if isinstance(facets, msgspec.UnsetType):
        return None
    tags = None if isinstance(facets.tags, msgspec.UnsetType) else facets.tags
    durations = None if isinstance(facets.duration, msgspec.UnsetType) else facets.duration
    return SearchFacetsNode(
        candidates=facets.candidates,
        tags=[TagCountNode(value=t.value, count=t.count) for t in tags] if tags is not None else None,
        duration=[DurationCountNode(**msgspec.structs.asdict(d)) for d in durations]
        if durations is not None
        else None,
    )


def _searching(info: Info) -> Searching:
    settings: Settings = info.context.service("settings")
    return Searching(
        info.context.service("search_index"),
        info.context.service("catalogue_size"),
        info.context.service("search_cache"),
        info.context.service("vocabulary"),
        settings.search_cache_ttl_seconds,
    )


# The REST limits of each: GraphQL's `first` is REST's `limit`.
SearchLimit = Annotated[int, msgspec.Meta(ge=1, le=50)]


class _GraphQLSearch(SearchRequest, kw_only=True):
    q: Annotated[str, QUERY]
    limit: SearchLimit = 10
    cursor: Annotated[str, msgspec.Meta(max_length=200)] | None = None


@strawberry.type
class SearchQueries:
    @strawberry.field(
        description="Public videos plus the viewer's own, by meaning, keywords or both (as GET /api/v1/search); first 1-50."
    )
    async def search(
        self,
        info: Info,
        q: str,
        mode: Annotated[str, strawberry.argument(description="hybrid, semantic or keyword.")] = "hybrid",
        filter: SearchFilter | None = None,
        first: int = 10,
        after: str | None = None,
        facets: Annotated[list[str] | None, strawberry.argument(description="tags and/or duration.")] = None,
        typo_tolerance: bool = True,
    ) -> SearchResults:
        filters = {k: v for k, v in vars(filter).items() if v is not strawberry.UNSET} if filter else {}
        asked = converted(
            {
                "q": q,
                "mode": mode,
                "limit": first,
                "cursor": after,
                "filters": filters,
                "facets": facets,
                "typo_tolerance": typo_tolerance,
            },
            _GraphQLSearch,
        )
        encoded, _ = await cached_search(asked, info.context.viewer, _searching(info))
        page = msgspec.json.decode(encoded, type=SearchPage)
        offset = cursor_offset(asked.cursor, MAX_RESULTS)
        cursors = [offset_cursor(offset + position + 1) for position in range(len(page.items))]
        hits = [SearchHitNode.of(hit) for hit in page.items]
        found = connection(SearchResults, hits, cursors, page.next_cursor is not None)
        found.facets, found.corrected_query = _facets(page.facets), page.corrected_query
        return found

    @strawberry.field(description="Completions of a partly typed query: titles and tags; first 1-20.")
    async def suggest(self, info: Info, q: str, first: int = 8) -> list[SuggestionNode]:
        typed = converted({"q": q}, _Typed).q
        found = await suggestions(
            info.context.service("vocabulary"),
            typed,
            info.context.viewer,
            page_size(first, SUGGEST_MAX_LIMIT),
            "<mark>",
            "</mark>",
        )
        return [
            SuggestionNode(
                text=s.text,
                kind=s.kind,
                marked=s.marked,
                matches=[MatchNode(start=m.start, length=m.length) for m in s.matches],
                video_count=s.video_count,
                video_id=strawberry.ID(str(s.video_id)) if s.video_id else None,
            )
            for s in found.items
        ]

    @strawberry.field(
        description="Videos most like this one, best first; null when the video is not visible. first 1-50."
    )
    async def similar(self, info: Info, id: strawberry.ID, first: int = 10) -> list[SearchHitNode] | None:
        wanted = page_size(first, 50)
        [found] = await similar_for_many(
            info.context.service("search_index"),
            info.context.service("catalogue_size"),
            [(parsed_id(id), wanted)],
            info.context.viewer,
        )
        return [SearchHitNode.of(hit) for hit in found] if found is not None else None


class _Typed(msgspec.Struct):
    q: Annotated[str, SUGGEST_QUERY]


router = Router(path="/api/v1", route_handlers=[search, suggest, similar], tags=["search"])


# ---------------------------------------------------------------- the search page

# HTML, CSS and JavaScript modules written for clipdex, served as they are (no build step, nothing
# from another host). Not versioned in their URLs, so browsers revalidate them (ETag) on every use.
SEARCH_PAGE_ASSETS = Path(__file__).parent / "static"
SEARCH_PAGE_ASSETS_PATH = "/search-ui"
_REVALIDATE = CacheControlHeader(no_cache=True)
# The page may load and call only its own origin: an off-site thumbnail, font or script is refused by
# the browser too, and an injected inline script would not run.
_SEARCH_PAGE_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self';"
    " form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)


@get(
    "/",
    include_in_schema=False,
    opt={"exclude_from_auth": True},
    cache_control=_REVALIDATE,
    name="search_page",
)
async def search_page() -> File:
    """The search page; it signs in and searches through the JSON API."""
    return File(
        SEARCH_PAGE_ASSETS / "index.html",
        content_disposition_type="inline",
        media_type="text/html",
        headers={"Content-Security-Policy": _SEARCH_PAGE_POLICY, "X-Content-Type-Options": "nosniff"},
    )


search_page_assets = create_static_files_router(
    path=SEARCH_PAGE_ASSETS_PATH,
    directories=[SEARCH_PAGE_ASSETS],
    cache_control=_REVALIDATE,
    include_in_schema=False,
    opt={"exclude_from_auth": True},
    name="search_page_assets",
)
