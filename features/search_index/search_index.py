"""The search index kept in step with the catalogue: what of a video is indexed, the sync the outbox
relay runs for each change, the rebuild, and `litestar reindex`.

The database is the source of truth. Video writes publish to the outbox in their own transaction; the
relay turns each change into an index upsert or delete, so the index catches up after any failure.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Any

import click
import msgspec
from click import Group
from litestar.plugins import CLIPluginProtocol
from piccolo.engine.base import Engine
from rich.progress import Progress

from core.cache import Cache, ReadThroughCache
from core.database import close_database, open_database, write_transaction
from core.outbox import publish
from core.settings import Settings
from core.startup import SearchIndexHeld, open_search_index, run_command
from core.vectors import VectorIndex
from core.vocabulary import Document, Vocabulary, record
from features.videos.videos import VIDEO_CHANGES, Video

# Transcripts can be 100k characters; the dense vector reads only the first MAX_TOKENS (128) word pieces
# (title and tags come first so they always count), and BM25 keywords read this much of the text.
MAX_INDEXED_CHARACTERS = 20_000


# ---------------------------------------------------------------- rules


def indexed_text(row: dict[str, Any]) -> str:
    tags = row["tags"] if isinstance(row["tags"], list) else msgspec.json.decode(row["tags"] or "[]")
    parts = [row["title"], " ".join(tags), row["description"], row["transcript"] or ""]
    return "\n".join(part for part in parts if part)[:MAX_INDEXED_CHARACTERS]


def indexed_metadata(row: dict[str, Any]) -> dict[str, Any]:
    tags = row["tags"] if isinstance(row["tags"], list) else msgspec.json.decode(row["tags"] or "[]")
    created_at: datetime = row["created_at"]
    return {
        "owner": str(row["owner"]),
        "visibility": row["visibility"],
        "tags": tags,
        "duration_seconds": row["duration_seconds"],
        "created_at": int(created_at.timestamp()),
    }


def _document(row: dict[str, Any]) -> Document:
    tags = row["tags"] if isinstance(row["tags"], list) else msgspec.json.decode(row["tags"] or "[]")
    text = indexed_text(row)
    return Document(str(row["id"]), str(row["owner"]), row["visibility"], row["title"], tags, text)


_INDEXED_COLUMNS = (
    Video.id,
    Video.owner,
    Video.title,
    Video.description,
    Video.tags,
    Video.transcript,
    Video.visibility,
    Video.duration_seconds,
    Video.created_at,
    Video.updated_at,
)


async def video_id_batches(batch_size: int) -> AsyncIterator[list[str]]:
    """Every video id, in id order, a batch at a time (keyset: safe while videos come and go)."""
    last_id: uuid.UUID | None = None
    while True:
        query = Video.select(Video.id).order_by(Video.id).limit(batch_size)
        if last_id is not None:
            query = query.where(Video.id > last_id)
        batch = [str(row["id"]) for row in await query]
        if not batch:
            return
        yield batch
        last_id = uuid.UUID(batch[-1])


class SearchIndexer:
    """Brings the index in line with the database for given videos: upsert what exists, delete the rest."""

    INDEX_GENERATION = "search:index"

    def __init__(self, index: VectorIndex, cache: Cache, vocabulary: Vocabulary | None = None) -> None:
        self._index = index
        self._cache = ReadThroughCache(cache)
        self._vocabulary = vocabulary

    async def sync(self, video_ids: list[str]) -> None:
        # Each app worker runs a relay, so two can hold changes of one video at once; if the one that
        # read the older version writes last, the index would keep it for good. So read the versions
        # again after writing, and write again if they moved on: a change after that check has an
        # outbox event of its own, delivered after this write. (Bounded: a video edited nonstop is
        # left to the events of its later edits.)
        ids = [uuid.UUID(video_id) for video_id in video_ids]
        written = await self._write(video_ids, ids)
        for _ in range(3):
            if await self._versions(ids) == written:
                break
            written = await self._write(video_ids, ids)
        await self.index_changed()

    async def _write(self, video_ids: list[str], ids: list[uuid.UUID]) -> dict[str, datetime]:
        """Upsert the videos that exist, delete the rest; the versions (updated_at) it wrote."""
        rows = await Video.select(*_INDEXED_COLUMNS).where(Video.id.is_in(ids)) if ids else []
        present = {str(row["id"]) for row in rows}
        if rows:
            await self._index.upsert_data(
                [(str(row["id"]), indexed_text(row), indexed_metadata(row)) for row in rows]
            )
        gone = [video_id for video_id in video_ids if video_id not in present]
        if gone:
            await self._index.delete(gone)
        # After the index, so the vocabulary never offers words the index cannot find yet.
        await record([_document(row) for row in rows], gone)
        if self._vocabulary is not None:
            self._vocabulary.changed()
        return {str(row["id"]): row["updated_at"] for row in rows}

    async def _versions(self, ids: list[uuid.UUID]) -> dict[str, datetime]:
        rows = await Video.select(Video.id, Video.updated_at).where(Video.id.is_in(ids)) if ids else []
        return {str(row["id"]): row["updated_at"] for row in rows}

    async def index_changed(self) -> None:
        await self._cache.bump(self.INDEX_GENERATION)

    async def reindex(self, *, batch_size: int = 64, show_progress: bool = True) -> int:
        """Rebuild from the database in batches: upsert every video, delete index records with no video."""
        done = 0
        with Progress(disable=not show_progress) as progress:
            task = progress.add_task("Indexing videos", total=await Video.count())
            async for batch in video_id_batches(batch_size):
                await self.sync(batch)
                done += len(batch)
                progress.update(task, completed=done)
        await self._delete_orphans()
        return done

    async def reindex_batch(self, after: str | None, batch_size: int) -> str | None:
        """One step of a rebuild run as jobs: index the videos after id `after` (a batch); their last id,
        or None once there are none left (and the index records with no video are deleted)."""
        query = Video.select(Video.id).order_by(Video.id).limit(batch_size)
        if after is not None:
            query = query.where(Video.id > uuid.UUID(after))
        batch = [str(row["id"]) for row in await query]
        if not batch:
            await self._delete_orphans()
            return None
        await self.sync(batch)
        return batch[-1]

    async def queue_all(self, engine: Engine, *, batch_size: int = 500) -> int:
        """Put every video into the outbox, for the relay of whichever app holds the index."""
        queued = 0
        async for batch in video_id_batches(batch_size):
            async with write_transaction(engine):
                await publish(VIDEO_CHANGES, *batch)
            queued += len(batch)
        return queued

    async def _delete_orphans(self) -> None:
        cursor = ""
        while True:
            page = await self._index.range(
                cursor=cursor, limit=500, include_metadata=False, include_data=False
            )
            ids = [record.id for record in page.vectors]
            if ids:
                existing = {str(row["id"]) for row in await Video.select(Video.id).where(Video.id.is_in(ids))}
                orphans = [video_id for video_id in ids if video_id not in existing]
                if orphans:
                    await self._index.delete(orphans)
            if not page.next_cursor:
                break
            cursor = page.next_cursor
        await self.index_changed()


# ---------------------------------------------------------------- command line


class ReindexCommand(CLIPluginProtocol):
    """`litestar reindex`: rebuild the search index from the database.

    When the embedded index is held by a running clipdex, the rebuild is handed to that app instead:
    every video goes into the outbox, and its relay reindexes them while it keeps serving.
    `--as-jobs` hands it to the job queue instead (`start_as_jobs`: with QStash, batch jobs that the
    app's instances run, for hosting where no process may run that long).
    """

    def __init__(
        self,
        indexer: SearchIndexer,
        index: VectorIndex,
        engine: Engine,
        settings: Settings,
        start_as_jobs: Callable[[], Awaitable[str]] | None = None,
    ) -> None:
        self._indexer = indexer
        self._index = index
        self._engine = engine
        self._settings = settings
        self._start_as_jobs = start_as_jobs

    async def run(self) -> str:
        await open_database(self._engine, self._settings)
        try:
            try:
                await open_search_index(self._index, self._settings)
            except SearchIndexHeld:
                queued = await self._indexer.queue_all(self._engine)
                return f"The index is open in a running clipdex: queued {queued} videos for it (see /ready)."
            try:
                return f"Indexed {await self._indexer.reindex()} videos."
            finally:
                await self._index.close()
        finally:
            await close_database(self._engine)

    def on_cli_init(self, cli: Group) -> None:
        @cli.command(name="reindex", help="Rebuild the search index from the database (idempotent).")
        @click.option("--as-jobs", is_flag=True, help="Enqueue the rebuild as batch jobs (needs QStash).")
        def reindex(as_jobs: bool) -> None:
            if not as_jobs:
                click.echo(run_command(self.run()))
            elif self._start_as_jobs is None:
                raise click.UsageError("--as-jobs needs QStash (QSTASH_TOKEN and the settings with it)")
            else:
                click.echo(run_command(self._start_as_jobs()))
