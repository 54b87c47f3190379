"""Durable indexing: video writes survive an index outage, the outbox catches up, a reindex rebuilds it all."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from pathlib import Path
from typing import Any

from core.backends import build_cache, build_vector_index
from core.outbox import OutboxEvent, OutboxRelay, outbox_lag
from core.settings import load_settings
from core.vectors import VectorIndex
from features.search.search import SearchFilters
from features.search_index.search_index import SearchIndexer
from features.videos.videos import VIDEO_CHANGES, Video
from tests.conftest import ROOT, clipdex_environ, migrate
from tests.features.search_support import (
    TOPICS,
    BrokenIndex,
    add_topics,
    found,
    indexed,
    register,
    search,
    similar_url,
)
from tests.features.videos_support import (
    VIDEOS,
    add_video,
    assert_problem,
    eventually,
    read_video,
    serve_here,
    video_body,
    video_url,
)

LITESTAR = str(Path(sys.executable).with_name("litestar"))


async def test_video_writes_succeed_while_the_index_is_down_and_it_catches_up(serve, make_settings):
    index = BrokenIndex(build_vector_index(make_settings()))
    async with serve():
        pass  # empties the tables; the app below must be the only one relaying the outbox
    async with serve_here(make_settings, vector_index=index) as http:
        owner = await register(http)
        chess = await add_video(http, owner, **TOPICS["chess"])
        await indexed(http)

        index.failing = True
        created = await http.post(VIDEOS, json=video_body(**TOPICS["sourdough"]), headers=owner.headers)
        changed = await http.patch(
            video_url(chess["id"]), json={"title": "Chess clocks: the QX-7731"}, headers=owner.headers
        )
        assert created.status_code == 201, created.text
        assert changed.status_code == 200, changed.text
        assert (await read_video(http, created.json()["id"])).status_code == 200

        for response in (
            await search(http, "sourdough bread"),
            await search(http, "QX-7731", mode="keyword"),
            await http.get(similar_url(chess["id"])),
        ):
            problem = assert_problem(response, 503)
            assert problem["type"] == "urn:clipdex:problem:search-unavailable"
            assert "unavailable" in problem["detail"]
            assert response.headers["retry-after"]
        ready = await http.get("/ready")
        assert ready.status_code == 503
        dependencies = ready.json()["dependencies"]
        assert dependencies["search_index"]["status"] == "failing"
        assert "ConnectionError" in dependencies["search_index"]["error"]
        assert dependencies["database"]["status"] == "ok"

        # The relay keeps the changes and retries them with a growing delay.
        async def retried() -> bool:
            rows = await OutboxEvent.select().where(OutboxEvent.topic == VIDEO_CHANGES)
            return bool(rows) and all("ConnectionError" in row["last_error"] for row in rows)

        await eventually(retried, within=5.0)
        assert (await outbox_lag(VIDEO_CHANGES)).pending == 2
        later = await add_video(http, owner, **TOPICS["marathon"])
        lag = await outbox_lag(VIDEO_CHANGES)
        assert lag.pending == 3
        assert lag.oldest_age_seconds > 0

        index.failing = False
        await indexed(http, within=15.0)
        assert (await http.get("/ready")).status_code == 200
        assert (await found(http, "sourdough bread"))[0] == created.json()["id"]
        assert await found(http, "QX-7731", mode="keyword") == [chess["id"]]
        assert (await found(http, "marathon training"))[0] == later["id"]
        similar = await http.get(similar_url(chess["id"]))
        assert similar.status_code == 200, similar.text


async def test_index_records_of_missing_videos_are_not_shown_and_get_removed(serve, make_settings):
    index = build_vector_index(make_settings())
    async with serve():
        pass
    async with serve_here(make_settings, vector_index=index) as http:
        owner = await register(http)
        video = await add_video(http, owner, **TOPICS["sourdough"])
        await indexed(http)
        # A record whose video is gone without an outbox event (say, restored from an old backup).
        ghost = str(uuid.uuid4())
        metadata = {"owner": owner.id, "visibility": "public", "tags": [], "duration_seconds": 60}
        await index.upsert_data([(ghost, "Baking sourdough bread, a lost copy", metadata)])

        assert await found(http, "sourdough bread") == [video["id"]]
        assert await found(http, "sourdough bread", mode="keyword") == [video["id"]]
        await indexed(http)
        assert await index.fetch([ghost]) == [None]


async def _records(index: VectorIndex) -> dict[str, tuple[Any, Any]]:
    """Every record of the index: id -> (metadata, indexed text)."""
    records: dict[str, tuple[Any, Any]] = {}
    cursor = ""
    while True:
        page = await index.range(cursor=cursor, limit=3, include_metadata=True, include_data=True)
        records.update({record.id: (record.metadata, record.data) for record in page.vectors})
        if not page.next_cursor:
            return records
        cursor = page.next_cursor


async def test_a_reindex_from_scratch_equals_incremental_indexing(serve, make_settings):
    incremental = build_vector_index(make_settings())
    async with serve():
        pass
    async with serve_here(make_settings, vector_index=incremental) as http:
        owner, other = await register(http), await register(http)
        ids = await add_topics(http, owner)
        ids["rye"] = (
            await add_video(
                http,
                other,
                title="Rye loaf with a sourdough starter",
                description="A dense rye bread, fermented overnight.",
                tags=["baking", "bread"],
                visibility="private",
            )
        )["id"]
        renamed = {"title": "Chess endgames", "tags": ["chess", "endgames"], "duration_seconds": 900}
        assert (await http.patch(video_url(ids["chess"]), json=renamed, headers=owner.headers)).is_success
        assert (await http.delete(video_url(ids.pop("marathon")), headers=owner.headers)).is_success
        await indexed(http)

        rebuilt = build_vector_index(make_settings())
        await rebuilt.open()
        try:
            # A record whose video is gone (deleted while nothing relayed it): the reindex drops it.
            await rebuilt.upsert_data([("00000000-0000-4000-8000-000000000000", "a lost video", {})])
            indexer = SearchIndexer(rebuilt, build_cache(make_settings()))
            assert await indexer.reindex(batch_size=3, show_progress=False) == len(ids)
            expected = await _records(incremental)
            assert set(expected) == set(ids.values())
            assert await _records(rebuilt) == expected
            assert await indexer.reindex(show_progress=False) == len(ids)
            assert await _records(rebuilt) == expected

            visible = SearchFilters().expression(None)
            for query in ["sourdough bread", "endgames", "QX-7731", "cloud containers", "sunset painting"]:
                for mode in ("HYBRID", "DENSE", "SPARSE"):
                    results = [
                        await built.query(data=query, top_k=3, query_mode=mode, filter=visible)
                        for built in (incremental, rebuilt)
                    ]
                    incremental_ids, rebuilt_ids = ([hit.id for hit in hits] for hits in results)
                    assert rebuilt_ids[:1] == incremental_ids[:1], (query, mode)
                    assert set(rebuilt_ids) == set(incremental_ids), (query, mode)
        finally:
            await rebuilt.close()


async def test_the_reindex_command_rebuilds_the_index_on_disk(tmp_path):
    url = f"sqlite:///{tmp_path}/x.sqlite3"
    migrate(url)

    def settings_for(**overrides: object):
        return load_settings(clipdex_environ(url, **overrides), env_dir=ROOT)

    async with serve_here(settings_for) as http:
        owner = await register(http)
        ids = await add_topics(http, owner, "sourdough", "chess", "kubernetes")

    environ = {**os.environ, **clipdex_environ(url, vector_index_path=tmp_path / "index")}
    process = await asyncio.create_subprocess_exec(
        LITESTAR,
        "--app",
        "app:create_app",
        "reindex",
        cwd=ROOT,
        env=environ,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode == 0, (stdout + stderr).decode()
    assert "Indexed 3 videos." in stdout.decode()

    on_disk = build_vector_index(settings_for(vector_index_path=tmp_path / "index"))
    await on_disk.open()
    try:
        assert (await on_disk.info()).vector_count == 3
        hits = await on_disk.query(data="kubernetes deployment", top_k=3)
        assert hits[0].id == ids["kubernetes"]
        assert {hit.id for hit in hits} == set(ids.values())
    finally:
        await on_disk.close()


class StallingIndex(BrokenIndex):
    """Holds one write until released, as a slow round trip to an index service would."""

    def __init__(self, inner: VectorIndex) -> None:
        super().__init__(inner)
        self.stall_next_write = False
        self.stalled = asyncio.Event()
        self.release = asyncio.Event()
        self.writes = 0

    async def upsert_data(self, *args: Any, **kwargs: Any) -> None:
        self.writes += 1
        if self.stall_next_write:
            self.stall_next_write = False
            self.stalled.set()
            await self.release.wait()
        await self.inner.upsert_data(*args, **kwargs)


async def test_a_slow_relay_never_leaves_an_older_version_in_the_index(serve, make_settings):
    # Two app workers run two relays. One reads a video and is slow to write it to the index; the
    # video changes again and the other relay indexes the new version first. The slow write must not
    # leave the index with the older version once both are done.
    index = StallingIndex(build_vector_index(make_settings()))
    async with serve():
        pass
    async with serve_here(make_settings, vector_index=index) as http:
        owner = await register(http)
        video = await add_video(http, owner, **TOPICS["chess"])
        await indexed(http)
        assert index.writes == 1  # the check after a write finds the version it wrote
        other_worker = OutboxRelay(
            VIDEO_CHANGES, SearchIndexer(index, build_cache(make_settings())).sync, Video._meta.db
        )

        index.stall_next_write = True
        first = {"title": "Chess endgames"}
        assert (await http.patch(video_url(video["id"]), json=first, headers=owner.headers)).is_success
        await asyncio.wait_for(index.stalled.wait(), timeout=5)  # the app's relay holds "endgames"
        second = {"title": "Chess puzzles"}
        assert (await http.patch(video_url(video["id"]), json=second, headers=owner.headers)).is_success
        if make_settings().uses_qstash:
            # No relay of its own: QStash delivers the second change's job while the first one stalls.
            async def puzzles_found() -> bool:
                return await found(http, "puzzles", mode="keyword") == [video["id"]]

            await eventually(puzzles_found, within=10.0)
        else:
            assert await other_worker.deliver_once() == 1
        assert await found(http, "puzzles", mode="keyword") == [video["id"]]
        index.release.set()
        await indexed(http)

        assert await found(http, "puzzles", mode="keyword") == [video["id"]]
        assert await found(http, "endgames", mode="keyword") == []
        assert index.writes == 4  # "puzzles" by the other worker, "endgames" and then "puzzles" again
