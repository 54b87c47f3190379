"""Single flight (core/single_flight.py) and the read-through cache's use of it."""

from __future__ import annotations

import asyncio
import time

import pytest

from core.cache import InMemoryCache, ReadThroughCache
from core.single_flight import SingleFlight
from core.upstash_cache import UpstashRedisCache
from tests.live_server import free_port


class Computation:
    """A computation that counts its runs and waits at a gate, so callers really overlap."""

    def __init__(self, value: bytes = b"page", error: Exception | None = None) -> None:
        self.value = value
        self.error = error
        self.runs = 0
        self.gate = asyncio.Event()

    async def __call__(self) -> bytes:
        self.runs += 1
        await self.gate.wait()
        if self.error is not None:
            raise self.error
        return self.value


async def settle() -> None:
    """Let every started task reach its first real wait."""
    for _ in range(5):
        await asyncio.sleep(0)


async def test_fifty_concurrent_identical_calls_compute_once():
    flights: SingleFlight[bytes] = SingleFlight(wait_seconds=5)
    compute = Computation()

    calls = [asyncio.create_task(flights.run("key", compute)) for _ in range(50)]
    await settle()
    compute.gate.set()
    results = await asyncio.gather(*calls)

    assert compute.runs == 1
    assert [value for value, _ in results] == [b"page"] * 50
    assert sorted(outcome for _, outcome in results) == ["leader"] + ["shared"] * 49
    assert len(flights) == 0  # forgotten once done


async def test_different_keys_do_not_share():
    flights: SingleFlight[bytes] = SingleFlight(wait_seconds=5)
    compute = Computation()
    compute.gate.set()

    results = await asyncio.gather(flights.run("a", compute), flights.run("b", compute))

    assert compute.runs == 2
    assert [outcome for _, outcome in results] == ["leader", "leader"]


async def test_an_error_reaches_every_waiter_and_the_next_call_computes_again():
    flights: SingleFlight[bytes] = SingleFlight(wait_seconds=5)
    failing = Computation(error=ConnectionError("index unreachable"))

    calls = [asyncio.create_task(flights.run("key", failing)) for _ in range(10)]
    await settle()
    failing.gate.set()
    results = await asyncio.gather(*calls, return_exceptions=True)

    assert failing.runs == 1
    assert all(isinstance(result, ConnectionError) for result in results), results
    assert {str(result) for result in results} == {"index unreachable"}
    # Not remembered: the next call computes afresh and succeeds.
    working = Computation(b"fresh")
    working.gate.set()
    assert await flights.run("key", working) == (b"fresh", "leader")
    assert working.runs == 1


async def test_a_stuck_computation_holds_waiters_only_for_the_bound():
    flights: SingleFlight[bytes] = SingleFlight(wait_seconds=0.2)
    stuck = Computation(b"late")
    leader = asyncio.create_task(flights.run("key", stuck))
    await settle()

    own = Computation(b"own")
    own.gate.set()
    started = time.monotonic()
    value, outcome = await flights.run("key", own)
    waited = time.monotonic() - started

    assert (value, outcome) == (b"own", "alone")
    assert 0.15 <= waited < 2
    assert not leader.done()  # still stuck; the waiter did not wait for it
    stuck.gate.set()
    assert await leader == (b"late", "leader")


async def test_waiters_compute_for_themselves_when_the_leader_is_cancelled():
    flights: SingleFlight[bytes] = SingleFlight(wait_seconds=5)
    stuck = Computation()
    leader = asyncio.create_task(flights.run("key", stuck))
    await settle()
    own = Computation(b"own")
    own.gate.set()
    waiter = asyncio.create_task(flights.run("key", own))
    await settle()

    leader.cancel()

    assert await waiter == (b"own", "alone")
    with pytest.raises(asyncio.CancelledError):
        await leader
    assert len(flights) == 0


async def test_a_cancelled_waiter_leaves_the_others_their_result():
    flights: SingleFlight[bytes] = SingleFlight(wait_seconds=5)
    compute = Computation()
    leader = asyncio.create_task(flights.run("key", compute))
    await settle()
    impatient = asyncio.create_task(flights.run("key", compute))
    patient = asyncio.create_task(flights.run("key", compute))
    await settle()

    impatient.cancel()
    await settle()
    compute.gate.set()

    assert await leader == (b"page", "leader")
    assert await patient == (b"page", "shared")
    assert impatient.cancelled()


async def test_wait_zero_turns_sharing_off():
    flights: SingleFlight[bytes] = SingleFlight(wait_seconds=0)
    compute = Computation()
    calls = [asyncio.create_task(flights.run("key", compute)) for _ in range(3)]
    await settle()
    compute.gate.set()

    results = await asyncio.gather(*calls)

    assert compute.runs == 3
    assert sorted(outcome for _, outcome in results) == ["alone", "alone", "leader"]


async def test_read_through_cache_shares_a_miss_then_serves_hits():
    cache = ReadThroughCache(InMemoryCache(), SingleFlight(wait_seconds=5))
    compute = Computation(b"page")

    calls = [asyncio.create_task(cache.read("search:abc", ["index"], compute, 30)) for _ in range(20)]
    await settle()
    compute.gate.set()
    results = await asyncio.gather(*calls)
    later = await cache.read("search:abc", ["index"], compute, 30)

    assert compute.runs == 1
    assert sorted(status for _, status in results) == ["miss"] + ["shared"] * 19
    assert later == (b"page", "hit")


async def test_read_through_cache_after_a_bump_computes_again_and_never_shares_across_it():
    cache = ReadThroughCache(InMemoryCache(), SingleFlight(wait_seconds=5))
    before, after, again = Computation(b"before"), Computation(b"after"), Computation(b"again")
    first = asyncio.create_task(cache.read("videos:video:x", ["video:x"], before, 30))
    await settle()
    await cache.bump("video:x")  # a write, while the first read still computes
    second = asyncio.create_task(cache.read("videos:video:x", ["video:x"], after, 30))
    await settle()
    after.gate.set()
    assert await second == (b"after", "miss")
    assert await cache.read("videos:video:x", ["video:x"], again, 30) == (b"after", "hit")
    before.gate.set()
    assert await first == (b"before", "miss")
    again.gate.set()

    # The slow first read stored its page last, under the generation it had read: later reads pass it
    # by and compute anew rather than serve the page from before the write.
    assert await cache.read("videos:video:x", ["video:x"], again, 30) == (b"again", "miss")
    assert await cache.read("videos:video:x", ["video:x"], again, 30) == (b"again", "hit")
    assert (before.runs, after.runs, again.runs) == (1, 1, 1)


async def test_read_through_cache_without_a_generation_always_computes_unshared():
    # The cache is down: a shared result could predate a write this read follows.
    unreachable = UpstashRedisCache(f"http://127.0.0.1:{free_port()}", "token", 2.0)  # nothing listens
    await unreachable.open()
    cache = ReadThroughCache(unreachable, SingleFlight(wait_seconds=5))
    compute = Computation(b"page")
    calls = [asyncio.create_task(cache.read("search:abc", ["index"], compute, 30)) for _ in range(3)]
    await settle()
    compute.gate.set()

    results = await asyncio.gather(*calls)

    await unreachable.close()
    assert compute.runs == 3
    assert [status for _, status in results] == ["miss"] * 3


async def test_read_through_cache_failure_is_not_cached():
    cache = ReadThroughCache(InMemoryCache(), SingleFlight(wait_seconds=5))
    failing = Computation(error=RuntimeError("database down"))
    failing.gate.set()

    with pytest.raises(RuntimeError):
        await cache.read("videos:video:x", ["video:x"], failing, 30)
    working = Computation(b"video")
    working.gate.set()

    assert await cache.read("videos:video:x", ["video:x"], working, 30) == (b"video", "miss")
