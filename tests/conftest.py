"""Test fixtures: every API test runs once per backend, against real services.

| backend id | database | cache, search index |
|---|---|---|
| `sqlite` | SQLite file | in-process cache, embedded index in memory (per app) |
| `postgres` | PostgreSQL at TEST_DATABASE_URL | the same |
| `postgres-upstash` | PostgreSQL at TEST_DATABASE_URL | Upstash Redis and Upstash Vector, through the official SDKs and the local Upstash-compatible servers (upstash_local/) |

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

import asyncpg
import pytest
import redis
from httpx import AsyncClient
from litestar.testing import AsyncTestClient
from piccolo.table import sort_table_classes
from upstash_vector import Index

from app import create_app
from core.database import bind_tables, build_engine
from core.embeddings import DIMENSION
from core.settings import Settings, load_settings
from piccolo_conf import APP_REGISTRY
from tests.services import IN_CI, POSTGRES_URL, TEST_REDIS
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
class Backend:
    """What the API tests of one backend run on: a migrated database, plus what make_settings adds."""

    database_url: str
    upstash: LocalUpstash | None = None

    @property
    def settings(self) -> dict[str, str]:
        return self.upstash.settings if self.upstash is not None else {}


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
    return Backend(url, request.getfixturevalue("local_upstash"))


@pytest.fixture(scope="session")
def database_url(backend: Backend) -> str:
    return backend.database_url


@pytest.fixture
def make_settings(backend: Backend) -> Callable[..., Settings]:
    """Settings as a test process would load them, with overrides given as keyword arguments.

    On the Upstash backend the Redis database and the vector index are emptied first: as the tables
    are (see `serve`), but they are shared by every app of a test, so once per test.
    """
    if backend.upstash is not None:
        backend.upstash.empty()

    def make(**overrides: object) -> Settings:
        return load_settings(
            clipdex_environ(backend.database_url, **{**backend.settings, **overrides}), env_dir=ROOT
        )

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


@pytest.fixture
async def serve(
    make_settings: Callable[..., Settings],
) -> Callable[..., AbstractAsyncContextManager[AsyncClient]]:
    """Start the app (lifespan included) on emptied tables; yields an HTTP client for it."""

    @asynccontextmanager
    async def start(**overrides: object) -> AsyncIterator[AsyncClient]:
        settings = make_settings(**overrides)
        await _empty_all_tables(settings)
        async with AsyncTestClient(app=create_app(settings)) as client:
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
