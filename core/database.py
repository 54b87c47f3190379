"""The Piccolo database engine: SQLite by default, PostgreSQL when DATABASE_URL says so."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import weakref
from collections.abc import AsyncIterator, Callable, Hashable, Iterable, Sequence
from typing import Any

import aiosqlite
import asyncpg
from piccolo.engine.base import Engine
from piccolo.engine.postgres import PostgresEngine, PostgresTransaction
from piccolo.engine.sqlite import SQLiteEngine, SQLiteTransaction, TransactionType, dict_factory
from piccolo.query.base import Query
from piccolo.table import Table

from core.settings import Settings

# One SQLite engine per database file per process. Piccolo binds tables to an engine globally and
# tracks the current transaction per engine object, so two app instances in one process (the tests)
# with engines of their own would run a transaction on one engine and its queries on the other, and
# on SQLite those queries then wait on the transaction's own database-wide write lock. PostgreSQL
# engines stay per app: each owns an asyncpg pool, which belongs to the event loop that opened it.
_ENGINES: dict[str, Engine] = {}


class PooledSQLiteEngine(SQLiteEngine):
    """Piccolo's SQLite engine, keeping its connections open between queries.

    Piccolo opens a new connection, with a new thread, for every query and every transaction, and
    runs PRAGMA foreign_keys before every statement: 3-10 ms a query on this machine, against ~0.3 ms
    on an open connection (the profile of a like in BENCHMARKS.md). Here connections are opened once with
    the pragma, lent for one query or one transaction and then kept, up to `idle_connections`.
    Lending holds no asyncio primitive, so one engine can serve several event loops in a process.
    """

    def __init__(
        self, path: str, timeout: float, idle_connections: int = 8, synchronous: str = "FULL"
    ) -> None:
        super().__init__(path=path, timeout=timeout)
        self.synchronous = synchronous
        self._idle: list[aiosqlite.Connection] = []
        self._idle_limit = idle_connections
        self._closing: set[asyncio.Task[None]] = set()
        self._writer_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )

    def writer_lock(self) -> asyncio.Lock:
        """This event loop's lock for write transactions (asyncio locks belong to one loop).

        SQLite lets one writer in at a time; the others wait in its busy handler, which sleeps in
        steps of up to 100 ms: under 16 concurrent likes that gave a p99 of 3 s (BENCHMARKS.md).
        Queueing this process's writers here hands the lock on at once, in arrival order; the busy
        timeout still covers writers in other processes.
        """
        loop = asyncio.get_running_loop()
        lock = self._writer_locks.get(loop)
        if lock is None:
            lock = self._writer_locks[loop] = asyncio.Lock()
        return lock

    async def get_connection(self) -> aiosqlite.Connection:
        if self._idle:
            return self._idle.pop()
        connection = aiosqlite.connect(**self.connection_kwargs)
        # An idle connection's worker thread must not keep a finished process alive.
        connection._thread.daemon = True
        await connection
        connection.row_factory = dict_factory  # type: ignore[assignment]
        await connection.execute("PRAGMA foreign_keys = 1")
        # Per connection, not stored in the file (see Settings.sqlite_synchronous).
        await connection.execute(f"PRAGMA synchronous = {self.synchronous}")
        return connection

    async def release(self, connection: aiosqlite.Connection, *, reusable: bool = True) -> None:
        """Take back a lent connection; one left mid-transaction or in doubt is closed, not kept."""
        if reusable and not connection.in_transaction and len(self._idle) < self._idle_limit:
            self._idle.append(connection)
            return
        task = asyncio.get_running_loop().create_task(connection.close())
        self._closing.add(task)  # closed in the background: a cancelled request must not wait for it
        task.add_done_callback(self._closing.discard)

    async def close_idle(self) -> None:
        idle, self._idle = self._idle, []
        for connection in idle:
            await connection.close()

    @contextlib.asynccontextmanager
    async def _lent_connection(self) -> AsyncIterator[aiosqlite.Connection]:
        """A pooled connection for one statement outside a transaction, given back however it ends."""
        connection = await self.get_connection()
        try:
            yield connection
        except Exception:
            if connection.in_transaction:
                await connection.rollback()
            await self.release(connection)
            raise
        except BaseException:  # cancelled mid-statement: its state is unknown
            await self.release(connection, reusable=False)
            raise
        await self.release(connection)

    async def _run_in_new_connection(
        self, query: str, args: list[Any] | None = None, query_type: str = "generic", table: Any = None
    ) -> Any:
        async with self._lent_connection() as connection, connection.execute(query, args or []) as cursor:
            await connection.commit()
            return await cursor.fetchall()

    async def _run_in_existing_connection(
        self,
        connection: aiosqlite.Connection,
        query: str,
        args: list[Any] | None = None,
        query_type: str = "generic",
        table: Any = None,
    ) -> Any:
        # The connection came from get_connection(), which ran the foreign_keys pragma once.
        async with connection.execute(query, args or []) as cursor:
            return await cursor.fetchall()

    async def fetch(self, query: str, args: Sequence[Any]) -> list[Any]:
        """Run compiled SQL and return its rows (dicts), in one hop to the connection's thread: no
        commit after a read (Piccolo commits after every statement, one more hop)."""
        transaction = self.current_transaction.get()
        if transaction is not None:
            return list(await transaction.connection.execute_fetchall(query, args))
        async with self._lent_connection() as connection:
            return list(await connection.execute_fetchall(query, args))

    def transaction(
        self, transaction_type: TransactionType = TransactionType.deferred, allow_nested: bool = True
    ) -> SQLiteTransaction:
        return _PooledTransaction(engine=self, transaction_type=transaction_type, allow_nested=allow_nested)


class _PooledTransaction(SQLiteTransaction):
    """Piccolo's SQLite transaction, giving its connection back to the pool instead of closing it;
    write transactions (IMMEDIATE, EXCLUSIVE) first queue on the engine's writer lock."""

    engine: PooledSQLiteEngine
    _queued: asyncio.Lock | None = None

    async def __aenter__(self) -> SQLiteTransaction:
        if self._parent is None and self.transaction_type is not TransactionType.deferred:
            lock = self.engine.writer_lock()
            await lock.acquire()
            self._queued = lock
        try:
            return await super().__aenter__()
        except BaseException:
            self._release_queue()
            raise

    def _release_queue(self) -> None:
        if self._queued is not None:
            self._queued.release()
            self._queued = None

    async def __aexit__(self, exception_type: Any, exception: Any, traceback: Any) -> bool:
        if self._parent:
            return exception is None
        reusable = False
        try:
            if exception is not None:
                if not self._rolled_back:
                    await self.rollback()
            elif not self._committed and not self._rolled_back:
                await self.commit()
            reusable = not isinstance(exception, asyncio.CancelledError)
        finally:
            self.engine.current_transaction.reset(self.context)
            await self.engine.release(self.connection, reusable=reusable)
            self._release_queue()
        return exception is None


class DatabaseUnavailable(ConnectionError):
    """PostgreSQL could not be reached or went away mid-request: refused, reset, shutting down, starting
    up, or past a deadline (POSTGRES_CONNECT_TIMEOUT_SECONDS, POSTGRES_COMMAND_TIMEOUT_SECONDS).
    Not about what was asked: the same request may succeed once the database is back."""


# What asyncpg raises when the server is gone rather than when a query is wrong: connection exceptions
# (SQLSTATE class 08) and a server shutting down, crashed or still starting (57P01-57P03).
_SERVER_GONE = (
    asyncpg.PostgresConnectionError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.CannotConnectNowError,
)


async def _lost_database(exc: BaseException, connection: Any = None) -> bool:
    if isinstance(exc, (*_SERVER_GONE, DatabaseUnavailable)):
        return True
    # Inside the engine an OSError is the network: refused, reset, unreachable; TimeoutError (an
    # OSError) is a connect or command deadline that passed.
    if isinstance(exc, OSError):
        return True
    if not isinstance(exc, asyncpg.InterfaceError | asyncpg.InternalClientError) or connection is None:
        return False
    # asyncpg's own complaints about a connection the server closed under it: "connection is closed",
    # or, when a server going down sends its termination notice, "another operation is in progress"
    # (the notice put the protocol mid-operation) a moment before the connection closes.
    for _ in range(10):
        if _closed(connection):
            return True
        await asyncio.sleep(0.01)
    return False


def _closed(connection: Any) -> bool:
    try:
        return connection.is_closed()
    except asyncpg.InterfaceError:
        # "released back to the pool": asyncpg does that to a pooled connection that closed, and we
        # still hold it, so it closed under us.
        return True


@contextlib.asynccontextmanager
async def _outages_reported(connection: Any = None) -> AsyncIterator[None]:
    try:
        yield
    except DatabaseUnavailable:
        raise
    except Exception as exc:
        if await _lost_database(exc, connection):
            raise DatabaseUnavailable(f"PostgreSQL is unavailable: {exc!r}") from exc
        raise


async def _release(pool: Any, connection: Any) -> None:
    # A release that fails has asyncpg terminate the connection, which returns its place to the pool:
    # nothing is held, and what was done on it is settled (committed or rolled back).
    with contextlib.suppress(Exception):
        await pool.release(connection)


class PooledPostgresConnection(asyncpg.Connection):
    """asyncpg's connection, given back to the pool without its reset query.

    On every release asyncpg runs `SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL`
    by default: a second round trip for every pooled read (an uncached first page made two for its one
    query). clipdex takes no advisory lock, opens no cursor, listens to nothing and sets no session
    variable (the pool's deadlines are connection parameters), so there is nothing to reset; an open
    transaction is still rolled back on release, which asyncpg does whatever this returns.
    """

    def get_reset_query(self) -> str:
        return ""


class OutageAwarePostgresEngine(PostgresEngine):
    """Piccolo's PostgreSQL engine, telling a database that went away from a query that failed.

    Whatever fails because the server is unreachable or gone (see `DatabaseUnavailable`) is raised as
    DatabaseUnavailable, which the API answers with 503 database-unavailable, not a 500. Transactions
    give their connection back to the pool however they end: Piccolo's keeps it when BEGIN, COMMIT or
    ROLLBACK raises on a connection that stays open, and every such failure would shrink the pool for
    good until requests queue forever. asyncpg's pool reconnects by itself once the server is back.
    """

    async def run_querystring(self, querystring: Any, in_pool: bool = True) -> Any:
        transaction = self.current_transaction.get()
        async with _outages_reported(transaction.connection if transaction else None):
            return await super().run_querystring(querystring, in_pool=in_pool)

    async def run_ddl(self, ddl: str, in_pool: bool = True) -> Any:
        transaction = self.current_transaction.get()
        async with _outages_reported(transaction.connection if transaction else None):
            return await super().run_ddl(ddl, in_pool=in_pool)

    async def _run_in_pool(self, query: str, args: Any = None) -> Any:
        if not self.pool:
            raise ValueError("A pool isn't currently running.")
        async with _outages_reported():
            connection = await self.pool.acquire()
        try:
            async with _outages_reported(connection):
                return await connection.fetch(query, *(args or []))
        finally:
            await _release(self.pool, connection)

    async def fetch(self, query: str, args: Sequence[Any]) -> list[Any]:
        """Run compiled SQL and return its rows (asyncpg Records). asyncpg prepares each statement once
        per connection and keeps it (its statement cache), so a repeated query is not parsed again."""
        transaction = self.current_transaction.get()
        if transaction is not None:
            async with _outages_reported(transaction.connection):
                return await transaction.connection.fetch(query, *args)
        return await self._run_in_pool(query, args)

    def transaction(self, allow_nested: bool = True) -> PostgresTransaction:
        return _OutageAwareTransaction(engine=self, allow_nested=allow_nested)


class _OutageAwareTransaction(PostgresTransaction):
    engine: OutageAwarePostgresEngine

    async def __aenter__(self) -> PostgresTransaction:
        if self._parent is not None:
            return self._parent
        async with _outages_reported():
            self.connection = await self.get_connection()
        try:
            async with _outages_reported(self.connection):
                self.transaction = self.connection.transaction()
                await self.begin()
        except BaseException:
            await self._give_back()
            raise
        self.context = self.engine.current_transaction.set(self)
        return self

    async def __aexit__(self, exception_type: Any, exception: Any, traceback: Any) -> bool:
        if self._parent:
            return exception is None
        try:
            async with _outages_reported(self.connection):
                if exception is not None:
                    # A connection the server closed has nothing left to roll back.
                    if not self._rolled_back and not _closed(self.connection):
                        await self.rollback()
                elif not self._committed and not self._rolled_back:
                    await self.commit()
        finally:
            self.engine.current_transaction.reset(self.context)
            await self._give_back()
        return exception is None

    async def _give_back(self) -> None:
        if self.engine.pool is None:
            await self.connection.close()
        else:
            await _release(self.engine.pool, self.connection)


class _Parameter:
    """Where an argument goes, while a PreparedQuery's SQL is compiled (found again by identity)."""

    __slots__ = ("position",)

    def __init__(self, position: int) -> None:
        self.position = position


class PreparedQuery:
    """A Piccolo select compiled to SQL once per engine type and query shape, then run with new
    arguments, its rows returned as the driver gives them (dicts on SQLite, Records on PostgreSQL).

    On a cache-miss read, Piccolo building the query and compiling it took ~125 µs and converting
    its rows ~175 µs, against ~125 µs for the database itself (BENCHMARKS.md): the hot reads keep
    Piccolo's tables and query builder as the one source of their SQL and skip that work on every
    call. `build(shape, *parameters)` returns the query; each parameter is a stand-in that the
    compiled SQL's placeholders are mapped back to, and `shape` is whatever else changes the SQL
    (which filters are on, a LIMIT), kept as part of the cache key: up to `shapes` of them.
    """

    def __init__(self, table: type[Table], build: Callable[..., Query], shapes: int = 256) -> None:
        self._table = table
        self._build = build
        self._shapes = shapes
        self._compiled: dict[tuple[str, Hashable], tuple[str, list[Any]]] = {}

    def sql(self, engine_type: str, shape: Hashable, arity: int) -> tuple[str, list[Any]]:
        """The SQL and, per placeholder, the _Parameter it takes or a constant."""
        key = (engine_type, shape)
        compiled = self._compiled.get(key)
        if compiled is None:
            parameters = [_Parameter(position) for position in range(arity)]
            query, args = self._build(shape, *parameters).querystrings[0].compile_string(engine_type)
            for arg in args:
                if isinstance(arg, _Parameter) and arg not in parameters:
                    raise ValueError("a stand-in of another query")
            if len(self._compiled) >= self._shapes:
                self._compiled.clear()  # shapes are few; a flood of new ones only costs compiling again
            compiled = self._compiled[key] = (query, args)
        return compiled

    async def rows(self, *values: Any, shape: Hashable = None) -> list[Any]:
        engine: Any = self._table._meta.db
        query, args = self.sql(engine.engine_type, shape, len(values))
        bound = [values[arg.position] if isinstance(arg, _Parameter) else arg for arg in args]
        return await engine.fetch(query, bound)


def build_engine(settings: Settings) -> Engine:
    """The engine for the configured database (shared within the process); nothing is connected yet."""
    if settings.is_sqlite:
        if (engine := _ENGINES.get(settings.database_url)) is not None:
            return engine
        path = settings.sqlite_path
        path.parent.mkdir(parents=True, exist_ok=True)
        # `timeout` is sqlite3's busy timeout: a writer waits for the lock instead of failing at once.
        engine = _ENGINES[settings.database_url] = PooledSQLiteEngine(
            path=str(path),
            timeout=settings.sqlite_busy_timeout_seconds,
            synchronous=settings.sqlite_synchronous,
        )
        return engine
    return OutageAwarePostgresEngine(config={"dsn": settings.database_url})


def bind_tables(engine: Engine, tables: Iterable[type[Table]]) -> None:
    """Point every table at this engine, so queries never fall back to piccolo_conf's own."""
    for table in tables:
        table._meta.db = engine


async def open_database(engine: Engine, settings: Settings) -> None:
    if isinstance(engine, SQLiteEngine):
        # WAL lets readers carry on while one writer commits; the mode is stored in the file itself.
        await engine.run_ddl("PRAGMA journal_mode=WAL")
    elif isinstance(engine, PostgresEngine):
        # asyncpg waits up to 60 s to connect and forever for an answer: with the server gone, every
        # request would hang with it. The deadlines bound the wait (then 503 database-unavailable).
        # They are the pool's only: migrations (new connections) may take as long as they need.
        await engine.start_connection_pool(
            connection_class=PooledPostgresConnection,
            min_size=settings.postgres_pool_min_size,
            max_size=settings.postgres_pool_max_size,
            timeout=settings.postgres_connect_timeout_seconds,
            command_timeout=settings.postgres_command_timeout_seconds,
        )


async def close_database(engine: Engine) -> None:
    if isinstance(engine, PostgresEngine):
        await engine.close_connection_pool()
    elif isinstance(engine, PooledSQLiteEngine):
        await engine.close_idle()


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
    if isinstance(engine, PooledSQLiteEngine):
        # On a fresh connection: a pooled one keeps working on a database file deleted under it.
        await SQLiteEngine._run_in_new_connection(engine, "SELECT count(*) FROM sqlite_master")
        return
    await engine.run_ddl("SELECT 1", in_pool=True)


def is_database_busy(exc: BaseException) -> bool:
    """Whether a query failed because the database is overloaded, not because of what was asked:
    SQLite's write lock still held by another writer after the busy timeout, or PostgreSQL out of
    connections. A client should retry later (503), and nothing was written."""
    if isinstance(exc, sqlite3.OperationalError):
        return "database is locked" in str(exc) or "database is busy" in str(exc)
    return isinstance(exc, asyncpg.TooManyConnectionsError)


def is_database_unavailable(exc: BaseException) -> bool:
    """Whether a query failed because PostgreSQL is down or unreachable (see DatabaseUnavailable):
    a client should retry later (503); a write whose commit was cut off may or may not have landed."""
    return isinstance(exc, (DatabaseUnavailable, *_SERVER_GONE))


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
