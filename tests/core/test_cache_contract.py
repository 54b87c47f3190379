"""The cache port's contract, run against every implementation: in-process, and Upstash Redis through the
official SDK, the local Upstash-compatible server and a real Redis.

The Redis behind the local server is REDIS_URL's database 13, emptied when the session starts. When it is
not reachable the Upstash runs are skipped, or fail in CI (CI=true), where Redis must be there.
"""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta

import pytest
import redis
import redis.asyncio

from core.cache import Cache, InMemoryCache
from core.upstash_cache import UpstashRedisCache
from tests.services import IN_CI, TEST_REDIS
from upstash_local.redis_server import LocalServer, serve_in_subprocess

REDIS_URL = f"{TEST_REDIS}/13"
TIMEOUT_SECONDS = 5.0


@pytest.fixture(scope="session")
def local_upstash_redis() -> Iterator[LocalServer]:
    """The local Upstash Redis REST server in front of an emptied Redis database, with a random token."""
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=5)
    try:
        client.flushdb()
    except redis.RedisError as exc:
        message = f"Redis at {REDIS_URL} is not reachable ({exc}); the Upstash cache runs need it"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    finally:
        client.close()
    with serve_in_subprocess(REDIS_URL, secrets.token_urlsafe(24)) as server:
        yield server


@pytest.fixture(params=["in-memory", "upstash-sdk-local-server"])
async def cache(request: pytest.FixtureRequest) -> AsyncIterator[Cache]:
    if request.param == "in-memory":
        yield InMemoryCache()
        return
    server: LocalServer = request.getfixturevalue("local_upstash_redis")
    # A prefix per test keeps tests apart without emptying the database between them.
    upstash = UpstashRedisCache(server.url, server.token, TIMEOUT_SECONDS, prefix=f"test-{uuid.uuid4().hex}:")
    await upstash.open()
    try:
        yield upstash
    finally:
        await upstash.delete_all()
        await upstash.close()


async def test_get_returns_what_set_stored(cache: Cache):
    await cache.set("text", "héllo")
    await cache.set("bytes", b"\x00\xff")

    assert await cache.get("text") == "héllo".encode()
    assert await cache.get("bytes") == b"\x00\xff"
    assert await cache.get("absent") is None


async def test_get_many_returns_each_value_in_the_order_asked(cache: Cache):
    await cache.set("first", b"\x00\xff one")
    await cache.incr("counter", 7)
    await cache.set("gone", b"x", expires_in=timedelta(milliseconds=1))
    await asyncio.sleep(0.05)

    values = await cache.get_many(["counter", "absent", "first", "gone", "first"])

    assert values == [b"7", None, b"\x00\xff one", None, b"\x00\xff one"]


@pytest.mark.parametrize(
    "value",
    [
        bytes(range(256)),
        b"\x00\xff\xfe\x80 not utf-8 \xc3\x28",
        b"",
        b"OK",  # what the base64 transport leaves unencoded
        b"T0s=",  # base64 of "OK"
        b"12345",
        '{"json": "ü ✓ 🎬"}'.encode(),
    ],
    ids=["every-byte", "invalid-utf8", "empty", "ok", "base64-looking", "digits", "json-utf8"],
)
async def test_arbitrary_bytes_round_trip(cache: Cache, value: bytes):
    await cache.set("value", value)

    assert await cache.get("value") == value


async def test_set_replaces_the_value_and_its_ttl(cache: Cache):
    await cache.set("key", b"old", expires_in=100)

    await cache.set("key", b"new")

    assert await cache.get("key") == b"new"
    assert await cache.expires_in("key") is None


async def test_entries_expire_after_their_ttl(cache: Cache):
    await cache.set("short", b"1", expires_in=1)
    await cache.set("short-timedelta", b"1", expires_in=timedelta(seconds=1))
    await cache.set("long", b"1", expires_in=60)
    await cache.set("forever", b"1")
    assert await cache.get("short") == b"1"

    await asyncio.sleep(1.05)

    assert await cache.get("short") is None
    assert await cache.get("short-timedelta") is None
    assert not await cache.exists("short")
    assert await cache.get("long") == b"1"
    assert await cache.get("forever") == b"1"


async def test_expires_in_reports_the_remaining_seconds(cache: Cache):
    await cache.set("ttl", b"1", expires_in=30)
    await cache.set("forever", b"1")

    assert 29 <= await cache.expires_in("ttl") <= 30
    assert await cache.expires_in("forever") is None
    assert await cache.expires_in("absent") is None


async def test_get_can_renew_the_ttl_of_an_expiring_key_only(cache: Cache):
    await cache.set("key", b"1", expires_in=5)
    await cache.set("forever", b"1")

    assert await cache.get("key", renew_for=100) == b"1"
    assert await cache.get("forever", renew_for=timedelta(seconds=100)) == b"1"
    assert await cache.get("absent", renew_for=100) is None

    assert await cache.expires_in("key") >= 99
    assert await cache.expires_in("forever") is None
    assert not await cache.exists("absent")


async def test_exists_and_delete(cache: Cache):
    await cache.set("key", b"1")
    await cache.set("other", b"1")
    assert await cache.exists("key")

    await cache.delete("key")
    await cache.delete("never-there")  # deleting what is absent is fine

    assert not await cache.exists("key")
    assert await cache.get("key") is None
    assert await cache.exists("other")


async def test_delete_all_removes_every_kind_of_entry(cache: Cache):
    await cache.set("a", b"1")
    await cache.set("b", b"2", expires_in=60)
    await cache.incr("counter")
    await cache.increment_field("counters", "x")

    await cache.delete_all()

    for key in ("a", "b", "counter"):
        assert not await cache.exists(key)
    assert await cache.claim_fields("counters", "claim") == {}


async def test_incr_counts_from_zero_and_by_amount(cache: Cache):
    assert await cache.incr("n") == 1
    assert await cache.incr("n") == 2
    assert await cache.incr("n", 5) == 7
    assert await cache.incr("n", -3) == 4
    assert await cache.get("n") == b"4"


async def test_incr_continues_a_number_that_set_stored(cache: Cache):
    await cache.set("n", b"41")

    assert await cache.incr("n") == 42
    assert await cache.get("n") == b"42"


async def test_concurrent_increments_are_all_counted(cache: Cache):
    results = await asyncio.gather(*(cache.incr("hits", expires_in=60) for _ in range(200)))

    assert await cache.get("hits") == b"200"
    assert sorted(results) == list(range(1, 201))  # no two callers saw the same count


async def test_incr_keeps_the_ttl_of_the_first_increment(cache: Cache):
    assert await cache.incr("window", expires_in=1) == 1
    await asyncio.sleep(0.6)

    # A later increment's TTL must not extend the window that the first one opened.
    assert await cache.incr("window", expires_in=1) == 2
    await asyncio.sleep(0.5)

    assert not await cache.exists("window")
    assert await cache.incr("window", expires_in=1) == 1  # a new window starts


async def test_incr_sets_a_ttl_only_on_the_key_it_creates(cache: Cache):
    await cache.incr("n")

    await cache.incr("n", expires_in=60)  # the key existed: it keeps having no TTL

    assert await cache.expires_in("n") is None
    await cache.incr("windowed", expires_in=60)
    assert 59 <= await cache.expires_in("windowed") <= 60


async def test_increment_field_and_claim_fields(cache: Cache):
    assert await cache.increment_field("views", "v1") == 1
    assert await cache.increment_field("views", "v1", 4) == 5
    assert await cache.increment_field("views", "v2", 2) == 2

    assert await cache.claim_fields("views", "claim") == {"v1": 5, "v2": 2}
    assert await cache.increment_field("views", "v1") == 1  # a new map starts
    # Until the claim is deleted, claiming again answers the same and moves nothing.
    assert await cache.claim_fields("views", "claim") == {"v1": 5, "v2": 2}
    await cache.delete("claim")
    assert await cache.claim_fields("views", "claim") == {"v1": 1}
    await cache.delete("claim")
    assert await cache.claim_fields("views", "claim") == {}
    assert await cache.claim_fields("never-there", "other-claim") == {}


async def test_claim_fields_onto_itself_reads_a_claim_and_moves_nothing(cache: Cache):
    # How core/counters.py reads a dead worker's claim without taking anything new into it.
    await cache.increment_field("views", "v1", 3)
    assert await cache.claim_fields("claim", "claim") == {}
    assert not await cache.exists("claim")
    assert await cache.claim_fields("views", "claim") == {"v1": 3}
    await cache.increment_field("views", "v2")
    assert await cache.claim_fields("claim", "claim") == {"v1": 3}
    assert await cache.claim_fields("views", "other") == {"v2": 1}


async def test_increments_landing_during_claims_are_each_counted_once(cache: Cache):
    fields, waves, per_wave = ("a", "b", "c"), 8, 6
    claimed: Counter[str] = Counter()
    claims_with_counts = 0
    finished = asyncio.Event()

    async def claim_until_finished(claim: str) -> None:
        nonlocal claims_with_counts
        while not finished.is_set():
            counts = await cache.claim_fields("views", claim)
            await cache.delete(claim)
            claims_with_counts += bool(counts)
            claimed.update(counts)
            await asyncio.sleep(0)

    claimers = [asyncio.create_task(claim_until_finished(f"claim-{n}")) for n in range(2)]
    for _ in range(waves):
        await asyncio.gather(
            *(cache.increment_field("views", field) for field in fields for _ in range(per_wave))
        )
        await asyncio.sleep(0)
    finished.set()
    await asyncio.gather(*claimers)
    claimed.update(await cache.claim_fields("views", "last-claim"))

    assert claimed == {field: waves * per_wave for field in fields}
    assert claims_with_counts >= 2  # the claims did overlap with the increments


async def test_ping_answers(cache: Cache):
    await cache.ping()


# Upstash only: what the in-process cache cannot get wrong.


@pytest.fixture
async def raw_redis() -> AsyncIterator[redis.asyncio.Redis]:
    client = redis.asyncio.Redis.from_url(REDIS_URL)
    try:
        yield client
    finally:
        await client.aclose()


async def test_delete_all_removes_only_keys_under_its_prefix(
    local_upstash_redis: LocalServer, raw_redis: redis.asyncio.Redis
):
    server = local_upstash_redis
    ours = UpstashRedisCache(server.url, server.token, TIMEOUT_SECONDS, prefix="t*[x]:")
    neighbour = UpstashRedisCache(server.url, server.token, TIMEOUT_SECONDS, prefix="neighbour:")
    await ours.open()
    await neighbour.open()
    try:
        for index in range(1200):  # more than one SCAN batch
            await raw_redis.set(f"t*[x]:{index}", b"1")
        await ours.set("key", b"1")
        await neighbour.set("key", b"1")
        # Keys that the prefix would match were it a glob pattern instead of a literal.
        await raw_redis.set("tabcx:key", b"1")
        await raw_redis.set("other-app:key", b"1")

        await ours.delete_all()

        assert await raw_redis.keys("t\\*\\[x\\]:*") == []
        assert not await ours.exists("key")
        assert await neighbour.get("key") == b"1"
        assert await raw_redis.get("tabcx:key") == b"1"
        assert await raw_redis.get("other-app:key") == b"1"
    finally:
        await neighbour.delete_all()
        await raw_redis.delete("tabcx:key", "other-app:key")
        await ours.close()
        await neighbour.close()


async def test_a_server_that_never_answers_fails_calls_within_the_timeout():
    release = asyncio.Event()

    async def accept_and_stay_silent(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await release.wait()
        writer.close()

    silent = await asyncio.start_server(accept_and_stay_silent, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    cache = UpstashRedisCache(f"http://127.0.0.1:{port}", "token", timeout_seconds=0.3)
    await cache.open()
    try:
        calls = (
            lambda: cache.get("k"),
            lambda: cache.incr("k", expires_in=5),
            cache.ping,
            cache.delete_all,
        )
        for call in calls:
            started = time.monotonic()
            # The first call waits out the deadline; the others fail at once, for the same reason.
            with pytest.raises(TimeoutError, match="did not answer"):
                await call()
            assert time.monotonic() - started < 1.0
    finally:
        await cache.close()
        release.set()
        silent.close()
        await silent.wait_closed()


class FreezableProxy:
    """A TCP relay in front of a server that can be frozen: bytes are held, not passed on, until it
    thaws (as a hung server or network), and then delivered late."""

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self.thawed = asyncio.Event()
        self.thawed.set()
        self._relays: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> str:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def __aexit__(self, *_: object) -> None:
        self.thawed.set()
        self._server.close()
        for relay in self._relays:
            relay.cancel()
        await asyncio.gather(*self._relays, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(*self._target)
        for source, sink in ((reader, upstream_writer), (upstream_reader, writer)):
            relay = asyncio.create_task(self._relay(source, sink))
            self._relays.add(relay)
            relay.add_done_callback(self._relays.discard)

    async def _relay(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                await self.thawed.wait()
                sink.write(data)
                await sink.drain()
        finally:
            sink.close()


async def test_after_a_silent_call_calls_fail_at_once_until_upstash_answers_again(
    local_upstash_redis: LocalServer,
):
    host, port = local_upstash_redis.url.removeprefix("http://").rsplit(":", 1)
    proxy = FreezableProxy(host, int(port))
    async with proxy as url:
        cache = UpstashRedisCache(url, local_upstash_redis.token, 0.3, prefix=f"test-{uuid.uuid4().hex}:")
        await cache.open()

        async def seconds_to_fail() -> float:
            started = time.monotonic()
            with pytest.raises(TimeoutError):
                await cache.get("k")
            return time.monotonic() - started

        try:
            await cache.set("k", b"v")
            proxy.thawed.clear()
            assert await seconds_to_fail() >= 0.3  # asked, and waited out the deadline
            await asyncio.sleep(1.0)  # longer than a deadline: still not asked while Upstash is silent
            assert await seconds_to_fail() < 0.05
            proxy.thawed.set()
            deadline = time.monotonic() + 5
            while True:  # answers again once a background PING got through
                try:
                    assert await cache.get("k") == b"v"
                    break
                except TimeoutError:
                    assert time.monotonic() < deadline, "the cache was not asked again"
                    await asyncio.sleep(0.05)
        finally:
            await cache.delete_all()
            await cache.close()


async def test_calls_before_open_are_refused_and_close_then_open_works(local_upstash_redis: LocalServer):
    cache = UpstashRedisCache(local_upstash_redis.url, local_upstash_redis.token, TIMEOUT_SECONDS)
    with pytest.raises(RuntimeError, match="open"):
        await cache.ping()

    await cache.open()
    await cache.open()  # opening twice keeps the one client
    await cache.ping()
    await cache.close()
    with pytest.raises(RuntimeError, match="open"):
        await cache.ping()
    await cache.open()
    await cache.ping()
    await cache.close()


async def test_a_wrong_token_makes_calls_fail(local_upstash_redis: LocalServer):
    cache = UpstashRedisCache(local_upstash_redis.url, "wrong-token", TIMEOUT_SECONDS)
    await cache.open()
    try:
        with pytest.raises(Exception, match="Unauthorized"):
            await cache.ping()
    finally:
        await cache.close()
