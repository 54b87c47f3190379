"""Background jobs behind one port: named async functions run soon, later or periodically, in process or
through a queue service (QStash, core/qstash_jobs.py).

Features register plain async functions by name (`jobs.register("views.flush", flush, every_seconds=5)`);
the app then `enqueue`s work by name with a JSON payload. Every job must be idempotent: a queue delivers
at least once, so a job delivered twice must have the effect of one.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime
from typing import Any, Protocol

from prometheus_client import Counter

from core.background import repeating

logger = logging.getLogger("clipdex.jobs")

JobHandler = Callable[[Any], Awaitable[object]]
"""Takes the job's JSON payload; a truthy result from a periodic job means "more to do" (see
`again_at_once`); raising means the job failed and is retried."""

JOB_RUNS = Counter("clipdex_job_runs", "Background job runs, by job and outcome.", ["job", "outcome"])
JOB_DEAD_LETTERS = Counter(
    "clipdex_job_dead_letters", "Jobs given up on after their last retry (in process).", ["job"]
)


class UnknownJob(LookupError):
    """No job is registered under this name."""


@dataclasses.dataclass(frozen=True)
class Job:
    name: str
    handler: JobHandler
    every_seconds: float | None = None
    cron: str | None = None
    # In process: run again at once while the job reports more to do (draining a backlog).
    again_at_once: bool = False
    # In process: run once more when the app stops (e.g. writing views still counted in memory).
    at_shutdown: bool = False

    @property
    def periodic(self) -> bool:
        return self.every_seconds is not None or self.cron is not None


_JOB_NAME = re.compile(r"[a-z][a-z0-9_.-]{0,63}")


class Jobs:
    """The registry: every job the app can run, by name."""

    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}
        self.failed = 0  # runs that raised, since start-up (shown by /ready)

    def register(
        self,
        name: str,
        handler: JobHandler,
        *,
        every_seconds: float | None = None,
        cron: str | None = None,
        again_at_once: bool = False,
        at_shutdown: bool = False,
    ) -> None:
        if not _JOB_NAME.fullmatch(name):
            raise ValueError(f"job name {name!r} must match {_JOB_NAME.pattern} (it is part of a URL)")
        if name in self._jobs:
            raise ValueError(f"job {name!r} is registered already")
        if every_seconds is not None and every_seconds <= 0:
            raise ValueError("every_seconds must be positive")
        if cron is not None:
            CronSchedule(cron)  # refuse a bad expression at registration, not at its first run
        self._jobs[name] = Job(name, handler, every_seconds, cron, again_at_once, at_shutdown)

    def __getitem__(self, name: str) -> Job:
        try:
            return self._jobs[name]
        except KeyError:
            raise UnknownJob(name) from None

    def __contains__(self, name: object) -> bool:
        return name in self._jobs

    def __iter__(self) -> Iterator[Job]:
        return iter(self._jobs.values())

    async def run(self, name: str, payload: Any) -> object:
        """Run one job now and count the outcome; raises what the job raised."""
        job = self[name]
        try:
            result = await job.handler(payload)
        except Exception:
            self.failed += 1
            JOB_RUNS.labels(name, "failed").inc()
            raise
        JOB_RUNS.labels(name, "done").inc()
        return result

    async def run_shutdown_jobs(self) -> None:
        """Run each job declared `at_shutdown` once, on an instance's way out; a failure is logged."""
        for job in self:
            if job.at_shutdown:
                try:
                    await self.run(job.name, None)
                except Exception:
                    logger.exception("job %s failed at shutdown", job.name)


class JobQueue(Protocol):
    """Runs the registry's jobs: enqueued ones at least once, periodic ones on their schedule."""

    jobs: Jobs
    # True when jobs run in this process's own loops (the app must then keep running).
    in_process: bool

    async def enqueue(
        self, name: str, payload: Any = None, *, dedup_key: str | None = None, delay: float | None = None
    ) -> None:
        """Run job `name` with `payload` after `delay` seconds; a second enqueue with the same `dedup_key`
        within the deduplication window is dropped."""
        ...

    def running(self) -> AbstractAsyncContextManager[None]:
        """Start the periodic jobs (loops, or the queue service's schedules) for the app's lifetime."""
        ...


@dataclasses.dataclass
class DeadLetter:
    name: str
    payload: Any
    error: str
    failed_at: datetime


class InProcessJobQueue:
    """Jobs as tasks and loops of this process, as clipdex always ran them: an enqueued job is retried with
    exponential backoff and dead-lettered (logged, kept in `dead_letters`) after its last retry; a
    periodic job runs every `every_seconds`, or when its cron expression matches (UTC)."""

    in_process = True

    def __init__(
        self,
        jobs: Jobs,
        *,
        retries: int = 3,
        backoff_seconds: float = 0.5,
        max_backoff_seconds: float = 60.0,
        dedup_window_seconds: float = 600.0,
    ) -> None:
        self.jobs = jobs
        self._retries = retries
        self._backoff = backoff_seconds
        self._max_backoff = max_backoff_seconds
        self._dedup_window = dedup_window_seconds
        self._seen: dict[str, float] = {}  # dedup key -> time.monotonic() it was enqueued
        self._tasks: set[asyncio.Task[None]] = set()
        self.dead_letters: list[DeadLetter] = []

    async def enqueue(
        self, name: str, payload: Any = None, *, dedup_key: str | None = None, delay: float | None = None
    ) -> None:
        self.jobs[name]  # an unknown name fails the caller, as publishing to a missing URL would not
        now = time.monotonic()
        if dedup_key is not None:
            self._seen = {key: at for key, at in self._seen.items() if now - at < self._dedup_window}
            if dedup_key in self._seen:
                return
            self._seen[dedup_key] = now
        task = asyncio.create_task(self._deliver(name, payload, delay or 0.0), name=f"job-{name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, name: str, payload: Any, delay: float) -> None:
        if delay > 0:
            await asyncio.sleep(delay)
        for attempt in range(self._retries + 1):
            try:
                await self.jobs.run(name, payload)
                return
            except Exception as exc:
                if attempt == self._retries:
                    logger.error("job %s failed after %d retries; dead-lettered: %r", name, attempt, exc)
                    JOB_DEAD_LETTERS.labels(name).inc()
                    self.dead_letters.append(DeadLetter(name, payload, repr(exc), datetime.now(UTC)))
                    return
                wait = min(self._max_backoff, self._backoff * 2**attempt)
                logger.warning(
                    "job %s failed (attempt %d), retrying in %.1fs: %r", name, attempt + 1, wait, exc
                )
                await asyncio.sleep(wait)

    async def idle(self) -> None:
        """Wait until every enqueued job has finished (done or dead-lettered)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        async with AsyncExitStack() as loops:
            for job in self.jobs:
                if job.every_seconds is not None:
                    await loops.enter_async_context(
                        repeating(
                            functools.partial(self.jobs.run, job.name, None),
                            job.every_seconds,
                            job.name,
                            again_at_once=job.again_at_once,
                        )
                    )
                elif job.cron is not None:
                    schedule = CronSchedule(job.cron)
                    await loops.enter_async_context(
                        repeating(
                            functools.partial(self._run_if_due, job.name, schedule), 1.0, f"{job.name} (cron)"
                        )
                    )
            yield
        # The loops have stopped; let enqueued jobs finish, then the jobs that run once on the way out.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.idle(), 30)
        await self.jobs.run_shutdown_jobs()

    async def _run_if_due(self, name: str, schedule: CronSchedule) -> None:
        minute = int(time.time() // 60)
        if schedule.last_minute != minute and schedule.matches(datetime.now(UTC)):
            schedule.last_minute = minute
            await self.jobs.run(name, None)


def _cron_field(text: str, low: int, high: int) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        spec, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if spec == "*":
            start, end = low, high
        elif "-" in spec:
            start, end = (int(bound) for bound in spec.split("-", 1))
        else:
            start = end = int(spec)
            if step_text:
                end = high
        if not (low <= start <= end <= high) or step < 1:
            raise ValueError(f"cron field {text!r} is outside {low}-{high}")
        values.update(range(start, end + 1, step))
    return frozenset(values)


class CronSchedule:
    """A five-field cron expression (minute hour day-of-month month day-of-week; `*`, `a-b`, `a,b`, `*/n`)
    in UTC, the subset QStash schedules and the in-process queue both understand."""

    def __init__(self, expression: str) -> None:
        fields = expression.split()
        if len(fields) != 5:
            raise ValueError(f"cron expression {expression!r} needs five fields")
        try:
            self._minutes = _cron_field(fields[0], 0, 59)
            self._hours = _cron_field(fields[1], 0, 23)
            self._days = _cron_field(fields[2], 1, 31)
            self._months = _cron_field(fields[3], 1, 12)
            self._weekdays = frozenset(day % 7 for day in _cron_field(fields[4], 0, 7))
        except ValueError as exc:
            raise ValueError(f"cron expression {expression!r}: {exc}") from None
        self.expression = expression
        self.last_minute: int | None = None

    def matches(self, moment: datetime) -> bool:
        return (
            moment.minute in self._minutes
            and moment.hour in self._hours
            and moment.day in self._days
            and moment.month in self._months
            and (moment.isoweekday() % 7) in self._weekdays
        )


def cron_for_interval(seconds: float) -> str:
    """The cron expression closest to running every `seconds` (at least every minute, cron's finest)."""
    minutes = max(1, round(seconds / 60))
    if minutes < 60:
        return "* * * * *" if minutes == 1 else f"*/{minutes} * * * *"
    hours = max(1, min(24, round(minutes / 60)))
    return "0 * * * *" if hours == 1 else f"0 */{hours} * * *"
