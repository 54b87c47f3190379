"""clipdex's background work with QStash selected: the app runs no loop of its own; each video write is
indexed by a job QStash delivers to the app, a periodic sweep delivers what no job announced, and the
jobs endpoint refuses calls QStash did not sign. Against the local QStash server and a real app on uvicorn.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import REGISTRY
from qstash import AsyncQStash

from app import create_app
from core.background import running_loops
from core.database import write_transaction
from core.outbox import OutboxEvent, publish
from core.settings import Settings, load_settings
from features.videos.videos import VIDEO_CHANGES, Video
from tests.conftest import ROOT, clipdex_environ, migrate
from tests.core.test_job_contract import eventually
from tests.features.search_support import found, register
from tests.features.videos_support import add_video, serve_here
from tests.live_server import free_port, serving_in_loop
from upstash_local.qstash_server import LocalQStashServer


@pytest.fixture(scope="module")
def qstash_server() -> Iterator[LocalQStashServer]:
    with LocalQStashServer.start(
        options=["--retry-delay-scale", "0.001", "--cron-minute-seconds", "1"]
    ) as server:
        yield server


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path}/clipdex.sqlite3"
    migrate(url)
    return url


async def qstash_settings(server: LocalQStashServer, database_url: str, port: int) -> Settings:
    keys = await AsyncQStash(server.token, base_url=server.url).signing_key.get()
    return load_settings(
        clipdex_environ(
            database_url,
            vector_index_path=":memory:",
            qstash_token=server.token,
            qstash_current_signing_key=keys.current,
            qstash_next_signing_key=keys.next,
            qstash_url=server.url,
            public_base_url=f"http://127.0.0.1:{port}",
        ),
        env_dir=ROOT,
    )


@pytest.fixture
async def qstash_app(qstash_server: LocalQStashServer, database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    port = free_port()
    settings = await qstash_settings(qstash_server, database_url, port)
    client = AsyncQStash(qstash_server.token, base_url=qstash_server.url)
    try:
        async with (
            serving_in_loop(create_app(settings), port) as url,
            httpx.AsyncClient(base_url=url, timeout=30) as http,
        ):
            yield http
    finally:
        for schedule in await client.schedule.list():
            if schedule.destination.startswith(f"http://127.0.0.1:{port}/"):
                await client.schedule.delete(schedule.schedule_id)


async def test_the_embedded_default_runs_its_loops_in_process(database_url: str) -> None:
    """The contrast to the QStash test below: without QStash the loops run, and there is no jobs URL."""
    settings = load_settings(clipdex_environ(database_url, vector_index_path=":memory:"), env_dir=ROOT)
    async with serve_here(lambda **_: settings) as http:
        assert {"search.outbox-sweep", "views.flush"} <= running_loops()
        assert (await http.post("/api/internal/jobs/search.index", json={"keys": []})).status_code == 404
        assert (await http.get("/ready")).json()["dependencies"]["jobs"]["details"]["runs_in"] == "process"
    assert running_loops() == frozenset()


async def test_with_qstash_no_loop_runs_and_each_write_is_indexed_by_a_job(
    qstash_app: httpx.AsyncClient, qstash_server: LocalQStashServer
) -> None:
    http = qstash_app
    assert running_loops() == frozenset()
    schedules = await AsyncQStash(qstash_server.token, base_url=qstash_server.url).schedule.list()
    jobs_url = str(http.base_url).rstrip("/") + "/api/internal/jobs"
    ours = {s.schedule_id: s.destination for s in schedules if s.destination.startswith(jobs_url)}
    assert ours == {
        "clipdex-search.outbox-sweep": f"{jobs_url}/search.outbox-sweep",
        "clipdex-views.flush": f"{jobs_url}/views.flush",
    }

    owner = await register(http)
    video = await add_video(http, owner, title="Quasar telescopes at dawn", tags=["astronomy"])

    async def indexed() -> bool:
        return video["id"] in await found(http, "quasar telescopes")

    await eventually(indexed)
    await eventually(_outbox_empty)  # acknowledged just after the index write
    ready = (await http.get("/ready")).json()["dependencies"]
    assert ready["jobs"]["details"] == {"runs_in": "qstash", "failed": 0}
    metrics = (await http.get("/metrics")).text
    assert 'clipdex_job_runs_total{job="search.index",outcome="done"}' in metrics
    assert 'clipdex_outbox_oldest_age_seconds{topic="videos"} 0.0' in metrics
    assert "/api/internal/jobs" not in (await http.get("/schema/openapi.json")).text
    assert running_loops() == frozenset()


async def test_with_qstash_the_sweep_delivers_a_change_no_job_announced(
    qstash_app: httpx.AsyncClient,
) -> None:
    """A crash between a commit and its announcement: the change is in the outbox only."""
    http = qstash_app
    owner = await register(http)
    video = await add_video(http, owner, title="Sourdough starters", tags=["baking"])
    video_id = uuid.UUID(video["id"])
    engine = Video._meta.db
    async with write_transaction(engine):  # as a write would, but nothing announces it
        await Video.update({Video.title: "Marmalade from bitter oranges"}).where(Video.id == video_id)
        await publish(VIDEO_CHANGES, str(video_id))

    async def swept() -> bool:
        return video["id"] in await found(http, "bitter orange marmalade")

    await eventually(swept, within=30)
    await eventually(_outbox_empty)


async def test_with_qstash_the_jobs_endpoint_refuses_an_unsigned_call(qstash_app: httpx.AsyncClient) -> None:
    http = qstash_app
    owner = await register(http)
    before = _index_runs()
    video = await add_video(http, owner, title="Glacier caves", tags=["ice"])
    await eventually(lambda: _index_runs() == before + 1)  # the write's own job, signed by QStash
    runs = _index_runs()

    refused = await http.post("/api/internal/jobs/search.index", json={"keys": [video["id"]]})
    forged = await http.post(
        "/api/internal/jobs/search.index",
        json={"keys": [video["id"]]},
        headers={"Upstash-Signature": "x.y.z"},
    )

    for response in (refused, forged):
        assert response.status_code == 401
        assert response.headers["content-type"].startswith("application/problem+json")
    assert _index_runs() == runs  # the job did not run


def _index_runs() -> float:
    labels = {"job": "search.index", "outcome": "done"}
    return REGISTRY.get_sample_value("clipdex_job_runs_total", labels) or 0.0


async def _outbox_empty() -> bool:
    return await OutboxEvent.count() == 0


async def test_with_qstash_a_reindex_runs_as_a_chain_of_batch_jobs(
    qstash_app: httpx.AsyncClient, qstash_server: LocalQStashServer
) -> None:
    http = qstash_app
    owner = await register(http)
    videos = [await add_video(http, owner, title=f"Lighthouse keeper {n}", tags=["sea"]) for n in range(3)]
    await eventually(_outbox_empty)
    before = _runs("search.reindex-batch")

    client = AsyncQStash(qstash_server.token, base_url=qstash_server.url)
    await client.message.publish_json(
        url=str(http.base_url).rstrip("/") + "/api/internal/jobs/search.reindex-batch",
        body={"run": uuid.uuid4().hex, "after": None, "batch_size": 1},
    )

    # One job per video, each enqueueing the next, and a last one that finds none left.
    await eventually(lambda: _runs("search.reindex-batch") == before + len(videos) + 1)
    assert set(await found(http, "lighthouse keeper")) >= {video["id"] for video in videos}


def _runs(job: str) -> float:
    return REGISTRY.get_sample_value("clipdex_job_runs_total", {"job": job, "outcome": "done"}) or 0.0
