"""Buffered counters: counts taken in the cache at request rate and written to the database in batches."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import uuid
from abc import ABC, abstractmethod
from datetime import UTC, datetime, timedelta

from piccolo.columns import Timestamptz, Varchar
from piccolo.engine.base import Engine
from piccolo.table import Table

from core.cache import Cache
from core.database import write_transaction

logger = logging.getLogger("clipdex.counters")

# How old an unwritten claim must be before another worker takes it over as its dead owner's. An owner
# moves counts into a claim only within the first half of this, so the claim's contents are settled
# long before anyone else looks: the other half covers a cache request still on its way after its
# deadline (UPSTASH_TIMEOUT_SECONDS, seconds) and clock differences between hosts (NTP keeps them well
# under a second). As long as the outbox's lease: a killed worker's views wait about as long as its
# search-index changes do.
CLAIM_LEASE_SECONDS = 60.0


class CounterClaim(Table, tablename="counter_claims"):
    """A claim taken by a counter's flush and not yet written: while this row exists, no flush has
    written the counts in the claim's cache key (its own row goes in the same transaction)."""

    id = Varchar(length=32, primary_key=True)
    counter = Varchar(length=100)
    created_at = Timestamptz()


@dataclasses.dataclass
class _HeldClaim:
    id: str
    recorded_at: float  # time.monotonic() just before its row was written
    answered: bool = True  # every claim_fields on it answered: nothing can still be moving in
    counts: dict[str, int] | None = None  # once claimed: exactly what its cache key holds
    written: bool = False  # written (by this worker or another); only the cache key is left to delete


class BufferedCounter(ABC):
    """Counts per field, kept in the cache under `{name}:pending` and written in batches by `write`.

    Counting is one atomic cache increment. A flush records a claim (a fresh id, a `counter_claims`
    row), moves the whole pending map into the claim's key `{name}:claimed:<id>` atomically (so several
    workers flushing one shared cache never take the same counts), then, in ONE transaction, deletes
    the claim's row and `write`s the counts, and afterwards deletes the claim's key. Deleting the row
    is the guard: only the transaction that deleted it writes, so a claim's counts reach the database
    at most once, however many flushes try; and until that commits the row stays, so they are never
    lost. A failed write or a lost answer (a cache call that timed out) keeps the claim for the next
    flush, which retries into the same key.

    A worker killed mid-flush leaves its claim's row behind. Every flush first adopts the rows older
    than the lease (`lease_seconds`): it reads the claim's key (moving nothing) and writes what it
    holds under the same guard, or, when the key is empty, deletes the row (the owner died before
    anything moved in). An owner still alive but slow meets the guard: whichever transaction deletes
    the row writes, the other finds it gone and writes nothing. Both write the same counts, since a
    claim's key never changes once filled until the writer deletes it.

    The one window is a move landing after an adopter has read the key empty and deleted the row: those
    counts would sit in a key nobody writes. It is closed by time: an owner sends claim_fields on a
    claim only within half the lease from recording it (then it starts a new claim, deleting the empty
    one unless a call on it went unanswered, which adopters then settle), and adopters look only after
    the full lease, so a move that lands at all has landed before anyone looks, as long as no cache
    request arrives half a lease after it was sent (see CLAIM_LEASE_SECONDS for the margin). What an
    owner got back can be written any time later (a database outage): the key keeps it, and the guard
    settles who writes it. (Deleting the row in the write's transaction, rather than marking it
    written, is the same guard with nothing left to prune.)

    A claim written but whose key could not be deleted (the cache failed, or the worker died) has no
    row, so nobody writes it again; its owner deletes the key on its next flush. If the cache is down,
    each count is written straight away instead.
    """

    def __init__(
        self, cache: Cache, engine: Engine, name: str, *, lease_seconds: float = CLAIM_LEASE_SECONDS
    ) -> None:
        self._cache = cache
        self._engine = engine
        self._name = name
        self._lease_seconds = lease_seconds
        self.pending = f"{name}:pending"
        self._held: _HeldClaim | None = None  # this worker's own claim: taken, not yet released
        # One flush at a time here: a second one would take this worker's held claim as well. Loops
        # never overlap, but QStash may deliver the next scheduled flush during this one.
        self._flushing = asyncio.Lock()

    @abstractmethod
    async def write(self, pending: dict[str, int]) -> None:
        """Add these counts, by field, where they belong. Runs inside the counter's transaction (the
        one that settles the claim); a transaction opened here joins it."""

    async def written(self, pending: dict[str, int]) -> None:
        """After `write`'s transaction committed: what must wait for the commit (cache invalidation)."""
        return None

    async def count(self, field: str) -> None:
        try:
            await self._cache.increment_field(self.pending, field)
        except Exception:
            # Written here even if the increment arrived after all (an answer lost): counting twice
            # beats losing a count.
            logger.warning(
                "cache unavailable: writing a %s count straight through", self._name, exc_info=True
            )
            async with write_transaction(self._engine):
                await self.write({field: 1})
            await self.written({field: 1})

    async def flush(self) -> int:
        """Write pending counts, and those of claims left by dead workers; returns how many were written."""
        async with self._flushing:
            adopted = await self._adopt_abandoned()
            return adopted + await self._flush_own()

    def _claim_key(self, claim_id: str) -> str:
        return f"{self._name}:claimed:{claim_id}"

    async def _write_claim(self, claim_id: str, counts: dict[str, int]) -> bool:
        """Write the claim's counts unless another flush did; whether this one did."""
        async with write_transaction(self._engine):
            settled = (
                await CounterClaim.delete().where(CounterClaim.id == claim_id).returning(CounterClaim.id)
            )
            if not settled:
                return False
            await self.write(counts)
        await self.written(counts)
        return True

    async def _adopt_abandoned(self) -> int:
        cutoff = datetime.now(UTC) - timedelta(seconds=self._lease_seconds)
        try:
            stale = await CounterClaim.select(CounterClaim.id).where(
                (CounterClaim.counter == self._name) & (CounterClaim.created_at < cutoff)
            )
        except Exception:
            logger.warning("database unavailable: %s claims not adopted", self._name, exc_info=True)
            return 0
        adopted = 0
        for row in stale:
            claim_id = row["id"]
            if self._held is not None and claim_id == self._held.id:
                continue  # alive and still trying: the owner writes it (or meets the guard)
            key = self._claim_key(claim_id)
            try:
                # The claim onto itself: moves nothing, returns what it holds.
                counts = await self._cache.claim_fields(key, key)
                if not counts:
                    # Nothing moved in before the lease, so nothing ever will (see the class docstring).
                    await CounterClaim.delete().where(CounterClaim.id == claim_id)
                    continue
                if await self._write_claim(claim_id, counts):
                    adopted += sum(counts.values())
                    logger.info("%s: wrote %d counts of an abandoned claim", self._name, sum(counts.values()))
                # Written now or by someone before: its key is done with.
                await self._cache.delete(key)
            except Exception:
                logger.warning(
                    "%s: adopting claim %s failed; retried next flush", self._name, claim_id, exc_info=True
                )
        return adopted

    async def _flush_own(self) -> int:
        held = self._held
        if held is not None and held.written:
            try:
                await self._release(held)
            except Exception:
                logger.warning("cache unavailable: %s flush skipped", self._name, exc_info=True)
                return 0
            held = None
        if held is not None and self._too_late_to_claim(held):
            # Given up, empty (see the class docstring). Its row goes now if every claim_fields on it
            # answered (nothing can still arrive), else after the lease, by an adopter.
            self._held = None
            if held.answered:
                try:
                    await CounterClaim.delete().where(CounterClaim.id == held.id)
                except Exception:
                    logger.warning("database unavailable: %s flush skipped", self._name, exc_info=True)
                    return 0
            held = None
        if held is None:
            held = _HeldClaim(uuid.uuid4().hex, time.monotonic())
            try:
                await CounterClaim.insert(
                    CounterClaim(id=held.id, counter=self._name, created_at=datetime.now(UTC))
                )
            except Exception:
                # Its row may have been written all the same: empty, adopters delete it after the lease.
                logger.warning("database unavailable: %s flush skipped", self._name, exc_info=True)
                return 0
            self._held = held
        if held.counts is None:
            if self._too_late_to_claim(held):
                return 0  # its row took that long to write: given up on the next flush
            try:
                claimed = await self._cache.claim_fields(self.pending, self._claim_key(held.id))
            except Exception:
                held.answered = False
                logger.warning("cache unavailable: %s flush skipped", self._name, exc_info=True)
                return 0
            if not claimed:
                return 0  # the claim is kept for the next flush, while it is young enough
            held.counts = claimed
        try:
            wrote = await self._write_claim(held.id, held.counts)
        except Exception:
            logger.exception(
                "%s flush failed; %d counts kept for the next flush", self._name, sum(held.counts.values())
            )
            return 0
        held.written = True
        try:
            await self._release(held)
        except Exception:
            logger.warning("cache unavailable: the next flush deletes the counts it wrote", exc_info=True)
        return sum(held.counts.values()) if wrote else 0

    def _too_late_to_claim(self, held: _HeldClaim) -> bool:
        """Whether counts may no longer move into this claim: only within half the lease of recording it."""
        return held.counts is None and time.monotonic() - held.recorded_at >= self._lease_seconds / 2

    async def _release(self, held: _HeldClaim) -> None:
        await self._cache.delete(self._claim_key(held.id))
        self._held = None
