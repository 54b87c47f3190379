"""Two app workers, as in production: separate uvicorn processes sharing PostgreSQL, Upstash Redis and
Upstash Vector (the local Upstash-compatible servers), seen only through real HTTP; their background
work in their own loops, or run by QStash (the local QStash server calling worker A, as it would call
the address in front of both).

Whatever one worker learns, the other must know: a logout, a like, a new video (through the search
index), views. Skipped without TEST_DATABASE_URL; in CI (CI=true) a missing PostgreSQL or Redis fails.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from qstash import QStash

from tests.conftest import IN_CI, POSTGRES_URL, LocalUpstash, clipdex_environ, migrate, reset_postgres
from tests.core.test_job_contract import free_port
from tests.features.search_support import TOPICS, found, indexed, register
from tests.features.videos_support import API, add_video, eventually, video_state, video_url
from tests.live_server import AppServer
from upstash_local.qstash_server import LocalQStashServer

FLUSH_SECONDS = 0.5
VIEWS_PER_WORKER = 25


@pytest.fixture(scope="module", params=["loops", "qstash"])
async def workers(
    request: pytest.FixtureRequest,
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    """Two workers on a freshly migrated PostgreSQL and emptied Upstash servers, for every test here
    (each works on accounts and videos of its own); an HTTP client for each worker."""
    if not POSTGRES_URL and not IN_CI:
        pytest.skip("TEST_DATABASE_URL is not set (CI sets it)")
    await reset_postgres(POSTGRES_URL)  # fails in CI without a reachable PostgreSQL
    await asyncio.to_thread(migrate, POSTGRES_URL)
    upstash: LocalUpstash = request.getfixturevalue("local_upstash")  # fails in CI without Redis
    upstash.empty()
    environ = {
        **os.environ,
        **clipdex_environ(
            POSTGRES_URL,
            outbox_poll_seconds=0.1,
            view_flush_interval_seconds=FLUSH_SECONDS,
            **upstash.settings,
        ),
    }
    started: list[AppServer] = []
    ports: dict[str, int | None] = {"A": None, "B": None}
    qstash: LocalQStashServer | None = None
    if request.param == "qstash":
        qstash = LocalQStashServer.start(
            options=["--retry-delay-scale", "0.001", "--cron-minute-seconds", "1"]
        )
        keys = QStash(qstash.token, base_url=qstash.url).signing_key.get()
        ports["A"] = free_port()
        environ |= {
            "QSTASH_TOKEN": qstash.token,
            "QSTASH_URL": qstash.url,
            "QSTASH_CURRENT_SIGNING_KEY": keys.current,
            "QSTASH_NEXT_SIGNING_KEY": keys.next,
            "PUBLIC_BASE_URL": f"http://127.0.0.1:{ports['A']}",
        }
    try:
        for name in ("A", "B"):
            started.append(AppServer(name, environ, port=ports[name]))
        await asyncio.gather(*(asyncio.to_thread(worker.wait_until_ready) for worker in started))
        async with (
            httpx.AsyncClient(base_url=started[0].url, timeout=10) as a,
            httpx.AsyncClient(base_url=started[1].url, timeout=10) as b,
        ):
            yield a, b
        for worker in started:
            assert worker.process.poll() is None, f"worker {worker.name} died:\n{worker.log()}"
    finally:
        for worker in started:
            worker.stop()
        if qstash is not None:
            qstash.stop()


async def test_a_token_revoked_through_one_worker_is_refused_by_the_other(workers):
    a, b = workers
    account = await register(a)
    assert (await b.get(f"{API}/users/me", headers=account.headers)).status_code == 200

    assert (await a.post(f"{API}/auth/logout", headers=account.headers)).status_code == 204

    assert (await b.get(f"{API}/users/me", headers=account.headers)).status_code == 401
    assert (await a.get(f"{API}/users/me", headers=account.headers)).status_code == 401


async def test_a_like_through_one_worker_is_counted_through_the_other(workers):
    a, b = workers
    owner, fan, other_fan = await register(a), await register(b), await register(a)
    video = await add_video(a, owner)
    assert (await video_state(b, video["id"]))["like_count"] == 0  # now in the shared cache

    liked = await a.post(f"{video_url(video['id'])}/like", headers=fan.headers)
    assert liked.json() == {"liked": True, "like_count": 1}
    assert (await video_state(b, video["id"]))["like_count"] == 1

    assert (await b.post(f"{video_url(video['id'])}/like", headers=other_fan.headers)).status_code == 200
    assert (await video_state(a, video["id"]))["like_count"] == 2


async def test_a_video_created_through_one_worker_is_found_by_search_through_the_other(workers):
    a, b = workers
    owner = await register(a)
    assert await found(b, "sourdough", mode="keyword") == []  # an answer the shared search cache now holds

    video = await add_video(a, owner, **TOPICS["sourdough"])
    await indexed(b, within=20.0)  # /ready: no index change pending

    assert (await found(b, "sourdough bread"))[0] == video["id"]
    assert await found(b, "sourdough", mode="keyword") == [video["id"]]
    assert (await found(a, "baking a crusty loaf", mode="semantic"))[0] == video["id"]


async def test_views_recorded_on_both_workers_are_all_counted(workers):
    a, b = workers
    owner = await register(a)
    video = await add_video(a, owner, title=f"Views {uuid.uuid4().hex[:6]}")
    views = f"{video_url(video['id'])}/views"

    responses = await asyncio.gather(*(http.post(views) for http in (a, b) for _ in range(VIEWS_PER_WORKER)))
    assert {response.status_code for response in responses} == {202}

    expected = 2 * VIEWS_PER_WORKER

    async def counted() -> bool:
        return (await video_state(a, video["id"]))["view_count"] == expected

    await eventually(counted, within=FLUSH_SECONDS * 2 + 5.0)
    await asyncio.sleep(FLUSH_SECONDS * 2)  # both workers flush again: nothing is counted twice
    assert (await video_state(a, video["id"]))["view_count"] == expected
    assert (await video_state(b, video["id"]))["view_count"] == expected


async def test_each_worker_says_where_its_jobs_run(workers, request):
    a, b = workers
    expected = "qstash" if request.node.callspec.params["workers"] == "qstash" else "process"
    for worker in (a, b):
        ready = (await worker.get("/ready")).json()["dependencies"]["jobs"]["details"]
        assert ready == {"runs_in": expected, "failed": 0}
