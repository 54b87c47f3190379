"""Buffered counters (core/counters.py) on the in-process cache: counts are written once however the
flushes that write them overlap (QStash may deliver a scheduled flush while the last one still runs)."""

from __future__ import annotations

import asyncio
from collections import Counter

from core.cache import InMemoryCache
from core.counters import BufferedCounter


class SlowTally(BufferedCounter):
    """A counter whose "database" is a Counter here, and whose writes wait until `writable` is set."""

    def __init__(self) -> None:
        super().__init__(InMemoryCache(), "test:tally")
        self.written: Counter[str] = Counter()
        self.writes_started = asyncio.Event()
        self.writable = asyncio.Event()

    async def write(self, pending: dict[str, int]) -> None:
        self.writes_started.set()
        await self.writable.wait()
        self.written.update(pending)


async def test_overlapping_flushes_write_each_count_once() -> None:
    tally = SlowTally()
    for field in ("a", "a", "b"):
        await tally.count(field)

    first = asyncio.create_task(tally.flush())
    await tally.writes_started.wait()  # the first flush holds its claim, mid-write
    second = asyncio.create_task(tally.flush())
    await asyncio.sleep(0.05)  # let the second flush get as far as it can while the first one writes
    tally.writable.set()

    assert sorted(await asyncio.gather(first, second)) == [0, 3]
    assert tally.written == {"a": 2, "b": 1}
    assert await tally.flush() == 0
    assert tally.written == {"a": 2, "b": 1}
