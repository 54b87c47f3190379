"""The in-process cache: the port's contract (TTLs, atomic counters, deletion) and its size bound."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from core.cache import InMemoryCache


async def test_get_returns_what_set_stored():
    cache = InMemoryCache()

    await cache.set("text", "héllo")
    await cache.set("bytes", b"\x00\xff")

    assert await cache.get("text") == "héllo".encode()
    assert await cache.get("bytes") == b"\x00\xff"
    assert await cache.get("absent") is None


async def test_set_replaces_the_value_and_its_ttl():
    cache = InMemoryCache()
    await cache.set("key", b"old", expires_in=100)

    await cache.set("key", b"new")

    assert await cache.get("key") == b"new"
    assert await cache.expires_in("key") is None


async def test_entries_expire_after_their_ttl():
    cache = InMemoryCache()
    await cache.set("short", b"1", expires_in=1)
    await cache.set("short-timedelta", b"1", expires_in=timedelta(seconds=1))
    await cache.set("long", b"1", expires_in=60)
    await cache.set("forever", b"1")
    assert await cache.get("short") == b"1"

    await asyncio.sleep(1.05)

    assert await cache.get("short") is None
    assert await cache.get("short-timedelta") is None
    assert not await cache.exists("short")
    assert await cache.get("long") == b"1"
    assert await cache.get("forever") == b"1"


async def test_expires_in_reports_the_remaining_seconds():
    cache = InMemoryCache()
    await cache.set("ttl", b"1", expires_in=30)
    await cache.set("forever", b"1")

    assert 29 <= await cache.expires_in("ttl") <= 30
    assert await cache.expires_in("forever") is None
    assert await cache.expires_in("absent") is None


async def test_get_can_renew_the_ttl():
    cache = InMemoryCache()
    await cache.set("key", b"1", expires_in=5)

    await cache.get("key", renew_for=100)

    assert await cache.expires_in("key") >= 99


async def test_exists_and_delete():
    cache = InMemoryCache()
    await cache.set("key", b"1")
    await cache.set("other", b"1")
    assert await cache.exists("key")

    await cache.delete("key")
    await cache.delete("never-there")  # deleting what is absent is fine

    assert not await cache.exists("key")
    assert await cache.get("key") is None
    assert await cache.exists("other")


async def test_delete_all():
    cache = InMemoryCache()
    await cache.set("a", b"1")
    await cache.set("b", b"2")

    await cache.delete_all()

    assert not await cache.exists("a")
    assert not await cache.exists("b")


async def test_incr_counts_from_zero_and_by_amount():
    cache = InMemoryCache()

    assert await cache.incr("n") == 1
    assert await cache.incr("n") == 2
    assert await cache.incr("n", 5) == 7
    assert await cache.incr("n", -3) == 4
    assert await cache.get("n") == b"4"


async def test_concurrent_increments_are_all_counted():
    cache = InMemoryCache()

    results = await asyncio.gather(*(cache.incr("hits", expires_in=60) for _ in range(500)))

    assert await cache.get("hits") == b"500"
    assert sorted(results) == list(range(1, 501))  # no two callers saw the same count


async def test_incr_keeps_the_ttl_of_the_first_increment():
    cache = InMemoryCache()
    assert await cache.incr("window", expires_in=1) == 1
    await asyncio.sleep(0.6)

    # A later increment's TTL must not extend the window that the first one opened.
    assert await cache.incr("window", expires_in=1) == 2
    await asyncio.sleep(0.5)

    assert not await cache.exists("window")
    assert await cache.incr("window", expires_in=1) == 1  # a new window starts


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
