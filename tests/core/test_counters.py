"""Buffered counters (core/counters.py) on the in-process cache and a real SQLite database: counts are
written once however the flushes that write them overlap (QStash may deliver a scheduled flush while
the last one still runs), and a claim a dead worker left behind is written once, by another worker."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from piccolo.columns import Integer, Varchar
from piccolo.table import Table

from core.cache import InMemoryCache
from core.counters import BufferedCounter, CounterClaim
from core.database import PooledSQLiteEngine, close_database

LEASE_SECONDS = 0.2


class Tally(Table, tablename="test_tallies"):
    field = Varchar(length=20, primary_key=True)
    total = Integer(default=0)


class TallyCounter(BufferedCounter):
    """Counts added to `test_tallies`; a write waits for `writable` and fails while `failing` is set."""

    def __init__(self, cache: InMemoryCache, engine: PooledSQLiteEngine) -> None:
        super().__init__(cache, engine, "test:tally", lease_seconds=LEASE_SECONDS)
        self.writes_started = asyncio.Event()
        self.writable = asyncio.Event()
        self.writable.set()
        self.failing = False
        self.committed: list[dict[str, int]] = []

    async def write(self, pending: dict[str, int]) -> None:
        self.writes_started.set()
        await self.writable.wait()
        if self.failing:
            raise RuntimeError("the worker died mid-write")
        for field, count in pending.items():
            await Tally.insert(Tally(field=field, total=0)).on_conflict(action="DO NOTHING")
            await Tally.update({Tally.total: Tally.total + count}).where(Tally.field == field)

    async def written(self, pending: dict[str, int]) -> None:
        self.committed.append(pending)


class ForgetfulCache(InMemoryCache):
    """The in-process cache, whose deletes fail while `deletes_fail` is set (a cache gone mid-flush)."""

    deletes_fail = False

    async def delete(self, key: str) -> None:
        if self.deletes_fail:
            raise TimeoutError("the cache did not answer")
        await super().delete(key)


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[PooledSQLiteEngine]:
    engine = PooledSQLiteEngine(path=str(tmp_path / "counters.sqlite3"), timeout=5)
    previous = {table: table._meta.db for table in (Tally, CounterClaim)}
    for table in previous:
        table._meta.db = engine
    await engine.run_ddl("PRAGMA journal_mode=WAL")
    await Tally.create_table()
    await CounterClaim.create_table()
    yield engine
    await close_database(engine)
    for table, db in previous.items():
        table._meta.db = db


async def tallies() -> dict[str, int]:
    return {row["field"]: row["total"] for row in await Tally.select(Tally.field, Tally.total)}


async def count_all(counter: BufferedCounter, *fields: str) -> None:
    for field in fields:
        await counter.count(field)


async def test_overlapping_flushes_write_each_count_once(engine: PooledSQLiteEngine) -> None:
    tally = TallyCounter(InMemoryCache(), engine)
    tally.writable.clear()
    await count_all(tally, "a", "a", "b")

    first = asyncio.create_task(tally.flush())
    await tally.writes_started.wait()  # the first flush holds its claim, mid-write
    second = asyncio.create_task(tally.flush())
    await asyncio.sleep(0.05)  # let the second flush get as far as it can while the first one writes
    tally.writable.set()

    assert sorted(await asyncio.gather(first, second)) == [0, 3]
    assert await tallies() == {"a": 2, "b": 1}
    assert await tally.flush() == 0
    assert await tallies() == {"a": 2, "b": 1}
    assert tally.committed == [{"a": 2, "b": 1}]


async def test_a_claim_left_by_a_dead_counter_is_written_once_by_another_after_the_lease(
    engine: PooledSQLiteEngine,
) -> None:
    cache = InMemoryCache()
    dead, alive = TallyCounter(cache, engine), TallyCounter(cache, engine)
    await count_all(dead, "a", "a", "b")
    dead.failing = True  # its flush claims the counts, then dies before its transaction commits
    assert await dead.flush() == 0
    await count_all(alive, "a", "c")

    assert await alive.flush() == 2  # its own counts; the dead one's claim is still within its lease
    assert await tallies() == {"a": 1, "c": 1}

    await asyncio.sleep(LEASE_SECONDS)
    assert await alive.flush() == 3
    assert await tallies() == {"a": 3, "b": 1, "c": 1}
    assert await alive.flush() == 0
    assert await tallies() == {"a": 3, "b": 1, "c": 1}
    assert await CounterClaim.count().where(CounterClaim.id != alive._held.id) == 0


async def test_a_slow_owner_and_an_adopter_write_a_claim_once(engine: PooledSQLiteEngine) -> None:
    cache = InMemoryCache()
    slow, other = TallyCounter(cache, engine), TallyCounter(cache, engine)
    await count_all(slow, "a", "b")
    slow.failing = True  # its write fails (the database went away), so it keeps the claim for later
    assert await slow.flush() == 0

    await asyncio.sleep(LEASE_SECONDS)
    assert await other.flush() == 2  # taken for a dead worker's
    slow.failing = False
    assert await slow.flush() == 0  # the owner comes back: already written, so it writes nothing
    assert await tallies() == {"a": 1, "b": 1}
    await count_all(slow, "a")
    assert await slow.flush() == 1  # and counts on, in a claim of its own
    assert await tallies() == {"a": 2, "b": 1}


async def test_a_written_claim_whose_key_was_not_deleted_is_not_written_again(
    engine: PooledSQLiteEngine,
) -> None:
    cache = ForgetfulCache()
    dead, alive = TallyCounter(cache, engine), TallyCounter(cache, engine)
    await count_all(dead, "a", "b")
    cache.deletes_fail = True  # written, then the cache fails before the claim's key is deleted
    assert await dead.flush() == 2
    left = dead._claim_key(dead._held.id)
    cache.deletes_fail = False

    await asyncio.sleep(LEASE_SECONDS)
    assert await alive.flush() == 0
    assert await tallies() == {"a": 1, "b": 1}
    assert await dead.flush() == 0  # deletes the key it left
    assert await cache.claim_fields(left, left) == {}
    assert await tallies() == {"a": 1, "b": 1}


async def test_an_empty_claim_left_by_a_dead_counter_is_deleted_after_the_lease(
    engine: PooledSQLiteEngine,
) -> None:
    cache = InMemoryCache()
    dead, alive = TallyCounter(cache, engine), TallyCounter(cache, engine)
    assert await dead.flush() == 0  # recorded a claim, with nothing to move into it
    dead_claim = dead._held.id

    await asyncio.sleep(LEASE_SECONDS)
    await count_all(alive, "a")
    assert await alive.flush() == 1
    assert await CounterClaim.count().where(CounterClaim.id == dead_claim) == 0
    assert await tallies() == {"a": 1}


async def test_a_counter_moves_no_counts_into_a_claim_older_than_half_its_lease(
    engine: PooledSQLiteEngine,
) -> None:
    tally = TallyCounter(InMemoryCache(), engine)
    assert await tally.flush() == 0
    assert await CounterClaim.count() == 1

    await asyncio.sleep(LEASE_SECONDS / 2)
    await count_all(tally, "a")
    assert await tally.flush() == 1  # through a new claim; the old, empty one is deleted
    assert await CounterClaim.count() == 0
    assert await tallies() == {"a": 1}


async def test_counts_are_written_straight_through_while_the_cache_is_down(
    engine: PooledSQLiteEngine,
) -> None:
    class DownCache(InMemoryCache):
        async def increment_field(self, key: str, field: str, amount: int = 1) -> int:
            raise TimeoutError("the cache did not answer")

    tally = TallyCounter(DownCache(), engine)
    await count_all(tally, "a", "a")
    assert await tallies() == {"a": 2}
    assert tally.committed == [{"a": 1}, {"a": 1}]
