"""A transactional outbox: changes recorded in the same transaction as the write, delivered later.

A feature calls `publish(topic, key)` inside its write transaction, so the event exists exactly when
the write committed. An `OutboxRelay` drains a topic in the background, with retries and
exponential backoff, and reports its lag. Handlers must be idempotent: a key may be delivered more
than once (two workers, or a crash between handling and acknowledging), never zero times.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta

import msgspec
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from piccolo.columns import Integer, Serial, Text, Timestamptz, Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.engine.base import Engine
from piccolo.table import Table
from prometheus_client import Gauge

from core.background import repeating
from core.database import owns_tables, write_transaction

logger = logging.getLogger("clipdex.outbox")

Handler = Callable[[list[str]], Awaitable[None]]


class OutboxEvent(Table, tablename="outbox"):
    id = Serial(primary_key=True)
    topic = Varchar(length=50)
    key = Varchar(length=100)
    created_at = Timestamptz(default=TimestamptzNow())
    # Not delivered before this time: set forward while a relay works on it (a lease) and on failure.
    available_at = Timestamptz(default=TimestamptzNow(), index=True)
    attempts = Integer(default=0)
    last_error = Text(default="")


async def publish(topic: str, *keys: str) -> None:
    """Record that `keys` changed; call inside the transaction that changed them."""
    if keys:
        await OutboxEvent.insert(*(OutboxEvent(topic=topic, key=key) for key in keys))
        published = _published.get()
        if published is not None:
            published.setdefault(topic, []).extend(keys)


# What `publish` recorded inside a `collecting_published()` block, by topic.
_published: ContextVar[dict[str, list[str]] | None] = ContextVar("outbox_published", default=None)


@contextmanager
def collecting_published() -> Iterator[dict[str, list[str]]]:
    """Collect the keys published inside the block (its own task), to announce them once the
    transactions that published them have committed. Nothing is lost if the announcement never comes:
    the events are in the outbox, and a sweep delivers them."""
    collected: dict[str, list[str]] = {}
    token = _published.set(collected)
    try:
        yield collected
    finally:
        _published.reset(token)


class AnnouncePublished:
    """ASGI middleware: the keys a request published, handed to `announce` once its handler has
    returned (its transactions committed) and before its response starts, so a platform that freezes
    the process after the response cannot cut the announcement off. A failed announcement is logged,
    not raised: the events wait in the outbox for a sweep."""

    def __init__(self, app: ASGIApp, announce: Callable[[dict[str, list[str]]], Awaitable[None]]) -> None:
        self._app = app
        self._announce = announce

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        with collecting_published() as published:

            async def announce() -> None:
                if not published:
                    return
                taken = dict(published)
                published.clear()
                try:
                    await self._announce(taken)
                except Exception:
                    logger.warning(
                        "announcing %s failed; the outbox sweep delivers them", taken, exc_info=True
                    )

            async def announcing_send(message: Message) -> None:
                if message["type"] == "http.response.start":
                    await announce()
                await send(message)

            await self._app(scope, receive, announcing_send)
            await announce()


class OutboxLag(msgspec.Struct):
    pending: int
    oldest_age_seconds: float


async def outbox_lag(topic: str) -> OutboxLag:
    pending = await OutboxEvent.count().where(OutboxEvent.topic == topic)
    oldest = (
        await OutboxEvent.select(OutboxEvent.created_at)
        .where(OutboxEvent.topic == topic)
        .order_by(OutboxEvent.id)
        .first()
    )
    age = (datetime.now(UTC) - oldest["created_at"]).total_seconds() if oldest else 0.0
    lag = OutboxLag(pending=pending, oldest_age_seconds=round(max(age, 0.0), 3))
    OUTBOX_PENDING.labels(topic).set(lag.pending)
    OUTBOX_OLDEST_AGE.labels(topic).set(lag.oldest_age_seconds)
    return lag


# Set by every `outbox_lag` (each /ready, each outbox sweep job): a scrape shows the last one measured.
OUTBOX_PENDING = Gauge("clipdex_outbox_pending", "Undelivered outbox events, by topic.", ["topic"])
OUTBOX_OLDEST_AGE = Gauge(
    "clipdex_outbox_oldest_age_seconds", "Age of the oldest undelivered outbox event, by topic.", ["topic"]
)


class _DeliveryFailed(Exception):
    """The handler failed; the events are set to be retried."""


class OutboxRelay:
    """Delivers one topic's events to a handler in batches, retrying failures with backoff."""

    def __init__(
        self,
        topic: str,
        handler: Handler,
        engine: Engine,
        *,
        batch_size: int = 64,
        lease_seconds: float = 60.0,
        max_backoff_seconds: float = 60.0,
    ) -> None:
        self.topic = topic
        self._handler = handler
        self._engine = engine
        self._batch_size = batch_size
        self._lease = timedelta(seconds=lease_seconds)
        self._max_backoff = max_backoff_seconds

    async def _claim(self, keys: list[str] | None = None) -> list[dict]:
        """Take up to a batch of due events (of these keys only, if given), leasing them so another
        relay skips them meanwhile."""
        if not owns_tables(self._engine, OutboxEvent):
            return []
        now = datetime.now(UTC)
        due = (OutboxEvent.topic == self.topic) & (OutboxEvent.available_at <= now)
        if keys is not None:
            due &= OutboxEvent.key.is_in(keys)
        # Look before locking: an idle relay polls often, and on SQLite every write transaction takes
        # the database-wide write lock.
        if not await OutboxEvent.exists().where(due):
            return []
        async with write_transaction(self._engine):
            rows = (
                await OutboxEvent.select(OutboxEvent.id, OutboxEvent.key, OutboxEvent.attempts)
                .where(due)
                .order_by(OutboxEvent.id)
                .limit(self._batch_size)
            )
            if rows:
                await OutboxEvent.update({OutboxEvent.available_at: now + self._lease}).where(
                    OutboxEvent.id.is_in([row["id"] for row in rows])
                )
        return rows

    async def release_leases(self) -> None:
        """Make this topic's leased and backed-off events due now. Only for a relay that knows no
        other relay is running (its handler's target admits one process): then every lease is a dead
        process's, whose delivery was cut off, and would otherwise wait `lease_seconds`."""
        now = datetime.now(UTC)
        await OutboxEvent.update({OutboxEvent.available_at: now}).where(
            (OutboxEvent.topic == self.topic) & (OutboxEvent.available_at > now)
        )

    async def deliver_once(self) -> int:
        """Deliver one batch; returns how many events it acknowledged (0: nothing due, or it failed)."""
        try:
            return await self._deliver(await self._claim())
        except _DeliveryFailed:
            return 0

    async def deliver_keys(self, keys: list[str]) -> int:
        """Deliver the due events of these keys now (a job announced them after their commit); returns
        how many it acknowledged, none when another delivery has them. Raises when the handler fails,
        after recording the failure as `deliver_once` does (so the sweep retries it too)."""
        delivered = 0
        while keys and (rows := await self._claim(keys)):
            delivered += await self._deliver(rows)
        return delivered

    async def _deliver(self, rows: list[dict]) -> int:
        if not rows:
            return 0
        ids = [row["id"] for row in rows]
        keys = list(dict.fromkeys(row["key"] for row in rows))  # one delivery per key per batch
        try:
            await self._handler(keys)
        except Exception as exc:
            attempts = max(row["attempts"] for row in rows) + 1
            delay = min(self._max_backoff, 0.5 * 2 ** min(attempts, 16))
            logger.warning(
                "outbox %s: delivery of %d events failed (attempt %d), retrying in %.1fs: %r",
                self.topic,
                len(ids),
                attempts,
                delay,
                exc,
            )
            await OutboxEvent.update(
                {
                    OutboxEvent.attempts: OutboxEvent.attempts + 1,
                    OutboxEvent.available_at: datetime.now(UTC) + timedelta(seconds=delay),
                    OutboxEvent.last_error: repr(exc)[:2000],
                }
            ).where(OutboxEvent.id.is_in(ids))
            raise _DeliveryFailed(f"outbox {self.topic}: delivery failed: {exc!r}") from exc
        await OutboxEvent.delete().where(OutboxEvent.id.is_in(ids))
        return len(ids)

    async def drain(self) -> int:
        """Deliver until nothing is due; returns how many events were acknowledged."""
        total = 0
        while delivered := await self.deliver_once():
            total += delivered
        return total

    def running(self, poll_seconds: float) -> AbstractAsyncContextManager[None]:
        """Relay in the background while the app runs."""
        return repeating(self.deliver_once, poll_seconds, f"outbox-{self.topic}", again_at_once=True)
