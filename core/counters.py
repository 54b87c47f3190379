"""Buffered counters: counts taken in the cache at request rate and written to the database in batches."""

from __future__ import annotations

import asyncio
import logging
import uuid
from abc import ABC, abstractmethod

from core.cache import Cache

logger = logging.getLogger("clipdex.counters")


class BufferedCounter(ABC):
    """Counts per field, kept in the cache under `{name}:pending` and written in batches by `write`.

    Counting is one atomic cache increment; `flush` claims the whole pending map atomically (so several
    workers can flush the same shared cache without double counting), writes it and then deletes the
    claim. A claim outlives a failed write or a lost answer (a cache call that timed out), and the next
    flush writes it, so a failure loses no count. If the cache is down, the count is written straight
    away instead.
    """

    def __init__(self, cache: Cache, name: str) -> None:
        self._cache = cache
        self._name = name
        self.pending = f"{name}:pending"
        # This worker's own claim: another worker's flush never writes it.
        self._claim = f"{name}:claimed:{uuid.uuid4().hex}"
        self._applied_but_held = False
        # One flush at a time here: a second one would find this worker's claim still held and write it
        # again. Loops never overlap, but QStash may deliver the next scheduled flush during this one.
        self._flushing = asyncio.Lock()

    @abstractmethod
    async def write(self, pending: dict[str, int]) -> None:
        """Add these counts, by field, where they belong (in one transaction)."""

    async def count(self, field: str) -> None:
        try:
            await self._cache.increment_field(self.pending, field)
        except Exception:
            # Written here even if the increment arrived after all (an answer lost): counting twice
            # beats losing a count.
            logger.warning(
                "cache unavailable: writing a %s count straight through", self._name, exc_info=True
            )
            await self.write({field: 1})

    async def flush(self) -> int:
        """Write pending counts; returns how many were written."""
        async with self._flushing:
            return await self._flush()

    async def _flush(self) -> int:
        try:
            if self._applied_but_held:  # written already: only the claim is left to delete
                await self._release()
            claimed = await self._cache.claim_fields(self.pending, self._claim)
        except Exception:
            logger.warning("cache unavailable: %s flush skipped", self._name, exc_info=True)
            return 0
        if not claimed:
            return 0
        try:
            await self.write(claimed)
        except Exception:
            logger.exception(
                "%s flush failed; %d counts kept for the next flush", self._name, sum(claimed.values())
            )
            return 0
        self._applied_but_held = True
        try:
            await self._release()
        except Exception:
            logger.warning("cache unavailable: the next flush deletes the counts it wrote", exc_info=True)
        return sum(claimed.values())

    async def _release(self) -> None:
        await self._cache.delete(self._claim)
        self._applied_but_held = False
