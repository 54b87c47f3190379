"""The Upstash Vector index goes away under traffic and comes back: video writes carry on, search
answers 503 search-unavailable meanwhile (and fast), and afterwards the outbox catches up, so that
every video written during the outage is found by search.

The index is the test's own local Upstash Vector server (upstash_local/vector_server.py), keeping
its index on disk as Upstash keeps an index through an outage: killed (SIGKILL) and started again on
the same port, then frozen (SIGSTOP: it accepts connections and answers nothing) and thawed. The app
runs on SQLite with the in-process cache, so the index is the only dependency that fails.
"""

from __future__ import annotations

import asyncio
import random
import uuid

import httpx
import pytest

from tests.faults.support import (
    API,
    Acknowledged,
    TrafficLog,
    app_server,
    assert_nothing_lost,
    assert_unavailable_problems,
    register,
    stored_state,
    until,
    upstash_vector_server,
    write_traffic,
)

pytestmark = pytest.mark.faults

CLIENTS = 3
OUTAGE_SECONDS = 2.5
STEADY_SECONDS = 1.0
UPSTASH_TIMEOUT_SECONDS = 1.0
# The relay retries with backoff (1, 2, 4 s ... after each failed attempt): this outage's worth.
CATCH_UP_SECONDS = 20.0


def _allowed_seconds(log: TrafficLog) -> float:
    """A search gives up after one deadline (its index queries run side by side); plus load."""
    return UPSTASH_TIMEOUT_SECONDS + max(1.0, 2 * log.worst_seconds("before"))


async def _search_traffic(
    log: TrafficLog, http: httpx.AsyncClient, acknowledged: Acknowledged, keep_going, seed: int
) -> None:
    """Searches nobody asked before (so no cached answer hides the index) and similar-video lookups."""
    chooser = random.Random(seed)
    for _ in range(2000):
        if not keep_going():
            return
        if acknowledged.videos and chooser.random() < 0.3:
            video = chooser.choice(list(acknowledged.videos))
            await log.send(http, "similar", "GET", f"{API}/videos/{video}/similar")
        else:
            query = f"fault drill {uuid.uuid4().hex[:8]} {chooser.choice(['bread', 'chess', 'music'])}"
            await log.send(http, "search", "GET", f"{API}/search", params={"q": query})
        await asyncio.sleep(0.05)


async def _index_caught_up(http: httpx.AsyncClient) -> bool:
    index = (await http.get("/ready")).json()["dependencies"]["search_index"]
    return index["status"] == "ok" and index["details"]["pending"] == 0


async def test_video_writes_carry_on_while_the_index_is_down_and_search_finds_them_afterwards(
    sqlite_database,
):
    url = sqlite_database
    with upstash_vector_server() as index:
        log, acknowledged = TrafficLog(), Acknowledged()
        with app_server(
            "vector-outage",
            url,
            upstash_vector_rest_url=index.url,
            upstash_vector_rest_token=index.token,
            upstash_timeout_seconds=UPSTASH_TIMEOUT_SECONDS,
        ) as app:
            async with httpx.AsyncClient(base_url=app.url) as http:
                accounts = [await register(http) for _ in range(3)]
                running = True
                clients = [
                    asyncio.create_task(
                        write_traffic(
                            log, http, accounts, acknowledged, lambda: running, label="vector", seed=seed
                        )
                    )
                    for seed in range(CLIENTS)
                ]
                clients.append(
                    asyncio.create_task(_search_traffic(log, http, acknowledged, lambda: running, seed=9))
                )
                await asyncio.sleep(STEADY_SECONDS)
                outages = {
                    "index killed": (index.kill, index.start),
                    "index frozen": (index.freeze, index.thaw),
                }
                caught_up: dict[str, float] = {}
                written_during: dict[str, int] = {}
                for outage, (break_it, mend_it) in outages.items():
                    before = set(acknowledged.videos)
                    log.phase = outage
                    await asyncio.to_thread(break_it)
                    await asyncio.sleep(OUTAGE_SECONDS)
                    ready = (await http.get("/ready")).json()["dependencies"]["search_index"]
                    assert ready["status"] == "failing", ready
                    # Until the server answers again (it loads its model and index first) it is down.
                    await asyncio.to_thread(mend_it)
                    log.phase = f"after {outage}"
                    written_during[outage] = len(set(acknowledged.videos) - before)
                    caught_up[outage] = await until(
                        lambda: _index_caught_up(http), CATCH_UP_SECONDS, "the outbox drains"
                    )
                    await asyncio.sleep(STEADY_SECONDS)
                running = False
                await asyncio.gather(*clients)

                await until(lambda: _index_caught_up(http), CATCH_UP_SECONDS, "the outbox drains")
                missing = []
                for video, title in acknowledged.videos.items():
                    marker = title.rsplit(" ", 1)[-1]
                    found = await http.get(f"{API}/search", params={"q": marker, "mode": "keyword"})
                    assert found.status_code == 200, found.text
                    if video not in [item["id"] for item in found.json()["items"]]:
                        missing.append(video)
                assert not missing, (
                    f"{len(missing)} of {len(acknowledged.videos)} videos not found: {missing}"
                )
                assert_nothing_lost(await stored_state(url), acknowledged)
            assert app.process.poll() is None, f"the app died:\n{app.log()}"

    assert not log.failures("before"), log.failures("before")
    log.report(
        "upstash-vector",
        "before",
        f"afterwards {len(acknowledged.videos)} videos each found by a keyword search, "
        f"{len(acknowledged.likes)} likes checked",
    )
    for outage in outages:
        searches = [o for o in log.of(outage) if o.action in {"search", "similar"}]
        others = [o for o in log.of(outage) if o.action not in {"search", "similar"}]
        # Everything but search carries on; search says it is unavailable, quickly.
        assert not [o for o in others if not o.ok], [o for o in others if not o.ok]
        failed = [o for o in searches if not o.ok]
        assert failed, f"no search failed while the {outage}: the outage was not real"
        assert_unavailable_problems(failed, "search-unavailable")
        slowest = max(log.of(outage), key=lambda outcome: outcome.seconds)
        assert slowest.seconds < _allowed_seconds(log), slowest
        assert not log.failures(f"after {outage}"), log.failures(f"after {outage}")
        log.report(
            "upstash-vector",
            outage,
            f"allowed {_allowed_seconds(log):.2f} s; {written_during[outage]} videos written during it,"
            f" index caught up {caught_up[outage]:.2f} s after the restart",
        )
        log.report("upstash-vector", f"after {outage}")
