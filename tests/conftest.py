"""Test fixtures: every API test runs once per database backend, against real databases.

SQLite always; PostgreSQL when TEST_DATABASE_URL is set. In CI (CI=true) a missing PostgreSQL fails
the run instead of skipping it.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from httpx import AsyncClient
from litestar.testing import AsyncTestClient
from piccolo.table import sort_table_classes

from app import create_app
from core.database import bind_tables, build_engine
from core.settings import Settings, load_settings
from piccolo_conf import APP_REGISTRY

ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
POSTGRES_URL = os.environ.get("TEST_DATABASE_URL", "")

ALL_TABLES = sort_table_classes(
    [table for config in APP_REGISTRY.app_configs.values() for table in config.table_classes]
)


def _backends() -> list[Any]:
    postgres = pytest.param(
        "postgres",
        marks=[]
        if POSTGRES_URL or IN_CI
        else [pytest.mark.skip(reason="TEST_DATABASE_URL is not set (CI sets it)")],
    )
    return ["sqlite", postgres]


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


@pytest.fixture(scope="session", params=_backends())
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('sqlite')}/clipdex.sqlite3"
    else:
        url = POSTGRES_URL
        asyncio.run(reset_postgres(url))
    migrate(url)
    return url


@pytest.fixture
def make_settings(database_url: str) -> Callable[..., Settings]:
    """Settings as a test process would load them, with overrides given as keyword arguments."""

    def make(**overrides: object) -> Settings:
        return load_settings(clipdex_environ(database_url, **overrides), env_dir=ROOT)

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
