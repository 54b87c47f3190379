"""The cache port: an async key-value store with TTLs and atomic counters, and its in-process implementation.

The port is Litestar's `Store` (so Litestar's own stores-based features can use it) plus the atomic
operations clipdex needs across workers: `incr` for counters. A shared implementation (Upstash Redis)
sits behind the same interface, so nothing above this module knows which one it talks to.
"""

from __future__ import annotations

import time
from abc import abstractmethod
from collections import OrderedDict
from datetime import timedelta

from litestar.stores.base import Store

from core.settings import Settings


def _seconds(expires_in: int | timedelta | None) -> int | None:
    if expires_in is None:
        return None
    return int(expires_in.total_seconds()) if isinstance(expires_in, timedelta) else int(expires_in)


class Cache(Store):
    """What clipdex asks of a cache. Every method may raise when the backing service is down."""

    @abstractmethod
    async def incr(self, key: str, amount: int = 1, *, expires_in: int | None = None) -> int:
        """Add `amount` to the integer at `key` (0 when absent) and return the new value, atomically.

        `expires_in` applies only when this call creates the key, giving a fixed window that starts
        with the first increment.
        """

    @abstractmethod
    async def ping(self) -> None:
        """Raise unless the cache answers."""

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
        return max(0, round(entry[1] - time.monotonic()))

    async def incr(self, key: str, amount: int = 1, *, expires_in: int | None = None) -> int:
        entry = self._live(key)
        if entry is None:
            value, expires_at = amount, self._deadline(expires_in)
        else:
            value, expires_at = int(entry[0]) + amount, entry[1]
        self._put(key, str(value).encode(), expires_at)
        return value

    async def ping(self) -> None:
        return None


def build_cache(settings: Settings) -> Cache:
    """The cache the settings select: the in-process one unless a shared one is configured."""
    return InMemoryCache(max_entries=settings.cache_max_entries)
