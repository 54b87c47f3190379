"""Concurrent identical cache misses compute once (core/single_flight.py), through the API."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

from core.backends import build_vector_index
from core.vectors import VectorIndex
from tests.features.search_support import SEARCH, BrokenIndex, add_topics, indexed, register
from tests.features.videos_support import assert_problem, eventually, serve_here, video_url


class GatedIndex(BrokenIndex):
    """A real index that counts its queries and holds them at a gate, as a slow index service would."""

    def __init__(self, inner: VectorIndex) -> None:
        super().__init__(inner)
        self.queries = 0
        self.first_query = asyncio.Event()
        self.gate = asyncio.Event()
        self.gate.set()
        self.hold_only_first = False

    async def query(self, *args: Any, **kwargs: Any) -> Any:
        self.queries += 1
        self.first_query.set()
        if not (self.hold_only_first and self.queries > 1):
            await self.gate.wait()
        if self.failing:
            raise ConnectionError("vector index service unreachable")
        return await self.inner.query(*args, **kwargs)

    def hold(self, *, only_first: bool = False) -> None:
        self.queries = 0
        self.first_query.clear()
        self.gate.clear()
        self.hold_only_first = only_first


async def _true(value: bool) -> bool:
    return value


# Fifty concurrent requests queue at the local Upstash servers: a slow answer must not count as an outage
# (which reads around the cache, unshared, by design).
PATIENT = {"upstash_timeout_seconds": 15}

QUERY = {"q": "baking bread at home", "mode": "semantic"}  # semantic: one index query per computation


async def catalogue(http: Any) -> None:
    owner = await register(http)
    await add_topics(http, owner, "sourdough", "baguette", "chess")
    await indexed(http)


async def fifty_identical_searches(http: Any, index: GatedIndex, *, shared: bool = True) -> list[Any]:
    index.hold()
    calls = [asyncio.create_task(http.get(SEARCH, params=QUERY)) for _ in range(50)]
    await asyncio.wait_for(index.first_query.wait(), 10)
    if shared:
        await asyncio.sleep(1)  # time for every other request to reach the index, were it not shared
    else:
        await eventually(lambda: _true(index.queries == 50), within=10)
    index.gate.set()
    return await asyncio.gather(*calls)


async def test_fifty_identical_searches_on_a_cold_cache_query_the_index_once(serve, make_settings):
    index = GatedIndex(build_vector_index(make_settings()))
    async with serve():
        pass  # empties the tables; the app below must be the only one relaying the outbox
    async with serve_here(make_settings, vector_index=index, **PATIENT) as http:
        await catalogue(http)
        responses = await fifty_identical_searches(http, index)

    assert [response.status_code for response in responses] == [200] * 50
    assert index.queries == 1
    statuses = Counter(response.headers["x-cache"] for response in responses)
    assert statuses["miss"] == 1, statuses
    assert statuses["shared"] + statuses["hit"] == 49, statuses
    assert len({response.content for response in responses}) == 1
    assert responses[0].json()["items"], "the shared page holds the hits"


async def test_without_single_flight_the_same_searches_all_compute(serve, make_settings):
    # The control for the test above: the same load, sharing turned off, really overlaps.
    index = GatedIndex(build_vector_index(make_settings()))
    async with serve():
        pass
    async with serve_here(make_settings, vector_index=index, single_flight_wait_seconds=0, **PATIENT) as http:
        await catalogue(http)
        responses = await fifty_identical_searches(http, index, shared=False)

    assert [response.status_code for response in responses] == [200] * 50
    assert index.queries == 50
    assert {response.headers["x-cache"] for response in responses} == {"miss"}


async def test_a_failing_search_fails_every_waiter_once_and_the_next_try_computes(serve, make_settings):
    index = GatedIndex(build_vector_index(make_settings()))
    async with serve():
        pass
    async with serve_here(make_settings, vector_index=index, **PATIENT) as http:
        await catalogue(http)
        index.failing = True
        failed = await fifty_identical_searches(http, index)
        failing_queries = index.queries
        index.failing = False
        retry = await http.get(SEARCH, params=QUERY)

    assert failing_queries == 1
    for response in failed:
        assert assert_problem(response, 503)["type"].endswith("search-unavailable")
    assert retry.status_code == 200, retry.text
    assert retry.headers["x-cache"] == "miss"  # the failure was not remembered
    assert retry.json()["items"]


async def test_a_stuck_search_holds_identical_requests_only_for_the_bound(serve, make_settings):
    index = GatedIndex(build_vector_index(make_settings()))
    async with serve():
        pass
    async with serve_here(
        make_settings, vector_index=index, single_flight_wait_seconds=0.3, **PATIENT
    ) as http:
        await catalogue(http)
        index.hold(only_first=True)
        stuck = asyncio.create_task(http.get(SEARCH, params=QUERY))
        await asyncio.wait_for(index.first_query.wait(), 10)
        started = time.monotonic()
        waiter = await http.get(SEARCH, params=QUERY)
        waited = time.monotonic() - started
        stuck_was_done = stuck.done()
        index.gate.set()
        late = await stuck

    assert waiter.status_code == 200, waiter.text
    assert waiter.headers["x-cache"] == "miss"  # computed for itself after the bound
    assert 0.3 <= waited < 5
    assert not stuck_was_done
    assert late.status_code == 200
    assert index.queries == 2


async def fifty_identical_video_reads(make_settings: Any, **overrides: object) -> Counter[str]:
    """X-Cache of 50 concurrent reads of one video right after a like made its cached detail stale."""
    async with serve_here(make_settings, **PATIENT, **overrides) as http:
        owner = await register(http)
        body = {"title": "Shared reads", "url": "https://media.example.com/s.mp4", "duration_seconds": 60}
        created = await http.post("/api/v1/videos", json=body, headers=owner.headers)
        video_id = created.json()["id"]
        # A like bumps the video's generation: the next detail read misses.
        assert (await http.post(f"{video_url(video_id)}/like", headers=owner.headers)).status_code == 200
        responses = await asyncio.gather(*(http.get(video_url(video_id)) for _ in range(50)))
    assert [response.status_code for response in responses] == [200] * 50
    assert {response.json()["like_count"] for response in responses} == {1}
    return Counter(response.headers["x-cache"] for response in responses)


async def test_fifty_identical_video_reads_on_a_cold_cache_read_the_database_once(serve, make_settings):
    async with serve():
        pass
    shared = await fifty_identical_video_reads(make_settings)
    unshared = await fifty_identical_video_reads(make_settings, single_flight_wait_seconds=0)

    assert shared["miss"] == 1, shared
    assert shared["shared"] + shared["hit"] == 49, shared
    # The control: without sharing the same reads overlap and each reads the database.
    assert unshared["miss"] > 1, unshared


async def test_fifty_identical_list_reads_on_a_cold_cache_compute_the_page_once(serve, make_settings):
    async with serve():
        pass
    async with serve_here(make_settings, **PATIENT) as http:
        owner = await register(http)
        body = {"title": "Listed once", "url": "https://media.example.com/l.mp4", "duration_seconds": 60}
        # A new video bumps the lists' generation: every first page misses next.
        assert (await http.post("/api/v1/videos", json=body, headers=owner.headers)).status_code == 201
        responses = await asyncio.gather(*(http.get("/api/v1/videos") for _ in range(50)))

    assert [response.status_code for response in responses] == [200] * 50
    assert len({response.content for response in responses}) == 1
    statuses = Counter(response.headers["x-cache"] for response in responses)
    assert statuses["miss"] == 1, statuses
    assert statuses["shared"] + statuses["hit"] == 49, statuses
