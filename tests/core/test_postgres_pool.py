"""The PostgreSQL pool gives connections back without asyncpg's reset query (one round trip a pooled
read, not two), and still never hands on an open transaction."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from piccolo.engine.postgres import PostgresEngine

from core.database import PooledPostgresConnection, build_engine, close_database, open_database
from core.settings import load_settings
from tests.conftest import ROOT, clipdex_environ
from tests.services import IN_CI, POSTGRES_URL


@pytest.fixture
async def pool() -> AsyncIterator[object]:
    if not POSTGRES_URL:
        if IN_CI:
            pytest.fail("CI=true but TEST_DATABASE_URL is not set")
        pytest.skip("TEST_DATABASE_URL is not set (CI sets it)")
    settings = load_settings(
        clipdex_environ(POSTGRES_URL, postgres_pool_min_size=1, postgres_pool_max_size=1), env_dir=ROOT
    )
    engine = build_engine(settings)
    assert isinstance(engine, PostgresEngine)
    await open_database(engine, settings)
    try:
        yield engine.pool
    finally:
        await close_database(engine)


async def test_a_released_connection_runs_no_reset_query(pool) -> None:
    connection = await pool.acquire()
    assert isinstance(connection, PooledPostgresConnection)
    queries: list[str] = []
    connection.add_query_logger(lambda record: queries.append(record.query))
    await connection.fetch("SELECT 1")
    await pool.release(connection)

    assert queries == ["SELECT 1"]


async def test_a_transaction_left_open_is_rolled_back_on_release(pool) -> None:
    connection = await pool.acquire()
    await connection.execute("CREATE TEMP TABLE pool_probe (id int)")  # gone with the connection
    await connection.execute("BEGIN")
    await connection.execute("INSERT INTO pool_probe VALUES (1)")
    await pool.release(connection)  # as a request cut off mid-transaction would

    again = await pool.acquire()  # the pool's only connection: the same one, its temp table kept
    try:
        assert not again.is_in_transaction()
        assert await again.fetchval("SELECT count(*) FROM pool_probe") == 0
    finally:
        await pool.release(again)
