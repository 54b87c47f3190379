"""Background work that runs while the app runs and stops cleanly with it."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from core.database import DatabaseUnavailable

logger = logging.getLogger("clipdex.background")

# Names of the running loops, counted: two apps in one process (tests) may run loops of one name.
_running: collections.Counter[str] = collections.Counter()


def running_loops() -> frozenset[str]:
    """The names of the loops running now in this process (none when a queue service runs the jobs)."""
    return frozenset(name for name, count in _running.items() if count > 0)


@asynccontextmanager
async def repeating(
    work: Callable[[], Awaitable[object]], interval_seconds: float, name: str, *, again_at_once: bool = False
) -> AsyncIterator[None]:
    """Run `work` every `interval_seconds` until the block exits (immediately again when it returns a
    truthy value and `again_at_once` is set, to drain a backlog).

    Stopping waits for the current run to finish instead of cancelling it: a run cancelled inside a
    database transaction can leave SQLite's write lock held by a connection nobody will close.
    """
    stopping = asyncio.Event()

    async def loop() -> None:
        while not stopping.is_set():
            try:
                busy = await work()
            except DatabaseUnavailable as exc:
                # Expected while PostgreSQL restarts, and the same every time: one line, no traceback.
                logger.warning("%s: %s; trying again in %.1fs", name, exc, interval_seconds)
                busy = False
            except Exception:
                logger.exception("%s failed; trying again in %.1fs", name, interval_seconds)
                busy = False
            if busy and again_at_once:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), interval_seconds)

    task = asyncio.create_task(loop(), name=name)
    _running[name] += 1
    try:
        yield
    finally:
        _running[name] -= 1
        stopping.set()
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout=30)
        except TimeoutError:
            logger.error("%s did not stop within 30s; cancelling it", name)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
