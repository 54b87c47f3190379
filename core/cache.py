"""The cache port: an async key-value store with TTLs and atomic counters, and its in-process implementation.

The port is Litestar's `Store` (so Litestar's own stores-based features can use it) plus the atomic
operations clipdex needs across workers: `incr` for counters. A shared implementation (Upstash Redis)
sits behind the same interface, so nothing above this module knows which one it talks to.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import sys
import time
import weakref
from abc import abstractmethod
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Literal, NamedTuple

import msgspec
from litestar.stores.base import Store
from prometheus_client import Counter

from core.single_flight import SingleFlight

logger = logging.getLogger("clipdex.cache")


def _seconds(expires_in: int | timedelta | None) -> int | None:
    if expires_in is None:
        return None
    return int(expires_in.total_seconds()) if isinstance(expires_in, timedelta) else int(expires_in)


class Cache(Store):
    """What clipdex asks of a cache. Every method may raise when the backing service is down."""

    @abstractmethod
    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """The values at `keys` (None where there is none), read at one moment in one round trip."""

    @abstractmethod
    async def incr(self, key: str, amount: int = 1, *, expires_in: int | None = None) -> int:
        """Add `amount` to the integer at `key` (0 when absent) and return the new value, atomically.

        `expires_in` applies only when this call creates the key, giving a fixed window that starts
        with the first increment.
        """

    @abstractmethod
    async def increment_field(self, key: str, field: str, amount: int = 1) -> int:
        """Add `amount` to one counter of the counter map at `key` (created when absent), atomically."""

    @abstractmethod
    async def claim_fields(self, key: str, claim: str) -> dict[str, int]:
        """Move the counter map at `key` to `claim` unless `claim` still holds one, and return what
        `claim` holds, atomically: increments that land after the move start a new map at `key`.

        Until `claim` is deleted, asking again returns the same counters and moves nothing, so a
        caller whose answer was lost on the way (a timeout) asks again and loses nothing."""

    @abstractmethod
    async def ping(self) -> None:
        """Raise unless the cache answers."""

    async def open(self) -> None:
        """Connect to the backing service; called once at start-up. The in-process cache has nothing to open."""

    async def close(self) -> None:
        """Release connections; the in-process cache has none."""


class InMemoryCache(Cache):
    """A per-process cache with lazy expiry and a bound on its size (least recently used goes first).

    All methods run without awaiting, so each is atomic on the event loop that calls it.
    """

    def __init__(self, max_entries: int = 100_000) -> None:
        self._entries: OrderedDict[str, tuple[bytes, float | None]] = OrderedDict()
        self._max_entries = max_entries

    def _live(self, key: str) -> tuple[bytes, float | None] | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[1] is not None and entry[1] <= time.monotonic():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return entry

    def _put(self, key: str, value: bytes, expires_at: float | None) -> None:
        self._entries[key] = (value, expires_at)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    @staticmethod
    def _deadline(expires_in: int | timedelta | None) -> float | None:
        seconds = _seconds(expires_in)
        return None if seconds is None else time.monotonic() + seconds

    async def set(self, key: str, value: str | bytes, expires_in: int | timedelta | None = None) -> None:
        self._put(key, value.encode() if isinstance(value, str) else value, self._deadline(expires_in))

    async def get(self, key: str, renew_for: int | timedelta | None = None) -> bytes | None:
        entry = self._live(key)
        if entry is None:
            return None
        if renew_for is not None and entry[1] is not None:
            self._entries[key] = (entry[0], self._deadline(renew_for))
        return entry[0]

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return [None if (entry := self._live(key)) is None else entry[0] for key in keys]

    async def delete(self, key: str) -> None:
        self._entries.pop(key, None)

    async def delete_all(self) -> None:
        self._entries.clear()

    async def exists(self, key: str) -> bool:
        return self._live(key) is not None

    async def expires_in(self, key: str) -> int | None:
        entry = self._live(key)
        if entry is None or entry[1] is None:
            return None
        # Rounded up: a client told to wait this long must find the key gone.
        return max(0, math.ceil(entry[1] - time.monotonic()))

    async def incr(self, key: str, amount: int = 1, *, expires_in: int | None = None) -> int:
        entry = self._live(key)
        if entry is None:
            value, expires_at = amount, self._deadline(expires_in)
        else:
            value, expires_at = int(entry[0]) + amount, entry[1]
        self._put(key, str(value).encode(), expires_at)
        return value

    async def increment_field(self, key: str, field: str, amount: int = 1) -> int:
        entry = self._live(key)
        counters: dict[str, int] = msgspec.json.decode(entry[0]) if entry else {}
        counters[field] = counters.get(field, 0) + amount
        self._put(key, msgspec.json.encode(counters), entry[1] if entry else None)
        return counters[field]

    async def claim_fields(self, key: str, claim: str) -> dict[str, int]:
        if self._live(claim) is None and (entry := self._live(key)) is not None:
            del self._entries[key]
            self._put(claim, entry[0], entry[1])
        claimed = self._live(claim)
        return msgspec.json.decode(claimed[0]) if claimed else {}

    async def ping(self) -> None:
        return None


# X-Cache: served from the cache, computed for this request, or computed once for concurrent ones.
CacheStatus = Literal["hit", "miss", "shared"]


@dataclasses.dataclass
class _PendingBumps:
    names: set[str] = dataclasses.field(default_factory=set)
    catch_up: asyncio.Task[None] | None = None
    next_try: float = 0.0  # time.monotonic() before which no catch-up starts (the cache was down)


# Generation bumps that failed, per cache, until they are made (see ReadThroughCache._unbumped).
_PENDING_BUMPS: weakref.WeakKeyDictionary[Cache, _PendingBumps] = weakref.WeakKeyDictionary()
_CATCH_UP_RETRY_SECONDS = 0.5


class Lookup(NamedTuple):
    """What one round trip to the cache found for an entry."""

    # The generations of the names the entry depends on, as an entry stored under them begins
    # (b"3 ", b"3.7 "); None when one is unknown (the cache is down, or a bump is pending): then
    # nothing may be read from or stored in the cache.
    stamp: bytes | None
    # The entry, if one is stored under exactly these generations.
    value: bytes | None
    # The values at the other keys read with it (all None when the cache is down).
    others: tuple[bytes | None, ...]

    @property
    def generations(self) -> tuple[int, ...] | None:
        return None if self.stamp is None else tuple(map(int, self.stamp[:-1].split(b".")))


class ReadThroughCache:
    """Cache reads and writes that never fail a request: errors are logged, counted and skipped.

    An entry is stored with the generations of the names it depends on, and a write bumps the
    generation of what it changed, so a read never takes an entry stored before a write it follows,
    even when a slow reader stores an old copy after the write's bump: a read accepts only an entry
    stamped with the generations it reads with the entry, in the same round trip (an MGET on Redis).
    A bump that fails (the cache is down) is made again in the background once the cache answers, and
    until then what it names is read around.
    """

    def __init__(self, cache: Cache, flights: SingleFlight[tuple[bytes, CacheStatus]] | None = None) -> None:
        self._cache = cache
        self._flights = flights
        self._pending = _PENDING_BUMPS.setdefault(cache, _PendingBumps())

    async def look_up(self, key: str, names: Sequence[str], others: Sequence[str] = ()) -> Lookup:
        """The entry at `key` if it is as new as the generations of `names`, with those generations
        and the values at `others`, in one round trip."""
        unbumped = self._unbumped()
        keys = ["gen:" + name for name in names]
        keys.append(key)
        keys += others
        try:
            values = await self._cache.get_many(keys)
        except Exception:
            _cache_failed("get")
            return Lookup(None, None, (None,) * len(others))
        count = len(names)
        found = tuple(values[count + 1 :])
        if unbumped and not unbumped.isdisjoint(names):
            return Lookup(None, None, found)  # changed while the cache was down: older entries remain
        # A generation reads back as its digits (INCRBY's); absent, it is 0.
        stamp = b".".join([raw or b"0" for raw in values[:count]]) + b" "
        value = _unstamped(values[count], stamp)
        (_LOOKUP_MISSES if value is None else _LOOKUP_HITS).inc()
        return Lookup(stamp, value, found)

    async def store(self, key: str, stamp: bytes, value: bytes, ttl_seconds: int) -> None:
        """Keep `value` at `key`, valid while the names it depends on keep the generations of `stamp`
        (a Lookup's)."""
        try:
            await self._cache.set(key, stamp + value, expires_in=ttl_seconds)
        except Exception:
            _cache_failed("put")

    async def bump(self, *names: str) -> None:
        unbumped = self._unbumped()
        for name in names:
            try:
                await self._cache.incr(f"gen:{name}")
            except Exception:
                _cache_failed("bump")
                unbumped.add(name)

    def _unbumped(self) -> set[str]:
        """The names whose bump failed and is not made yet (shared by every instance on this cache),
        starting their catch-up in the background when none runs. An entry cached before a cache
        outage would otherwise outlive a write made during it: the write's bump failed, and after the
        outage the old generation still leads to the old entry (for up to its TTL)."""
        pending = self._pending
        if pending.names and pending.catch_up is None and time.monotonic() >= pending.next_try:
            pending.catch_up = asyncio.get_running_loop().create_task(self._catch_up(pending))
        return pending.names

    async def _catch_up(self, pending: _PendingBumps) -> None:
        try:
            for name in list(pending.names):
                try:
                    await self._cache.incr(f"gen:{name}")
                except Exception:
                    pending.next_try = time.monotonic() + _CATCH_UP_RETRY_SECONDS  # still down
                    return
                pending.names.discard(name)
        finally:
            pending.catch_up = None

    async def read(
        self, key: str, names: Sequence[str], compute: Callable[[], Awaitable[bytes]], ttl_seconds: int
    ) -> tuple[bytes, CacheStatus]:
        """The entry at `key` as new as the generations of `names`, else `compute()`'s, stored for
        `ttl_seconds`; and how it came.

        Concurrent misses under the same generations share one computation ("shared") when this cache
        has flights. While a generation is unknown (the cache is down) every read computes, unshared:
        without a generation a read that began before a write could not be told from one after it.
        """
        found = await self.look_up(key, names)
        stamp = found.stamp
        if stamp is None:
            return await compute(), "miss"
        if found.value is not None:
            return found.value, "hit"

        async def through_cache() -> tuple[bytes, CacheStatus]:
            value = await compute()
            await self.store(key, stamp, value, ttl_seconds)
            return value, "miss"

        if self._flights is None:
            return await through_cache()

        async def in_flight() -> tuple[bytes, CacheStatus]:
            # A request whose flight ended between its look-up and joining finds the value stored.
            try:
                stored = await self._cache.get(key)
            except Exception:
                _cache_failed("get")
                stored = None
            if (value := _unstamped(stored, stamp)) is not None:
                return value, "hit"
            return await through_cache()

        (value, status), outcome = await self._flights.run(f"{key}@{stamp.decode()}", in_flight)
        return value, "shared" if outcome == "shared" and status == "miss" else status


def _unstamped(entry: bytes | None, stamp: bytes) -> bytes | None:
    """The value of a stored entry if it was stored under `stamp`'s generations, else None."""
    return entry[len(stamp) :] if entry is not None and entry.startswith(stamp) else None


CACHE_LOOKUPS = Counter("clipdex_cache_lookups", "Read-through cache lookups.", ["result"])
# Looked up once: labels() validates and locks on every call, on every cached read.
_LOOKUP_HITS, _LOOKUP_MISSES = CACHE_LOOKUPS.labels(result="hit"), CACHE_LOOKUPS.labels(result="miss")
CACHE_ERRORS = Counter(
    "clipdex_cache_errors", "Cache operations that failed and were skipped.", ["operation"]
)


def _cache_failed(operation: str) -> None:
    CACHE_ERRORS.labels(operation=operation).inc()
    # An unreachable or silent cache fails every call alike while it lasts: a line each, and the
    # traceback only for anything else.
    error = sys.exc_info()[1]
    if isinstance(error, TimeoutError | ConnectionError):
        logger.warning("cache %s failed; serving without the cache: %s", operation, error)
    else:
        logger.warning("cache %s failed; serving without the cache", operation, exc_info=True)
