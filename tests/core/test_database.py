"""The SQLite engine's connection pool: reuse, and no connection handed on in a bad state."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from piccolo.columns import Integer, Varchar
from piccolo.table import Table

from core.database import PooledSQLiteEngine, PreparedQuery, check_database, close_database, write_transaction


class Thing(Table, tablename="things"):
    name = Varchar(length=20, unique=True)
    size = Integer(default=0)


@pytest.fixture
async def engine(tmp_path: Path):
    engine = PooledSQLiteEngine(path=str(tmp_path / "pool.sqlite3"), timeout=5, idle_connections=2)
    previous = Thing._meta.db
    Thing._meta.db = engine
    await engine.run_ddl("PRAGMA journal_mode=WAL")
    await Thing.create_table()
    yield engine
    await close_database(engine)
    Thing._meta.db = previous


async def test_queries_reuse_one_open_connection(engine: PooledSQLiteEngine) -> None:
    await Thing.insert(Thing(name="a"))
    first = await engine.get_connection()
    await engine.release(first)
    for _ in range(5):
        assert await Thing.count() == 1
    again = await engine.get_connection()
    assert again is first
    await engine.release(again)


async def test_foreign_keys_are_on_for_pooled_connections(engine: PooledSQLiteEngine) -> None:
    assert await engine.run_ddl("PRAGMA foreign_keys") == [{"foreign_keys": 1}]


async def test_a_failed_write_leaves_no_open_transaction_behind(engine: PooledSQLiteEngine) -> None:
    await Thing.insert(Thing(name="a"))
    with pytest.raises(sqlite3.IntegrityError):
        await Thing.insert(Thing(name="a"))
    connection = await engine.get_connection()
    assert not connection.in_transaction
    await engine.release(connection)
    await Thing.insert(Thing(name="b"))  # the pool still writes: no lock is held
    assert await Thing.count() == 2


async def test_a_rolled_back_transaction_changes_nothing_and_frees_its_connection(
    engine: PooledSQLiteEngine,
) -> None:
    async def abandoned_write() -> None:
        async with write_transaction(engine):
            await Thing.insert(Thing(name="gone"))
            raise RuntimeError("abandon")

    with pytest.raises(RuntimeError):
        await abandoned_write()
    assert await Thing.count() == 0
    async with write_transaction(engine):
        await Thing.insert(Thing(name="kept"))
    assert [row["name"] for row in await Thing.select(Thing.name)] == ["kept"]


async def test_concurrent_transactions_and_reads_all_complete(engine: PooledSQLiteEngine) -> None:
    await Thing.insert(Thing(name="counter"))

    async def bump() -> None:
        async with write_transaction(engine):
            await Thing.update({Thing.size: Thing.size + 1}).where(Thing.name == "counter")

    await asyncio.gather(*(bump() for _ in range(30)), *(Thing.count() for _ in range(30)))
    assert (await Thing.select(Thing.size).first())["size"] == 30
    assert len(engine._idle) <= 2  # idle_connections bounds what is kept


async def test_write_transactions_queue_in_process_instead_of_timing_out(tmp_path: Path) -> None:
    # A 10 ms busy timeout: writers left to SQLite's busy handler would fail with "database is locked"
    # behind 40 transactions that each hold the write lock for 5 ms.
    engine = PooledSQLiteEngine(path=str(tmp_path / "queue.sqlite3"), timeout=0.01)
    previous = Thing._meta.db
    Thing._meta.db = engine
    try:
        await Thing.create_table()

        async def slow_insert(number: int) -> None:
            async with write_transaction(engine):
                await Thing.insert(Thing(name=f"t{number}"))
                await asyncio.sleep(0.005)

        await asyncio.gather(*(slow_insert(number) for number in range(40)))
        assert await Thing.count() == 40
    finally:
        await close_database(engine)
        Thing._meta.db = previous


async def test_a_cancelled_transaction_is_rolled_back_and_its_connection_dropped(
    engine: PooledSQLiteEngine,
) -> None:
    started = asyncio.Event()

    async def slow_write() -> None:
        async with write_transaction(engine):
            await Thing.insert(Thing(name="half"))
            started.set()
            await asyncio.sleep(10)

    task = asyncio.create_task(slow_write())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await Thing.count() == 0
    async with write_transaction(engine):  # the write lock was released
        await Thing.insert(Thing(name="after"))
    assert await Thing.count() == 1


def _replace_with_a_directory(database: Path) -> None:
    for path in database.parent.glob(database.name + "*"):
        path.unlink()
    database.mkdir()


async def test_readiness_notices_a_database_file_gone_under_open_connections(
    engine: PooledSQLiteEngine, tmp_path: Path
) -> None:
    await check_database(engine)
    await asyncio.to_thread(_replace_with_a_directory, tmp_path / "pool.sqlite3")
    with pytest.raises(sqlite3.OperationalError):
        await check_database(engine)


_BY_NAME = PreparedQuery(
    Thing, lambda _, name: Thing.select(Thing.name, Thing.size).where(Thing.name == name)
)
# A stand-in used twice, a constant between, and the shape (the limit) changing the SQL.
_SIZED = PreparedQuery(
    Thing,
    lambda limit, size, name: (
        Thing.select(Thing.name)
        .where((Thing.size == size) | ((Thing.name != "z") & (Thing.size > size) & (Thing.name == name)))
        .order_by(Thing.name)
        .limit(limit)
    ),
)


async def test_a_prepared_query_binds_its_arguments_by_position(engine: PooledSQLiteEngine) -> None:
    await Thing.insert(Thing(name="a", size=1), Thing(name="b", size=2), Thing(name="c", size=1))
    assert [dict(row) for row in await _BY_NAME.rows("b")] == [{"name": "b", "size": 2}]
    assert await _BY_NAME.rows("nobody") == []
    assert [row["name"] for row in await _SIZED.rows(1, "b", shape=5)] == ["a", "b", "c"]
    assert [row["name"] for row in await _SIZED.rows(1, "b", shape=2)] == ["a", "b"]
    assert [row["name"] for row in await _SIZED.rows(2, "a", shape=5)] == ["b"]


async def test_a_prepared_query_is_compiled_once_per_engine_type_and_shape() -> None:
    first = _SIZED.sql("sqlite", 3, 2)
    assert _SIZED.sql("sqlite", 3, 2) is first
    assert _SIZED.sql("sqlite", 4, 2) is not first
    postgres, args = _SIZED.sql("postgres", 3, 2)
    assert "$4" in postgres
    assert "LIMIT 3" in postgres
    assert [getattr(arg, "position", arg) for arg in args] == [0, "z", 0, 1]


class _RolledBack(Exception):
    pass


async def test_a_prepared_query_in_a_transaction_runs_on_its_connection(engine: PooledSQLiteEngine) -> None:
    seen_inside: list[int] = []

    async def insert_then_roll_back() -> None:
        async with write_transaction(engine):
            await Thing.insert(Thing(name="new", size=3))
            seen_inside.extend(row["size"] for row in await _BY_NAME.rows("new"))
            raise _RolledBack

    with pytest.raises(_RolledBack):
        await insert_then_roll_back()
    assert seen_inside == [3]  # the uncommitted row, read on the transaction's own connection
    assert await _BY_NAME.rows("new") == []


@pytest.mark.parametrize("synchronous", ["NORMAL", "FULL"])
async def test_pooled_connections_use_the_configured_synchronous_mode(
    tmp_path: Path, synchronous: str
) -> None:
    engine = PooledSQLiteEngine(path=str(tmp_path / "sync.sqlite3"), timeout=5, synchronous=synchronous)
    try:
        # PRAGMA synchronous answers 1 for NORMAL, 2 for FULL.
        assert await engine.run_ddl("PRAGMA synchronous") == [
            {"synchronous": {"NORMAL": 1, "FULL": 2}[synchronous]}
        ]
    finally:
        await close_database(engine)
