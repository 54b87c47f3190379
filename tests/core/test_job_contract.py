"""The job port's contract, on both implementations: in process, and QStash (the official SDK publishing to
the local QStash server, which delivers signed calls to the app's real jobs endpoint served by uvicorn).

Enqueue, deduplication, delay, retries until success, dead-letter after the last retry, periodic jobs,
and, for QStash, that a call QStash did not sign is refused with 401 and never runs the job.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import jwt
import pytest
from litestar import Litestar
from litestar.di import Provide
from qstash import AsyncQStash

from core.errors import EXCEPTION_HANDLERS
from core.jobs import CronSchedule, InProcessJobQueue, JobQueue, Jobs, cron_for_interval
from core.qstash_jobs import SCHEDULE_ID_PREFIX, QStashJobQueue, run_job
from tests.live_server import free_port, serving_in_loop
from upstash_local.qstash_server import LocalQStashServer

RETRIES = 2  # what both queues are built with here: three attempts in all


async def eventually(check: Callable[[], Awaitable[bool] | bool], within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while True:
        result = check()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError("the condition did not become true in time")
        await asyncio.sleep(0.05)


@dataclass
class Runs:
    """What a test job saw: one payload per run."""

    payloads: list[Any] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.payloads)


@dataclass
class Harness:
    kind: str
    jobs: Jobs
    queue: JobQueue
    # The interval a periodic test job declares: a fraction of a second in process, a minute with QStash
    # (cron's finest), which the local server's clock runs through in a second.
    periodic_seconds: float
    dead_letters: Callable[[], Awaitable[list[str]]]
    base_url: str = ""
    qstash: AsyncQStash | None = None


@pytest.fixture(scope="module")
def qstash_server() -> Iterator[LocalQStashServer]:
    with LocalQStashServer.start(
        options=["--retry-delay-scale", "0.001", "--cron-minute-seconds", "1"]
    ) as server:
        yield server


@asynccontextmanager
async def in_process_harness() -> AsyncIterator[Harness]:
    jobs = Jobs()
    queue = InProcessJobQueue(jobs, retries=RETRIES, backoff_seconds=0.01)

    async def dead_letters() -> list[str]:
        return [letter.name for letter in queue.dead_letters]

    yield Harness("in_process", jobs, queue, 0.1, dead_letters)


@asynccontextmanager
async def qstash_harness(server: LocalQStashServer) -> AsyncIterator[Harness]:
    client = AsyncQStash(server.token, base_url=server.url)
    keys = await client.signing_key.get()
    jobs = Jobs()
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    queue = QStashJobQueue(
        jobs,
        token=server.token,
        public_base_url=base_url,
        current_signing_key=keys.current,
        next_signing_key=keys.next,
        base_url=server.url,
        retries=RETRIES,
    )
    app = Litestar(
        route_handlers=[run_job],
        dependencies={"job_queue": Provide(lambda: queue, sync_to_thread=False)},
        exception_handlers=EXCEPTION_HANDLERS,
    )

    async def dead_letters() -> list[str]:
        listed = await client.dlq.list()
        return [m.url.rsplit("/", 1)[1] for m in listed.messages if m.url.startswith(base_url + "/")]

    async with serving_in_loop(app, port):
        try:
            yield Harness("qstash", jobs, queue, 60.0, dead_letters, base_url, client)
        finally:
            for schedule in await client.schedule.list():
                if schedule.destination.startswith(base_url + "/"):
                    await client.schedule.delete(schedule.schedule_id)


@pytest.fixture(params=["in_process", "qstash"])
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    if request.param == "in_process":
        async with in_process_harness() as made:
            yield made
    else:
        async with qstash_harness(request.getfixturevalue("qstash_server")) as made:
            yield made


def recording(jobs: Jobs, name: str, *, fail_first: int = 0, **declared: Any) -> Runs:
    """Register job `name` recording each run's payload; its first `fail_first` runs raise."""
    runs = Runs()

    async def job(payload: Any) -> None:
        runs.payloads.append(payload)
        if len(runs) <= fail_first:
            raise RuntimeError(f"run {len(runs)} fails on purpose")

    jobs.register(name, job, **declared)
    return runs


async def test_an_enqueued_job_runs_once_with_its_payload(harness: Harness) -> None:
    runs = recording(harness.jobs, "greet")

    await harness.queue.enqueue("greet", {"to": "ada", "n": [1, 2]})

    await eventually(lambda: len(runs) == 1)
    await asyncio.sleep(0.3)  # and not again
    assert runs.payloads == [{"to": "ada", "n": [1, 2]}]


async def test_an_unknown_job_fails_the_enqueue(harness: Harness) -> None:
    with pytest.raises(LookupError):
        await harness.queue.enqueue("nobody-registered-this", {})


async def test_the_same_dedup_key_runs_once(harness: Harness) -> None:
    runs = recording(harness.jobs, "dedup")

    await harness.queue.enqueue("dedup", {"copy": 1}, dedup_key=f"{harness.kind}-{id(runs)}")
    await harness.queue.enqueue("dedup", {"copy": 2}, dedup_key=f"{harness.kind}-{id(runs)}")
    await harness.queue.enqueue("dedup", {"copy": 3}, dedup_key=f"{harness.kind}-{id(runs)}-other")

    await eventually(lambda: len(runs) == 2)
    await asyncio.sleep(0.5)
    assert sorted(payload["copy"] for payload in runs.payloads) == [1, 3]


async def test_a_delayed_job_waits_for_its_delay(harness: Harness) -> None:
    runs = recording(harness.jobs, "later")
    enqueued = time.monotonic()

    await harness.queue.enqueue("later", {}, delay=2)

    await eventually(lambda: len(runs) == 1)
    assert time.monotonic() - enqueued >= 1.9


async def test_a_failing_job_is_retried_until_it_succeeds(harness: Harness) -> None:
    runs = recording(harness.jobs, "flaky", fail_first=RETRIES)

    await harness.queue.enqueue("flaky", {"id": 7})

    await eventually(lambda: len(runs) == RETRIES + 1)
    await asyncio.sleep(0.5)
    assert runs.payloads == [{"id": 7}] * (RETRIES + 1)
    assert await harness.dead_letters() == []
    assert harness.jobs.failed == RETRIES


async def test_a_job_failing_every_retry_is_dead_lettered(harness: Harness) -> None:
    runs = recording(harness.jobs, "doomed", fail_first=10**6)

    await harness.queue.enqueue("doomed", {"id": 8})

    await eventually(lambda: len(runs) == RETRIES + 1)

    async def dead_lettered() -> bool:
        return await harness.dead_letters() == ["doomed"]

    await eventually(dead_lettered)
    await asyncio.sleep(0.3)
    assert len(runs) == RETRIES + 1  # and no more attempts after the last retry


async def test_a_periodic_job_runs_on_its_interval(harness: Harness) -> None:
    runs = recording(harness.jobs, "tick", every_seconds=harness.periodic_seconds)
    once = recording(harness.jobs, "not-periodic")

    async with harness.queue.running():
        await eventually(lambda: len(runs) >= 3)
    assert len(once) == 0  # only declared periodic jobs run by themselves


async def test_a_cron_job_runs_when_its_expression_matches(harness: Harness) -> None:
    if harness.kind == "in_process":
        pytest.skip("the in-process queue checks cron expressions once a minute of real time")
    runs = recording(harness.jobs, "cron-tick", cron="* * * * *")

    async with harness.queue.running():
        await eventually(lambda: len(runs) >= 2)


async def test_a_job_that_did_its_work_but_failed_is_redelivered_and_an_idempotent_one_counts_once(
    harness: Harness,
) -> None:
    """At least once: the work done on a failed attempt is done again; keyed writes make it one effect."""
    effect: dict[str, int] = {}
    attempts = Runs()

    async def upsert(payload: dict) -> None:
        attempts.payloads.append(payload)
        effect[payload["key"]] = payload["value"]  # the effect, keyed: done twice is done once
        if len(attempts) == 1:
            raise RuntimeError("the answer is lost after the write")

    harness.jobs.register("upsert", upsert)
    await harness.queue.enqueue("upsert", {"key": "k", "value": 42})

    await eventually(lambda: len(attempts) == 2)
    assert effect == {"k": 42}


# ---------------------------------------------------------------- QStash only


@pytest.fixture
async def qstash(qstash_server: LocalQStashServer) -> AsyncIterator[Harness]:
    async with qstash_harness(qstash_server) as made:
        yield made


async def test_periodic_jobs_are_one_schedule_each_however_many_instances_start(qstash: Harness) -> None:
    assert qstash.qstash is not None
    recording(qstash.jobs, "sweep", every_seconds=60)
    recording(qstash.jobs, "nightly", cron="0 3 * * *")
    recording(qstash.jobs, "one-off")

    for _ in range(3):  # three instances starting
        await qstash.queue.schedule_periodic_jobs()

    ours = [s for s in await qstash.qstash.schedule.list() if s.destination.startswith(qstash.base_url)]
    assert sorted((s.schedule_id, s.cron) for s in ours) == [
        (SCHEDULE_ID_PREFIX + "nightly", "0 3 * * *"),
        (SCHEDULE_ID_PREFIX + "sweep", "* * * * *"),
    ]


def _forged(key: str, url: str, body: bytes) -> str:
    """A signature made as QStash makes one (the local server's way), with any key, for any URL and body."""
    now = int(time.time())
    claims = {
        "iss": "Upstash",
        "sub": url,
        "exp": now + 300,
        "nbf": now,
        "iat": now,
        "jti": "forged",
        "body": base64.urlsafe_b64encode(hashlib.sha256(body).digest()).decode().rstrip("="),
    }
    return jwt.encode(claims, key, algorithm="HS256")


async def test_a_call_qstash_did_not_sign_is_refused_and_the_job_does_not_run(qstash: Harness) -> None:
    assert qstash.qstash is not None
    runs = recording(qstash.jobs, "guarded")
    url = f"{qstash.base_url}/api/internal/jobs/guarded"
    body = b'{"id": 1}'
    keys = await qstash.qstash.signing_key.get()
    attempts = {
        "missing": {},
        "garbage": {"Upstash-Signature": "not-a-jwt"},
        "another key": {"Upstash-Signature": _forged("k" * 32, url, body)},
        "another URL": {"Upstash-Signature": _forged(keys.current, url.replace("guarded", "other"), body)},
        "another body": {"Upstash-Signature": _forged(keys.current, url, b'{"id": 2}')},
    }
    async with httpx.AsyncClient() as http:
        for case, headers in attempts.items():
            response = await http.post(
                url, content=body, headers={"Content-Type": "application/json", **headers}
            )
            assert response.status_code == 401, case
            assert response.headers["content-type"].startswith("application/problem+json"), case
            assert response.json()["status"] == 401, case
        # The same call, signed as QStash signs it, runs: the refusals above were for the signature.
        signed = await http.post(
            url,
            content=body,
            headers={
                "Content-Type": "application/json",
                "Upstash-Signature": _forged(keys.current, url, body),
            },
        )
    assert signed.status_code == 200, signed.text
    assert runs.payloads == [{"id": 1}]


async def test_an_enqueue_to_a_qstash_that_does_not_answer_fails_within_its_deadline() -> None:
    """A write publishes its job before it answers: a hung QStash must not hold it (the sweep delivers)."""
    silent = socket.create_server(("127.0.0.1", 0))  # accepts connections, never answers
    jobs = Jobs()
    recording(jobs, "stuck")
    queue = QStashJobQueue(
        jobs,
        token="t",
        public_base_url="http://127.0.0.1:1",
        current_signing_key="a",
        next_signing_key="b",
        base_url=f"http://127.0.0.1:{silent.getsockname()[1]}",
        timeout_seconds=0.5,
    )
    started = time.monotonic()
    try:
        with pytest.raises(TimeoutError):
            await queue.enqueue("stuck", {})
    finally:
        silent.close()
    assert time.monotonic() - started < 10  # the SDK alone would wait 600 s for an answer


# ---------------------------------------------------------------- cron, as both queues read it


@pytest.mark.parametrize(
    ("expression", "moment", "matches"),
    [
        ("* * * * *", "2026-12-01T21:15:00", True),
        ("*/15 * * * *", "2026-12-01T21:30:00", True),
        ("*/15 * * * *", "2026-12-01T21:31:00", False),
        ("0 3 * * *", "2026-12-01T03:00:00", True),
        ("0 3 * * *", "2026-12-01T04:00:00", False),
        ("0 9-17 * * 1-5", "2026-12-01T12:00:00", True),  # a Tuesday
        ("0 9-17 * * 1-5", "2026-12-05T12:00:00", False),  # a Saturday
        ("30 6 1,15 * 0", "2026-11-15T06:30:00", True),  # 0 and 7 are both Sunday
        ("30 6 1,15 * 7", "2026-11-15T06:30:00", True),
    ],
)
def test_a_cron_expression_matches_its_minutes(expression: str, moment: str, matches: bool) -> None:
    assert CronSchedule(expression).matches(datetime.fromisoformat(moment).replace(tzinfo=UTC)) is matches


@pytest.mark.parametrize("expression", ["* * * *", "61 * * * *", "* 24 * * *", "*/0 * * * *", "a * * * *"])
def test_a_bad_cron_expression_is_refused_when_the_job_is_registered(expression: str) -> None:
    with pytest.raises(ValueError, match="cron"):
        Jobs().register("bad", recording_noop, cron=expression)


@pytest.mark.parametrize(
    ("seconds", "expression"),
    [
        (1, "* * * * *"),
        (60, "* * * * *"),
        (300, "*/5 * * * *"),
        (3600, "0 * * * *"),
        (6 * 3600, "0 */6 * * *"),
    ],
)
def test_an_interval_becomes_the_nearest_cron_expression_of_at_least_a_minute(
    seconds: float, expression: str
) -> None:
    assert cron_for_interval(seconds) == expression


async def recording_noop(_: Any) -> None:
    return None
