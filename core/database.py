"""The Piccolo database engine: SQLite by default, PostgreSQL when DATABASE_URL says so."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

import asyncpg
from piccolo.engine.base import Engine
from piccolo.engine.postgres import PostgresEngine
from piccolo.engine.sqlite import SQLiteEngine, TransactionType
from piccolo.table import Table

from core.settings import Settings

# One engine per database per process. Piccolo binds tables to an engine globally and tracks the
# current transaction per engine object, so two app instances in one process (tests, the CLI) with
# engines of their own would run a transaction on one engine and its queries on the other: the
# queries then wait on the transaction's own write lock.
_ENGINES: dict[str, Engine] = {}
_OPENED: dict[int, int] = {}


def build_engine(settings: Settings) -> Engine:
    """The engine for the configured database (shared within the process); nothing is connected yet."""
    engine = _ENGINES.get(settings.database_url)
    if engine is not None:
        return engine
    if settings.is_sqlite:
        path = settings.sqlite_path
        path.parent.mkdir(parents=True, exist_ok=True)
        # `timeout` is sqlite3's busy timeout: a writer waits for the lock instead of failing at once.
        engine = SQLiteEngine(path=str(path), timeout=settings.sqlite_busy_timeout_seconds)
    else:
        engine = PostgresEngine(config={"dsn": settings.database_url})
    _ENGINES[settings.database_url] = engine
    return engine


def bind_tables(engine: Engine, tables: Iterable[type[Table]]) -> None:
    """Point every table at this engine, so queries never fall back to piccolo_conf's own."""
    for table in tables:
        table._meta.db = engine


async def open_database(engine: Engine, settings: Settings) -> None:
    """Prepare the engine for an app's lifespan; apps sharing it each open and close it once."""
    _OPENED[id(engine)] = _OPENED.get(id(engine), 0) + 1
    if isinstance(engine, SQLiteEngine):
        # WAL lets readers carry on while one writer commits; the mode is stored in the file itself.
        await engine.run_ddl("PRAGMA journal_mode=WAL")
    elif isinstance(engine, PostgresEngine) and _OPENED[id(engine)] == 1:
        await engine.start_connection_pool(
            min_size=settings.postgres_pool_min_size, max_size=settings.postgres_pool_max_size
        )


async def close_database(engine: Engine) -> None:
    _OPENED[id(engine)] = _OPENED.get(id(engine), 1) - 1
    if isinstance(engine, PostgresEngine) and _OPENED[id(engine)] == 0:
        await engine.close_connection_pool()


def write_transaction(engine: Engine):
    """A transaction for read-then-write work.

    On SQLite it starts IMMEDIATE, taking the write lock up front: a DEFERRED transaction that reads and
    then writes can fail with "database is locked" instead of waiting out the busy timeout.
    """
    if isinstance(engine, SQLiteEngine):
        return engine.transaction(transaction_type=TransactionType.immediate)
    return engine.transaction()


async def check_database(engine: Engine) -> None:
    """Raise if the database does not answer a trivial query."""
    await engine.run_ddl("SELECT 1", in_pool=True)


def is_unique_violation(exc: BaseException) -> bool:
    """Whether a failed write broke a UNIQUE constraint, on either engine."""
    if isinstance(exc, sqlite3.IntegrityError):
        return "UNIQUE" in str(exc)
    return isinstance(exc, asyncpg.UniqueViolationError)
