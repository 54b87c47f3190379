"""Single flight: concurrent identical computations in one process run once, and the others share it.

Fifty identical requests on a cold cache would otherwise all miss and all compute (a search, a
database read) at the same moment. Under one key the first caller computes; the others wait for its
result, or its exception. The wait is bounded: a waiter that has waited `wait_seconds` computes for
itself, as it would have without single flight, so a stuck computation cannot hold every request for
that key past its deadline (it answers as slowly as its own backends, never slower, never a new 503).
A finished flight is forgotten at once, so a failure is never remembered for the next caller.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, Literal, TypeVar

from prometheus_client import Counter

T = TypeVar("T")

# How a caller got its value: computed it ("leader"), shared another's ("shared"), or computed it after
# the bound ran out or the computing request went away ("alone").
Outcome = Literal["leader", "shared", "alone"]

FLIGHTS = Counter(
    "clipdex_single_flight", "Cache misses by how they were answered (single flight).", ["outcome"]
)


class _LeaderGone(Exception):
    """The computing caller was cancelled (its client went away) before it had a result."""


class SingleFlight(Generic[T]):
    """Runs one computation per key at a time in this process and hands its outcome to every caller."""

    def __init__(self, wait_seconds: float) -> None:
        self._wait_seconds = wait_seconds
        self._flights: dict[str, asyncio.Future[T]] = {}

    def __len__(self) -> int:
        """Keys being computed now."""
        return len(self._flights)

    def running(self, key: str) -> bool:
        """Whether a computation of `key` is under way."""
        return key in self._flights

    async def run(self, key: str, compute: Callable[[], Awaitable[T]]) -> tuple[T, Outcome]:
        """`compute()`'s value, computed here or by a concurrent caller with the same key."""
        flight = self._flights.get(key)
        if flight is None:
            return await self._lead(key, compute), _counted("leader")
        if self._wait_seconds > 0:
            try:
                # shield: a waiter timing out or cancelled must not cancel the shared result.
                value = await asyncio.wait_for(asyncio.shield(flight), self._wait_seconds)
                return value, _counted("shared")
            except (TimeoutError, _LeaderGone):
                pass
        return await compute(), _counted("alone")

    async def _lead(self, key: str, compute: Callable[[], Awaitable[T]]) -> T:
        flight: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._flights[key] = flight
        try:
            value = await compute()
        except BaseException as exc:
            # Cancelled (its client went away): the waiters compute for themselves instead.
            flight.set_exception(exc if isinstance(exc, Exception) else _LeaderGone())
            flight.exception()  # retrieved: with no waiter, asyncio would log it as never retrieved
            raise
        else:
            flight.set_result(value)
            return value
        finally:
            if self._flights.get(key) is flight:
                del self._flights[key]


# Looked up once: labels() validates and locks on every call.
_OUTCOMES = {outcome: FLIGHTS.labels(outcome=outcome) for outcome in ("leader", "shared", "alone")}


def _counted(outcome: Outcome) -> Outcome:
    _OUTCOMES[outcome].inc()
    return outcome
