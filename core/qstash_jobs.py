"""The job port on Upstash QStash: jobs are HTTP calls QStash makes to the app, so no process has to stay up.

Enqueueing publishes a message to `PUBLIC_BASE_URL/api/internal/jobs/{name}` through the official SDK
(QStash's deduplication id, retries and delay); periodic jobs are QStash schedules with fixed ids, so
every instance starting up updates the same schedule instead of adding one. The app answers QStash at
`POST /api/internal/jobs/{name}` (`run_job` below): a signature QStash's keys did not make is refused
with 401 and the job does not run; 2xx only once the job's effect is committed; 5xx makes QStash retry.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import msgspec
from litestar import Request, post
from litestar.di import NamedDependency
from litestar.params import FromPath
from qstash import AsyncQStash, Receiver
from qstash.errors import SignatureError
from qstash.http import RetryConfig

from core.errors import NotFound, Problem
from core.jobs import Jobs, UnknownJob, cron_for_interval

logger = logging.getLogger("clipdex.jobs")

JOBS_PATH = "/api/internal/jobs"
# Schedules clipdex owns start with this; one that no registered job has any more is deleted.
SCHEDULE_ID_PREFIX = "clipdex-"
DEFAULT_RETRIES = 3  # QStash's free plan allows at most 3


class QStashJobQueue:
    """Jobs delivered by QStash (`in_process` False: the app runs no loop of its own)."""

    in_process = False

    def __init__(
        self,
        jobs: Jobs,
        *,
        token: str,
        public_base_url: str,
        current_signing_key: str,
        next_signing_key: str,
        base_url: str | None = None,
        retries: int = DEFAULT_RETRIES,
        timeout_seconds: float = 2.0,
    ) -> None:
        self.jobs = jobs
        # The SDK's own defaults would let a QStash that hangs hold a request for minutes (5 retries,
        # a 600 s read timeout); a write publishing its job waits at most `timeout_seconds`, and what
        # was not published the outbox sweep delivers.
        retry = RetryConfig(retries=1, backoff=lambda attempt: 100.0 * (attempt + 1))
        self._client = AsyncQStash(token, retry=retry, base_url=base_url or None)
        self._timeout = timeout_seconds
        self._receiver = Receiver(current_signing_key=current_signing_key, next_signing_key=next_signing_key)
        self._public_base_url = public_base_url.rstrip("/")
        self._retries = retries

    def url_for(self, name: str) -> str:
        """Where QStash calls job `name` (and the URL its signature names)."""
        return f"{self._public_base_url}{JOBS_PATH}/{name}"

    async def enqueue(
        self, name: str, payload: Any = None, *, dedup_key: str | None = None, delay: float | None = None
    ) -> None:
        self.jobs[name]  # an unknown job fails here, not as 404s QStash would retry
        await asyncio.wait_for(
            self._client.message.publish_json(
                url=self.url_for(name),
                body=payload,
                retries=self._retries,
                deduplication_id=dedup_key,
                delay=f"{math.ceil(delay)}s" if delay else None,
            ),
            self._timeout,
        )

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        await self.schedule_periodic_jobs()
        yield
        # Schedules stay when an instance stops: the others (and the next one) still need them. What
        # this instance holds in memory (e.g. views counted in an in-process cache) is written now.
        await self.jobs.run_shutdown_jobs()

    async def schedule_periodic_jobs(self) -> None:
        """Create or update one schedule per periodic job (idempotent: the schedule id is fixed), and
        delete clipdex's schedules of jobs no longer registered."""
        wanted: set[str] = set()
        for job in self.jobs:
            if not job.periodic:
                continue
            schedule_id = SCHEDULE_ID_PREFIX + job.name
            wanted.add(schedule_id)
            await self._client.schedule.create_json(
                destination=self.url_for(job.name),
                cron=job.cron or cron_for_interval(job.every_seconds or 60),
                body=None,
                retries=self._retries,
                schedule_id=schedule_id,
            )
        for schedule in await self._client.schedule.list():
            if schedule.schedule_id.startswith(SCHEDULE_ID_PREFIX) and schedule.schedule_id not in wanted:
                await self._client.schedule.delete(schedule.schedule_id)

    def verify(self, signature: str, body: bytes, name: str) -> None:
        """Raises SignatureError unless QStash signed this body for this job's URL."""
        self._receiver.verify(
            signature=signature, body=body.decode("utf-8", "replace"), url=self.url_for(name)
        )


class JobOutcome(msgspec.Struct):
    job: str
    status: str = "done"


class BadSignature(Problem):
    def __init__(self, detail: str) -> None:
        super().__init__(401, detail, kind="bad-signature")


class JobFailed(Problem):
    """500: QStash retries the call (and dead-letters it after the last retry)."""

    def __init__(self, name: str) -> None:
        super().__init__(500, f"Job {name} failed; QStash will retry it.", kind="job-failed")


@post(
    f"{JOBS_PATH}/{{name:str}}",
    include_in_schema=False,  # QStash's endpoint, not the public API's
    opt={"exclude_from_auth": True},  # QStash signs its calls instead of carrying a token
    status_code=200,
    name="run_job",
)
async def run_job(
    name: FromPath[str], request: Request, job_queue: NamedDependency[QStashJobQueue]
) -> JobOutcome:
    """Run job `name` for QStash, after checking QStash signed the call."""
    body = await request.body()
    signature = request.headers.get("upstash-signature")
    if not signature:
        raise BadSignature("The Upstash-Signature header is missing.")
    try:
        job_queue.verify(signature, body, name)
    except SignatureError as exc:
        raise BadSignature(f"The Upstash-Signature is not valid: {exc}") from None
    if name not in job_queue.jobs:
        raise NotFound(f"No job named {name}.")
    try:
        payload = msgspec.json.decode(body) if body.strip() else None
    except msgspec.DecodeError:
        # Signed, so it is ours, but no retry can make it JSON: drop it (QStash retries any non-2xx).
        logger.error("job %s: the payload is not JSON; dropped", name)
        return JobOutcome(job=name, status="dropped: payload is not JSON")
    try:
        result = await job_queue.jobs.run(name, payload)
    except UnknownJob:
        raise NotFound(f"No job named {name}.") from None
    except Exception:
        logger.exception("job %s failed (QStash message %s)", name, request.headers.get("upstash-message-id"))
        raise JobFailed(name) from None
    if job_queue.jobs[name].again_at_once and result:
        # It did work and may have more: the next run now rather than at the next schedule.
        await job_queue.enqueue(name, payload)
    return JobOutcome(job=name)
