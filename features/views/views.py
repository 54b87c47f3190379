"""Views: each one accepted at once, counted in the cache and added to the videos in batches."""

from __future__ import annotations

import uuid
from typing import Any, Literal

import msgspec
import strawberry
from litestar import Request, Router, post
from litestar.di import NamedDependency
from litestar.params import FromPath
from piccolo.engine.base import Engine

from core.auth import OptionalAuthOperation, optional_user
from core.cache import Cache
from core.counters import BufferedCounter
from core.database import owns_tables
from core.errors import NotFound, problem_responses
from core.graphql import Info, parsed_id
from features.users.users import User
from features.videos.videos import Video, VideoReads, visible_video

# ---------------------------------------------------------------- schemas


class ViewAccepted(msgspec.Struct):
    status: Literal["accepted"] = "accepted"


# ---------------------------------------------------------------- rules


class ViewCounter(BufferedCounter):
    """Views, counted in the cache and added to `view_count` in batches (see BufferedCounter); while the
    cache is down, each view is written straight to the database."""

    # Under "videos:" as when views were part of the videos feature, so counts pending across a deploy
    # are still written.
    PENDING = "videos:views:pending"

    def __init__(self, cache: Cache, engine: Engine, reads: VideoReads) -> None:
        super().__init__(cache, engine, "videos:views")
        self._engine = engine
        self._reads = reads

    async def record(self, video_id: uuid.UUID) -> None:
        await self.count(str(video_id))

    async def flush(self) -> int:
        """Write pending views to the database; returns how many were written."""
        if not owns_tables(self._engine, Video):
            return 0
        return await super().flush()

    async def write(self, pending: dict[str, int]) -> None:
        for video_id, count in pending.items():
            await Video.update({Video.view_count: Video.view_count + count}).where(
                Video.id == uuid.UUID(video_id)
            )

    async def written(self, pending: dict[str, int]) -> None:
        # After the commit, so no reader can cache the old state under the new generations.
        await self._reads.changed(*(uuid.UUID(video_id) for video_id in pending))


async def record_view(
    video_id: uuid.UUID, viewer: User | None, reads: VideoReads, counter: ViewCounter
) -> None:
    await visible_video(reads, video_id, viewer)
    await counter.record(video_id)


# ---------------------------------------------------------------- handlers


@post(
    "/videos/{video_id:uuid}/views",
    opt={"auth_optional": True},
    operation_class=OptionalAuthOperation,
    status_code=202,
    summary="Count one view",
    responses=problem_responses(401, NotFound("No video with that id."), 415, 503),
)
async def count_view(
    request: Request[Any, Any, Any],
    video_id: FromPath[uuid.UUID],
    video_reads: NamedDependency[VideoReads],
    view_counter: NamedDependency[ViewCounter],
) -> ViewAccepted:
    """Accepted at once; `view_count` catches up within VIEW_FLUSH_INTERVAL_SECONDS."""
    await record_view(video_id, optional_user(request), video_reads, view_counter)
    return ViewAccepted()


# ---------------------------------------------------------------- GraphQL


@strawberry.type
class ViewMutations:
    @strawberry.mutation(
        description="Count one view; viewCount catches up within VIEW_FLUSH_INTERVAL_SECONDS."
    )
    async def record_view(self, info: Info, id: strawberry.ID) -> bool:
        await record_view(
            parsed_id(id),
            info.context.viewer,
            info.context.service("video_reads"),
            info.context.service("view_counter"),
        )
        return True


router = Router(path="/api/v1", route_handlers=[count_view], tags=["videos"])
