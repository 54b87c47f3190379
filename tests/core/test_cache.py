"""The in-process cache beyond the port's contract (tests/core/test_cache_contract.py runs that on it too)."""

from __future__ import annotations

import asyncio

from core.cache import InMemoryCache


async def test_get_can_renew_the_ttl():
    cache = InMemoryCache()
    await cache.set("key", b"1", expires_in=5)

    await cache.get("key", renew_for=100)

    assert await cache.expires_in("key") >= 99


async def test_delete_all():
    cache = InMemoryCache()
    await cache.set("a", b"1")
    await cache.set("b", b"2")

    await cache.delete_all()

    assert not await cache.exists("a")
    assert not await cache.exists("b")


async def test_concurrent_increments_are_all_counted():
    cache = InMemoryCache()

    results = await asyncio.gather(*(cache.incr("hits", expires_in=60) for _ in range(500)))

    assert await cache.get("hits") == b"500"
    assert sorted(results) == list(range(1, 501))  # no two callers saw the same count


async def test_incr_without_a_ttl_never_expires():
    cache = InMemoryCache()

    await cache.incr("n")

    assert await cache.expires_in("n") is None


async def test_the_least_recently_used_entry_goes_first_when_full():
    cache = InMemoryCache(max_entries=3)
    await cache.set("a", b"1")
    await cache.set("b", b"2")
    await cache.set("c", b"3")
    await cache.get("a")  # "b" is now the least recently used

    await cache.set("d", b"4")

    assert not await cache.exists("b")
    assert [await cache.get(key) for key in ("a", "c", "d")] == [b"1", b"3", b"4"]
    await cache.incr("e")
    assert not await cache.exists("a")
    assert len([key for key in "abcde" if await cache.exists(key)]) == 3
