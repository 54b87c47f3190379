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

# One SQLite engine per database file per process. Piccolo binds tables to an engine globally and
# tracks the current transaction per engine object, so two app instances in one process (the tests)
# with engines of their own would run a transaction on one engine and its queries on the other, and
# on SQLite those queries then wait on the transaction's own database-wide write lock. PostgreSQL
# engines stay per app: each owns an asyncpg pool, which belongs to the event loop that opened it.
_ENGINES: dict[str, Engine] = {}


def build_engine(settings: Settings) -> Engine:
    """The engine for the configured database (shared within the process); nothing is connected yet."""
    if settings.is_sqlite:
        if (engine := _ENGINES.get(settings.database_url)) is not None:
            return engine
        path = settings.sqlite_path
        path.parent.mkdir(parents=True, exist_ok=True)
        # `timeout` is sqlite3's busy timeout: a writer waits for the lock instead of failing at once.
        engine = _ENGINES[settings.database_url] = SQLiteEngine(
            path=str(path), timeout=settings.sqlite_busy_timeout_seconds
        )
        return engine
    return PostgresEngine(config={"dsn": settings.database_url})


def bind_tables(engine: Engine, tables: Iterable[type[Table]]) -> None:
    """Point every table at this engine, so queries never fall back to piccolo_conf's own."""
    for table in tables:
        table._meta.db = engine


async def open_database(engine: Engine, settings: Settings) -> None:
    if isinstance(engine, SQLiteEngine):
        # WAL lets readers carry on while one writer commits; the mode is stored in the file itself.
        await engine.run_ddl("PRAGMA journal_mode=WAL")
    elif isinstance(engine, PostgresEngine):
        await engine.start_connection_pool(
            min_size=settings.postgres_pool_min_size, max_size=settings.postgres_pool_max_size
        )


async def close_database(engine: Engine) -> None:
    if isinstance(engine, PostgresEngine):
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


def owns_tables(engine: Engine, table: type[Table]) -> bool:
    """Whether `table` is bound to this engine: false for an older app instance in the same process
    (tests run several), whose background work must then stand down rather than run its queries on
    another instance's engine, pool and event loop."""
    return table._meta._db is engine
