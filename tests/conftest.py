"""Test fixtures: every API test runs once per backend, against real services.

| backend id | database | cache, search index |
|---|---|---|
| `sqlite` | SQLite file | in-process cache, embedded index in memory (per app) |
| `postgres` | PostgreSQL at TEST_DATABASE_URL | the same |
| `postgres-upstash` | PostgreSQL at TEST_DATABASE_URL | Upstash Redis and Upstash Vector, through the official SDKs and the local Upstash-compatible servers (upstash_local/) |

Background jobs run in the app's own loops, except on `postgres-upstash`: there QStash (the local server)
runs them, calling each app back over real HTTP (uvicorn on this event loop, not the test client), and
every test checks that its apps ran no loop of their own.

SQLite always; the PostgreSQL backends when TEST_DATABASE_URL is set. In CI (CI=true) a missing
PostgreSQL or Redis fails the run instead of skipping it.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest
import redis
from httpx import AsyncClient
from litestar import Litestar
from litestar.testing import AsyncTestClient
from piccolo.table import sort_table_classes
from qstash import QStash
from upstash_vector import Index

from app import create_app
from core.background import running_loops
from core.database import bind_tables, build_engine
from core.embeddings import DIMENSION
from core.qstash_jobs import JOBS_PATH
from core.settings import Settings, load_settings
from piccolo_conf import APP_REGISTRY
from tests.live_server import SERVER_TASKS, free_port, serving_in_loop
from tests.services import IN_CI, POSTGRES_URL, TEST_REDIS
from upstash_local.qstash_server import LocalQStashServer
from upstash_local.redis_server import LocalServer, serve_in_subprocess
from upstash_local.vector_server import LocalVectorServer

# The `chromium` and `browser_page` fixtures, for the tests that use a real browser.
pytest_plugins = ["tests.browser"]

ROOT = Path(__file__).resolve().parent.parent
# The Redis database behind the local Upstash Redis server; emptied at session start and before each test.
UPSTASH_REDIS_URL = f"{TEST_REDIS}/12"

ALL_TABLES = sort_table_classes(
    [table for config in APP_REGISTRY.app_configs.values() for table in config.table_classes]
)


def _backends() -> list[Any]:
    needs_postgres = (
        []
        if POSTGRES_URL or IN_CI
        else [pytest.mark.skip(reason="TEST_DATABASE_URL is not set (CI sets it)")]
    )
    return [
        "sqlite",
        pytest.param("postgres", marks=needs_postgres),
        pytest.param("postgres-upstash", marks=needs_postgres),
    ]


def clipdex_environ(database_url: str, **overrides: object) -> dict[str, str]:
    """The environment a clipdex process under test gets: APP_ENV=test plus the given settings."""
    environ = {"APP_ENV": "test", "DATABASE_URL": database_url}
    environ.update({key.upper(): str(value) for key, value in overrides.items()})
    return environ


def migrate(database_url: str) -> None:
    """Apply every migration with Piccolo's own command, as `make migrate` does."""
    result = subprocess.run(
        [sys.executable, "-m", "piccolo.main", "migrations", "forwards", "all"],
        cwd=ROOT,
        env={**os.environ, **clipdex_environ(database_url)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


async def reset_postgres(database_url: str) -> None:
    if not POSTGRES_URL:
        pytest.fail("CI=true but TEST_DATABASE_URL is not set: PostgreSQL tests must run in CI")
    try:
        connection = await asyncpg.connect(database_url, timeout=10)
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.fail(f"PostgreSQL at TEST_DATABASE_URL is not reachable: {exc}")
    try:
        await connection.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
    finally:
        await connection.close()


@dataclass(frozen=True)
class LocalUpstash:
    """The local Upstash Redis and Upstash Vector servers, as clipdex settings and a way to empty them."""

    redis_server: LocalServer
    vector_server: LocalVectorServer
    redis: redis.Redis  # straight to the Redis database behind the Redis server
    index: Index  # the official SDK's client of the vector server

    @property
    def settings(self) -> dict[str, str]:
        """What selects the Upstash backends (see core.backends)."""
        return {
            "upstash_redis_rest_url": self.redis_server.url,
            "upstash_redis_rest_token": self.redis_server.token,
            "upstash_vector_rest_url": self.vector_server.url,
            "upstash_vector_rest_token": self.vector_server.token,
            "vector_embedding": "local",
        }

    def empty(self) -> None:
        """Forget everything earlier tests left: the Redis database and every namespace of the index."""
        self.redis.flushdb()
        self.index.reset(all=True)
        for namespace in self.index.list_namespaces():
            if namespace:
                self.index.delete_namespace(namespace)


@pytest.fixture(scope="session")
def local_upstash() -> Iterator[LocalUpstash]:
    """Both local Upstash servers, started once per session as child processes and stopped at its end:
    Redis REST in front of Redis database 12 (emptied first), and a HYBRID 384-d COSINE vector index
    without hosted models (for VECTOR_EMBEDDING=local), in memory. Without Redis: skipped, or failed in CI.
    """
    client = redis.Redis.from_url(UPSTASH_REDIS_URL, socket_connect_timeout=2, socket_timeout=10)
    try:
        client.flushdb()
    except redis.RedisError as exc:
        client.close()
        message = f"Redis at {UPSTASH_REDIS_URL} is not reachable ({exc}); the Upstash backend needs it"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    with (
        closing(client),
        serve_in_subprocess(UPSTASH_REDIS_URL, secrets.token_urlsafe(24)) as redis_server,
        LocalVectorServer.start(index_type="HYBRID", similarity="COSINE", dimension=DIMENSION) as vector,
    ):
        index = Index(vector.url, vector.token, retries=0, allow_telemetry=False)
        yield LocalUpstash(redis_server, vector, client, index)


@dataclass(frozen=True)
class LocalQStash:
    """The local QStash server, as clipdex settings (all but PUBLIC_BASE_URL, each app's own) and a way
    to empty it."""

    server: LocalQStashServer
    client: QStash
    current_signing_key: str
    next_signing_key: str

    @property
    def settings(self) -> dict[str, str]:
        return {
            "qstash_token": self.server.token,
            "qstash_url": self.server.url,
            "qstash_current_signing_key": self.current_signing_key,
            "qstash_next_signing_key": self.next_signing_key,
        }

    def empty(self) -> None:
        """Forget earlier tests' schedules and undelivered messages (their apps are gone)."""
        for schedule in self.client.schedule.list():
            self.client.schedule.delete(schedule.schedule_id)
        self.client.message.cancel_all()


@pytest.fixture(scope="session")
def local_qstash() -> Iterator[LocalQStash]:
    """The local QStash server, started once per session as a child process, in memory: retry delays cut
    to a thousandth, and a cron minute lasting a second (so a job declared every few seconds, a
    `* * * * *` schedule, runs every second)."""
    with LocalQStashServer.start(
        options=["--retry-delay-scale", "0.001", "--cron-minute-seconds", "1"]
    ) as server:
        client = QStash(server.token, base_url=server.url)
        keys = client.signing_key.get()
        yield LocalQStash(server, client, keys.current, keys.next)


@dataclass(frozen=True)
class Backend:
    """What the API tests of one backend run on: a migrated database, plus what make_settings adds."""

    database_url: str
    upstash: LocalUpstash | None = None
    qstash: LocalQStash | None = None

    @property
    def settings(self) -> dict[str, str]:
        return {
            **(self.upstash.settings if self.upstash is not None else {}),
            **(self.qstash.settings if self.qstash is not None else {}),
        }


@pytest.fixture(scope="session", params=_backends())
def backend(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Backend:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('sqlite')}/clipdex.sqlite3"
    else:
        url = POSTGRES_URL
        asyncio.run(reset_postgres(url))
    migrate(url)
    if request.param != "postgres-upstash":
        return Backend(url)
    return Backend(url, request.getfixturevalue("local_upstash"), request.getfixturevalue("local_qstash"))


@pytest.fixture(scope="session")
def database_url(backend: Backend) -> str:
    return backend.database_url


@pytest.fixture
def make_settings(backend: Backend) -> Callable[..., Settings]:
    """Settings as a test process would load them, with overrides given as keyword arguments.

    On the Upstash backend the Redis database, the vector index and QStash are emptied first: as the
    tables are (see `serve`), but they are shared by every app of a test, so once per test. There each
    settings made get an address of their own (PUBLIC_BASE_URL, a free port), where `serve_app` serves
    the app and QStash calls it.
    """
    if backend.upstash is not None:
        backend.upstash.empty()
    if backend.qstash is not None:
        backend.qstash.empty()

    def make(**overrides: object) -> Settings:
        values: dict[str, object] = {**backend.settings, **overrides}
        if backend.qstash is not None:
            values.setdefault("public_base_url", f"http://127.0.0.1:{free_port()}")
        return load_settings(clipdex_environ(backend.database_url, **values), env_dir=ROOT)

    return make


async def _empty_all_tables(settings: Settings) -> None:
    engine = build_engine(settings)
    bind_tables(engine, ALL_TABLES)
    if settings.is_sqlite:
        for table in reversed(ALL_TABLES):
            await table.delete(force=True)
    else:
        names = ", ".join(table._meta.tablename for table in ALL_TABLES)
        await engine.run_ddl(f"TRUNCATE {names} CASCADE")


@asynccontextmanager
async def serve_app(app: Litestar, settings: Settings) -> AsyncIterator[AsyncClient]:
    """`app` (made from `settings`) running, lifespan included, with an HTTP client for it: Litestar's
    test client, or, when QStash runs the jobs, uvicorn at PUBLIC_BASE_URL on this event loop (QStash
    must reach the app over HTTP), checked to run no background loop of its own."""
    if not settings.uses_qstash:
        async with AsyncTestClient(app=app) as client:
            yield client
        return
    port = urlsplit(settings.public_base_url).port
    assert port is not None, settings.public_base_url
    # The jobs endpoint is routed only when QStash runs the jobs (app.create_app).
    assert any(route.path.startswith(JOBS_PATH) for route in app.routes), "the app's jobs run in process"
    async with serving_in_loop(app, port) as url, AsyncClient(base_url=url, timeout=30) as client:
        client.app = app  # type: ignore[attr-defined]  # as Litestar's test client has it
        yield client
        await assert_no_background_loop()


# A task never ending by itself is a loop; what a request or a delivery started ends within this.
LOOP_GRACE_SECONDS = 10.0
LITESTAR_TASKS = frozenset({"litestar.events.emitter.SimpleEventEmitter._worker"})


async def assert_no_background_loop() -> None:
    """Fail if anything in this process works in a loop of its own: no `repeating` loop is registered
    (core.background), and every task on this event loop but the test's own, uvicorn's (its server, its
    lifespan task holding the app's lifespan open) and Litestar's (its event emitter, which waits for
    events the app emits) ends within LOOP_GRACE_SECONDS."""
    assert running_loops() == frozenset(), f"background loops running: {sorted(running_loops())}"
    others = {
        task
        for task in asyncio.all_tasks()
        if task is not asyncio.current_task()
        and task not in SERVER_TASKS
        and getattr(task.get_coro(), "__qualname__", "") != "LifespanOn.main"
        and task.get_name() not in LITESTAR_TASKS
    }
    if others:
        _, pending = await asyncio.wait(others, timeout=LOOP_GRACE_SECONDS)
        assert not pending, f"tasks still running after {LOOP_GRACE_SECONDS}s: {pending}"


@pytest.fixture
async def serve(
    make_settings: Callable[..., Settings],
) -> Callable[..., AbstractAsyncContextManager[AsyncClient]]:
    """Start the app (lifespan included) on emptied tables; yields an HTTP client for it (see
    `serve_app`)."""

    @asynccontextmanager
    async def start(**overrides: object) -> AsyncIterator[AsyncClient]:
        settings = make_settings(**overrides)
        await _empty_all_tables(settings)
        async with serve_app(create_app(settings), settings) as client:
            yield client

    return start


@pytest.fixture
async def client(
    serve: Callable[..., AbstractAsyncContextManager[AsyncClient]],
) -> AsyncIterator[AsyncClient]:
    async with serve() as client:
        yield client


@dataclass
class Account:
    id: str
    email: str
    username: str
    password: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


SignUp = Callable[..., Awaitable[Account]]


@pytest.fixture
def sign_up(client: AsyncClient) -> SignUp:
    """Register a fresh account through the API and log it in."""

    async def register_and_login(
        username: str | None = None, password: str = "correct-horse-battery", on: AsyncClient | None = None
    ) -> Account:
        http = on or client
        username = username or f"user_{uuid.uuid4().hex[:10]}"
        email = f"{username.lower()}@example.com"
        response = await http.post(
            "/api/v1/auth/register", json={"email": email, "username": username, "password": password}
        )
        assert response.status_code == 201, response.text
        login = await http.post("/api/v1/auth/login", json={"login": username, "password": password})
        assert login.status_code == 200, login.text
        return Account(response.json()["id"], email, username, password, login.json()["access_token"])

    return register_and_login
