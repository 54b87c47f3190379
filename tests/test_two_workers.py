"""Two app workers, as in production: separate uvicorn processes sharing PostgreSQL, Upstash Redis and
Upstash Vector (the local Upstash-compatible servers), seen only through real HTTP; their background
work in their own loops, or run by QStash (the local QStash server calling worker A, as it would call
the address in front of both).

Whatever one worker learns, the other must know: a logout, a like, a new video (through the search
index), views; and with QStash, a worker killed in the middle of a job loses nothing once its job is
delivered again. Skipped without TEST_DATABASE_URL; in CI (CI=true) a missing PostgreSQL or Redis fails.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg
import httpx
import pytest
from qstash import QStash

from core.counters import CLAIM_LEASE_SECONDS
from tests.conftest import IN_CI, POSTGRES_URL, LocalUpstash, clipdex_environ, migrate, reset_postgres
from tests.features.search_support import TOPICS, found, indexed, register
from tests.features.videos_support import API, add_video, eventually, video_state, video_url
from tests.live_server import AppServer, free_port
from upstash_local.qstash_server import LocalQStashServer

FLUSH_SECONDS = 0.5
VIEWS_PER_WORKER = 25
SKIP_LOOPS = "a job QStash delivers again; a worker killed amid its loops is tests/faults/test_app_killed.py"
OUTBOX_LEASE_SECONDS = 60.0  # how long a delivery holds an outbox event (core.outbox.OutboxRelay)


@dataclass
class Workers:
    """An HTTP client for each worker (`a, b = workers`), and the worker processes, A first."""

    a: httpx.AsyncClient
    b: httpx.AsyncClient
    servers: list[AppServer]
    runs_in: str  # "loops" or "qstash"

    def __iter__(self) -> Iterator[httpx.AsyncClient]:
        return iter((self.a, self.b))

    async def restart_a(self) -> None:
        """Start worker A again, on its address (the one QStash calls), after it was killed."""
        killed = self.servers[0]
        self.servers[0] = AppServer("A", killed.environ, port=killed.port)
        await asyncio.to_thread(self.servers[0].wait_until_ready)
        killed.stop()  # only removes its log: the process is gone


@pytest.fixture(scope="module", params=["loops", "qstash"])
async def workers(request: pytest.FixtureRequest) -> AsyncIterator[Workers]:
    """Two workers on a freshly migrated PostgreSQL and emptied Upstash servers, for every test here
    (each works on accounts and videos of its own)."""
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
            yield Workers(a, b, started, request.param)
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


@pytest.mark.parametrize("change", ["password", "deletion"])
async def test_a_change_signing_every_token_out_through_one_worker_is_refused_by_the_other(workers, change):
    a, b = workers
    account = await register(a)
    # Worker B has answered the token, so the account is in the cache it reads.
    assert (await b.get(f"{API}/users/me", headers=account.headers)).status_code == 200

    if change == "password":
        body = {"password": "a-brand-new-password", "current_password": account.password}
        response = await a.patch(f"{API}/users/me", json=body, headers=account.headers)
    else:
        body = {"password": account.password}
        response = await a.request("DELETE", f"{API}/users/me", json=body, headers=account.headers)

    assert response.status_code in (200, 204), response.text
    assert (await b.get(f"{API}/users/me", headers=account.headers)).status_code == 401
    assert (await a.get(f"{API}/users/me", headers=account.headers)).status_code == 401


async def test_a_profile_change_through_one_worker_is_what_the_other_shows(workers):
    a, b = workers
    account = await register(a)
    assert (await b.get(f"{API}/users/me", headers=account.headers)).json()["bio"] == ""

    changed = await a.patch(f"{API}/users/me", json={"bio": "Changed on A."}, headers=account.headers)

    assert changed.status_code == 200, changed.text
    assert (await b.get(f"{API}/users/me", headers=account.headers)).json()["bio"] == "Changed on A."


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


@asynccontextmanager
async def row_locked(table: str, where: str, *args: object) -> AsyncIterator[asyncpg.Connection]:
    """Hold a row lock on `table`'s rows matching `where` (as a transaction of this test's own): a job
    writing those rows waits for it, in the middle of its work, until the block exits."""
    connection = await asyncpg.connect(POSTGRES_URL)
    try:
        async with connection.transaction():
            locked = await connection.fetch(f"SELECT 1 FROM {table} WHERE {where} FOR UPDATE", *args)
            assert locked, f"no {table} row to lock"
            yield connection
    finally:
        await connection.close()


async def a_job_waits_for(lock: asyncpg.Connection, within: float = 20.0) -> None:
    """Wait until another PostgreSQL session (a worker's job) is blocked on the lock `lock` holds."""
    holder = lock.get_server_pid()

    async def blocked() -> bool:
        waiting = await lock.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))", holder
        )
        return waiting > 0

    await eventually(blocked, within=within)


async def test_a_worker_killed_while_indexing_leaves_the_video_indexed(workers):
    if workers.runs_in != "qstash":
        pytest.skip(SKIP_LOOPS)
    b = workers.b
    owner = await register(b)
    await add_video(b, owner, title=f"Warm-up {uuid.uuid4().hex[:6]}")  # the vocabulary revision row
    await indexed(b, within=20.0)

    # Worker A (where QStash delivers) takes the video's outbox event and writes the index, then waits
    # for the vocabulary's revision row, which this test holds: killed there, mid-job.
    async with row_locked("search_vocabulary_revision", "id = 1") as lock:
        video = await add_video(b, owner, **TOPICS["marathon"])
        await a_job_waits_for(lock)
        workers.servers[0].kill()
    await workers.restart_a()

    # The killed delivery's event is leased to it; once the lease runs out the periodic sweep, another
    # QStash delivery, indexes the video (the vocabulary included) and acknowledges the event.
    await indexed(b, within=OUTBOX_LEASE_SECONDS + 30.0)
    assert (await found(b, "marathon training plan"))[0] == video["id"]
    assert await found(b, "marathon", mode="keyword") == [video["id"]]


async def test_a_worker_killed_while_flushing_views_loses_and_doubles_no_view(workers):
    if workers.runs_in != "qstash":
        pytest.skip(SKIP_LOOPS)
    a, b = workers
    owner = await register(b)
    video = await add_video(b, owner, title=f"Views {uuid.uuid4().hex[:6]}")
    views = f"{video_url(video['id'])}/views"

    # Worker A's scheduled flush takes the counted views, then waits for the video's row, which this
    # test holds: killed there, with the views taken and not yet written.
    async with row_locked("videos", "id = $1", uuid.UUID(video["id"])) as lock:
        responses = await asyncio.gather(
            *(http.post(views) for http in (a, b) for _ in range(VIEWS_PER_WORKER))
        )
        assert {response.status_code for response in responses} == {202}
        await a_job_waits_for(lock)
        workers.servers[0].kill()
    await workers.restart_a()
    more = await asyncio.gather(*(b.post(views) for _ in range(VIEWS_PER_WORKER)))
    assert {response.status_code for response in more} == {202}

    expected = 3 * VIEWS_PER_WORKER

    async def counted() -> bool:
        return (await video_state(b, video["id"]))["view_count"] >= expected

    # The killed flush's claim is written by a later flush once its lease has run out.
    await eventually(counted, within=CLAIM_LEASE_SECONDS + 30.0)
    await asyncio.sleep(3.0)  # three more scheduled flushes: nothing is counted twice
    assert (await video_state(b, video["id"]))["view_count"] == expected
