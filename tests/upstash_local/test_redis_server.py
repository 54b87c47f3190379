"""The local Upstash Redis REST server, spoken to over raw HTTP: auth, body and error shapes, the base64
encoding rules, pipelines and transactions, and many clients at once.

It runs as a subprocess in front of REDIS_URL's database 14, emptied when the session starts; when Redis is
not reachable these tests are skipped, or fail in CI (CI=true).
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from base64 import b64decode, b64encode
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import redis
import redis.asyncio
from upstash_redis.asyncio import Redis as UpstashRedis

from tests.services import IN_CI, TEST_REDIS
from upstash_local.redis_server import LocalServer, serve_in_subprocess

REDIS_URL = f"{TEST_REDIS}/14"


@pytest.fixture(scope="session")
def server() -> Iterator[LocalServer]:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=5)
    try:
        client.flushdb()
    except redis.RedisError as exc:
        client.close()
        message = f"Redis at {REDIS_URL} is not reachable ({exc}); the local server needs it"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    try:
        with serve_in_subprocess(REDIS_URL, secrets.token_urlsafe(24)) as running:
            yield running
    finally:
        client.flushdb()  # the tests' keys are not worth keeping
        client.close()


@pytest.fixture
async def http(server: LocalServer) -> AsyncIterator[httpx.AsyncClient]:
    """A client that sends what the SDK sends: the token and base64 encoding."""
    headers = {"Authorization": f"Bearer {server.token}", "Upstash-Encoding": "base64"}
    async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=10) as client:
        yield client


@pytest.fixture
def key() -> str:
    return f"proto-{uuid.uuid4().hex}"


def b64(text: str | bytes) -> str:
    return b64encode(text.encode() if isinstance(text, str) else text).decode()


@pytest.mark.parametrize("route", ["/", "/pipeline", "/multi-exec"])
@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong-token", "Basic dXNlcjpwYXNz", "Bearer"],
    ids=["missing", "wrong", "basic", "empty-bearer"],
)
async def test_a_missing_or_wrong_token_is_401(server: LocalServer, route: str, authorization: str | None):
    headers = {"Authorization": authorization} if authorization else {}
    body = ["PING"] if route == "/" else [["PING"]]
    async with httpx.AsyncClient(base_url=server.url) as client:
        response = await client.post(route, json=body, headers=headers)

    assert response.status_code == 401
    assert response.json() == {"error": "Unauthorized"}


@pytest.mark.parametrize(
    ("route", "body"),
    [
        ("/", b"not json"),
        ("/", b'{"command": "PING"}'),
        ("/", b"[]"),
        ("/", b"[1, 2]"),
        ("/", b'["GET", {"nested": 1}]'),
        ("/", b'["GET", null]'),
        ("/", b'["SET", "k", true]'),
        ("/", b""),
        ("/pipeline", b'["GET", "k"]'),
        ("/pipeline", b'[["GET", "k"], "PING"]'),
        ("/pipeline", b"{}"),
        ("/multi-exec", b"[[]]"),
        ("/multi-exec", b'[["GET", "k"]'),
    ],
)
async def test_a_malformed_body_is_400_with_an_error(http: httpx.AsyncClient, route: str, body: bytes):
    response = await http.post(route, content=body)

    assert response.status_code == 400
    assert list(response.json()) == ["error"]
    assert response.json()["error"].startswith("ERR ")
    assert "Traceback" not in response.text


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (["NOSUCHCOMMAND", "x"], "ERR unknown command 'NOSUCHCOMMAND'"),
        (["GET"], "ERR wrong number of arguments for 'get' command"),
        (["INCRBY", "{key}", "not-a-number"], "ERR value is not an integer or out of range"),
        (["LPUSH", "{key}", "x"], "WRONGTYPE Operation against a key holding the wrong kind of value"),
    ],
)
async def test_a_command_error_is_400_with_redis_message(
    http: httpx.AsyncClient, key: str, command: list[str], message: str
):
    await http.post("/", json=["SET", key, "a string"])

    response = await http.post("/", json=[part.replace("{key}", key) for part in command])

    assert response.status_code == 400
    assert response.json()["error"].startswith(message)


@pytest.mark.parametrize(
    "command",
    [["SELECT", "1"], ["MULTI"], ["SUBSCRIBE", "c"], ["CLIENT", "REPLY", "OFF"], ["client reply", "OFF"]],
    ids=["select", "multi", "subscribe", "client-reply", "client-reply-as-one-word"],
)
async def test_commands_that_would_change_a_shared_connection_are_refused(
    http: httpx.AsyncClient, command: list[str]
):
    response = await http.post("/", json=command)

    assert response.status_code == 400
    # A name with a space goes to Redis as one word (an unknown command), not split into CLIENT REPLY.
    assert "not available" in response.json()["error"] or "unknown command" in response.json()["error"]
    assert (await http.post("/", json=["PING"])).json() == {"result": b64("PONG")}


async def test_base64_encodes_strings_except_ok_and_keeps_integers_and_nil(http: httpx.AsyncClient, key: str):
    async def run(*command: object) -> object:
        response = await http.post("/", json=list(command))
        assert response.status_code == 200, response.text
        return response.json()["result"]

    assert await run("SET", key, "héllo") == "OK"
    assert await run("GET", key) == b64("héllo")
    assert await run("GET", f"{key}:absent") is None
    assert await run("INCR", f"{key}:n") == 1
    assert await run("MGET", key, f"{key}:absent", f"{key}:n") == [b64("héllo"), None, b64("1")]
    # Floats are strings, as Upstash sends them, and so base64-encoded like every string.
    assert await run("INCRBYFLOAT", f"{key}:f", "3.5") == b64("3.5")
    assert await run("ZADD", f"{key}:z", 2.5, "member") == 1
    assert await run("ZSCORE", f"{key}:z", "member") == b64("2.5")
    assert await run("HSET", f"{key}:h", "field", "value") == 1
    assert await run("HGETALL", f"{key}:h") == [b64("field"), b64("value")]


async def test_without_the_encoding_header_strings_are_plain(server: LocalServer, key: str):
    headers = {"Authorization": f"Bearer {server.token}"}
    async with httpx.AsyncClient(base_url=server.url, headers=headers) as client:
        await client.post("/", json=["SET", key, "héllo"])

        assert (await client.post("/", json=["GET", key])).json() == {"result": "héllo"}
        assert (await client.post("/", json=["INCRBYFLOAT", f"{key}:f", 1.5])).json() == {"result": "1.5"}
        assert (await client.post("/", json=["INCR", f"{key}:n"])).json() == {"result": 1}


async def test_any_bytes_stored_in_redis_come_back_exactly_in_base64(http: httpx.AsyncClient, key: str):
    raw = redis.asyncio.Redis.from_url(REDIS_URL)
    try:
        await raw.set(key, bytes(range(256)))
    finally:
        await raw.aclose()

    response = await http.post("/", json=["GET", key])

    assert b64decode(response.json()["result"]) == bytes(range(256))


async def test_numbers_are_accepted_as_arguments(http: httpx.AsyncClient, key: str):
    await http.post("/", json=["SET", key, 42])

    assert (await http.post("/", json=["INCRBY", key, 8])).json() == {"result": 50}
    assert (await http.post("/", json=["INCRBYFLOAT", key, 0.5])).json() == {"result": b64("50.5")}
    assert (await http.post("/", json=["SET", f"{key}:ttl", "x", "EX", 60])).json() == {"result": "OK"}
    assert (await http.post("/", json=["TTL", f"{key}:ttl"])).json() == {"result": 60}


async def test_a_pipeline_answers_each_command_in_order(http: httpx.AsyncClient, key: str):
    response = await http.post(
        "/pipeline",
        json=[
            ["SET", key, "v"],
            ["GET", key],
            ["INCR", key],
            ["NOSUCH"],
            ["SELECT", "2"],
            ["APPEND", key, "w"],
        ],
    )

    assert response.status_code == 200
    items = response.json()
    assert items[:3] == [
        {"result": "OK"},
        {"result": b64("v")},
        {"error": "ERR value is not an integer or out of range"},
    ]
    assert items[3]["error"].startswith("ERR unknown command 'NOSUCH'")
    assert "not available" in items[4]["error"]
    assert items[5] == {"result": 2}  # the commands after the errors still ran
    assert (await http.post("/pipeline", json=[])).json() == []


async def test_multi_exec_answers_like_a_pipeline(http: httpx.AsyncClient, key: str):
    response = await http.post(
        "/multi-exec", json=[["SET", key, "1"], ["INCR", key], ["LPUSH", key, "x"], ["GET", key]]
    )

    assert response.status_code == 200
    items = response.json()
    assert items[:2] == [{"result": "OK"}, {"result": 2}]
    assert items[2]["error"].startswith("WRONGTYPE")  # a runtime error leaves the others applied
    assert items[3] == {"result": b64("2")}


@pytest.mark.parametrize("bad", [["NOSUCH"], ["GET"], ["WATCH", "k"]], ids=["unknown", "arity", "refused"])
async def test_multi_exec_with_a_command_that_cannot_queue_runs_nothing(
    http: httpx.AsyncClient, key: str, bad: list[str]
):
    await http.post("/", json=["SET", key, "before"])

    response = await http.post("/multi-exec", json=[["SET", key, "after"], bad, ["INCR", f"{key}:n"]])

    assert response.status_code == 200
    items = response.json()
    assert [list(item) for item in items] == [["error"]] * 3
    assert items[0]["error"].startswith("EXECABORT")
    assert not items[1]["error"].startswith("EXECABORT")  # the command at fault says why
    assert (await http.post("/", json=["GET", key])).json() == {"result": b64("before")}
    assert (await http.post("/", json=["EXISTS", f"{key}:n"])).json() == {"result": 0}


async def test_multi_exec_transactions_do_not_interleave(http: httpx.AsyncClient, key: str):
    transaction = [["INCR", key], ["INCR", key], ["INCR", key]]

    responses = await asyncio.gather(*(http.post("/multi-exec", json=transaction) for _ in range(50)))

    runs = [[item["result"] for item in response.json()] for response in responses]
    assert all(run == [run[0], run[0] + 1, run[0] + 2] for run in runs)
    assert sorted(value for run in runs for value in run) == list(range(1, 151))


async def test_every_response_carries_a_sync_token(server: LocalServer, http: httpx.AsyncClient, key: str):
    responses = [
        await http.post("/", json=["SET", key, "v"]),
        await http.post("/", json=["NOSUCH"]),
        await http.post("/pipeline", json=[["GET", key]]),
        await http.post("/multi-exec", json=[["GET", key]]),
        await http.post("/", content=b"{"),
    ]
    async with httpx.AsyncClient(base_url=server.url) as anonymous:
        responses.append(await anonymous.post("/", json=["PING"]))  # a 401

    assert all(response.headers.get("Upstash-Sync-Token") for response in responses)


async def test_only_the_sdk_routes_are_served(http: httpx.AsyncClient):
    assert (await http.get("/")).status_code == 405
    path_style = await http.post("/get/some-key")
    assert path_style.status_code == 404
    assert "error" in path_style.json()


async def test_flushall_empties_this_database_only(http: httpx.AsyncClient, key: str):
    neighbour = redis.asyncio.Redis.from_url(f"{TEST_REDIS}/15")
    try:
        await neighbour.set(key, b"kept")
        await http.post("/", json=["SET", key, "v"])

        assert (await http.post("/", json=["FLUSHALL"])).json() == {"result": "OK"}

        assert (await http.post("/", json=["EXISTS", key])).json() == {"result": 0}
        assert await neighbour.get(key) == b"kept"
    finally:
        await neighbour.delete(key)
        await neighbour.aclose()


async def test_many_clients_at_once(server: LocalServer, key: str):
    headers = {"Authorization": f"Bearer {server.token}"}

    async def client_incrementing(times: int) -> list[int]:
        async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=10) as client:
            return [(await client.post("/", json=["INCR", key])).json()["result"] for _ in range(times)]

    results = await asyncio.gather(*(client_incrementing(5) for _ in range(20)))

    assert sorted(value for values in results for value in values) == list(range(1, 101))


async def test_the_official_sdk_reads_what_it_writes(server: LocalServer, key: str):
    async with UpstashRedis(server.url, server.token, allow_telemetry=False) as sdk:
        assert await sdk.set(key, "héllo") is True
        assert await sdk.get(key) == "héllo"
        assert await sdk.incrbyfloat(f"{key}:f", 1.25) == 1.25
        assert await sdk.zadd(f"{key}:z", {"m": 2.5}) == 1
        assert await sdk.zscore(f"{key}:z", "m") == 2.5
        assert await sdk.hset(f"{key}:h", values={"a": "1", "b": "x"}) == 2
        assert await sdk.hgetall(f"{key}:h") == {"a": "1", "b": "x"}
        pipeline = sdk.pipeline()
        pipeline.incr(f"{key}:n")
        pipeline.get(key)
        assert await pipeline.exec() == [1, "héllo"]
        transaction = sdk.multi()
        transaction.incr(f"{key}:n")
        transaction.expire(f"{key}:n", 60)
        assert await transaction.exec() == [2, True]


# ---------------------------------------------------------------- where Upstash answers differently from Redis


@pytest.fixture
async def sdk(server: LocalServer) -> AsyncIterator[UpstashRedis]:
    async with UpstashRedis(server.url, server.token, allow_telemetry=False) as client:
        yield client


@pytest.fixture
async def direct() -> AsyncIterator[redis.asyncio.Redis]:
    """The Redis behind the server, for what Redis itself would answer."""
    client = redis.asyncio.Redis.from_url(REDIS_URL)
    yield client
    await client.aclose()


async def test_scan_with_match_or_type_finds_what_one_redis_step_would_miss(
    sdk: UpstashRedis, direct: redis.asyncio.Redis, key: str
):
    await direct.mset({f"{key}:filler:{i}": "x" for i in range(300)})
    await direct.hset(f"{key}:the-hash", "field", "value")
    cursor, _ = await direct.scan(0, match=f"{key}:the-hash")
    assert cursor != 0  # one Redis step covers ~10 keys of 300: Redis's answer would go on

    assert tuple(await sdk.scan(0, match=f"{key}:the-hash")) == (0, [f"{key}:the-hash"])
    assert tuple(await sdk.scan(0, match=f"{key}:*", type="hash")) == (0, [f"{key}:the-hash"])
    # COUNT matches per call (or more), and a walk over the cursors still sees every key once.
    cursor, page = await sdk.scan(0, match=f"{key}:filler:*", count=25)
    assert len(page) >= 25
    seen = set(page)
    while cursor != 0:
        cursor, page = await sdk.scan(cursor, match=f"{key}:filler:*", count=25)
        seen.update(page)
    assert seen == {f"{key}:filler:{i}" for i in range(300)}
    pipeline = sdk.pipeline()
    pipeline.scan(0, match=f"{key}:the-hash")
    pipeline.scan(0, type="hash", match=f"{key}:*", count=1)  # one match is enough: it may stop early
    first, second = await pipeline.exec()
    assert (tuple(first), second[1]) == ((0, [f"{key}:the-hash"]), [f"{key}:the-hash"])


async def test_xtrim_trims_exactly_even_when_asked_to_approximate(
    sdk: UpstashRedis, direct: redis.asyncio.Redis, key: str
):
    for stream in ("a", "b", "redis"):
        for i in range(100):
            await direct.xadd(f"{key}:{stream}", {"i": i}, id=f"{i + 1}-0")
    await direct.xtrim(f"{key}:redis", maxlen=30, approximate=True)
    assert await direct.xlen(f"{key}:redis") == 100  # Redis drops whole nodes of 100 only

    assert await sdk.xtrim(f"{key}:a", maxlen=30) == 70  # approximate=True, the SDK's default
    assert await sdk.xlen(f"{key}:a") == 30
    assert (await sdk.xrange(f"{key}:a", "-", "+", count=1))[0][0] == "71-0"  # the newest stay
    assert await sdk.xtrim(f"{key}:b", maxlen=50, limit=10) == 10  # LIMIT caps it, exactly
    assert await sdk.xlen(f"{key}:b") == 90
    assert await sdk.xtrim(f"{key}:b", minid="40-0", limit=5) == 5  # ids 11-15 go
    assert await sdk.xtrim(f"{key}:b", minid="40-0") == 24  # then 16-39
    assert (await sdk.xrange(f"{key}:b", "-", "+", count=1))[0][0] == "40-0"
    assert await sdk.xtrim(f"{key}:b", maxlen=10, approximate=False) == 51  # exact as asked


async def test_zrangestore_by_rank_takes_a_limit(sdk: UpstashRedis, direct: redis.asyncio.Redis, key: str):
    source, destination = f"{key}:src", f"{key}:dst"
    await sdk.zadd(source, {"member1": 1, "member2": 2, "member3": 3, "member4": 4})
    with pytest.raises(redis.ResponseError, match="LIMIT"):
        await direct.execute_command("ZRANGESTORE", destination, source, 0, 2, "LIMIT", 1, 1)

    assert await sdk.zrangestore(destination, source, 0, 2, offset=1, count=1) == 1
    assert await sdk.zrange(destination, 0, -1, withscores=True) == [("member2", 2.0)]
    assert await sdk.zrangestore(destination, source, 0, -1, rev=True, offset=1, count=2) == 2
    assert await sdk.zrange(destination, 0, -1) == ["member2", "member3"]
    assert await sdk.zrangestore(destination, source, 1, -1, offset=1, count=-1) == 2
    assert await sdk.zrange(destination, 0, -1) == ["member3", "member4"]
    assert await sdk.zrangestore(destination, source, 0, 1, offset=5, count=1) == 0
    assert await sdk.exists(destination) == 0
    assert await sdk.zrangestore(destination, source, 2, 3, sortby="BYSCORE", offset=1, count=1) == 1


async def test_xinfo_consumers_of_a_missing_group_is_empty(sdk: UpstashRedis, key: str):
    await sdk.xadd(key, "*", {"field": "value"})
    await sdk.xgroup_create(key, "readers", "0")
    await sdk.xreadgroup("readers", "alice", {key: ">"})

    assert await sdk.xinfo_consumers(key, "nonexistent_group") == []
    assert [
        dict(zip(info[::2], info[1::2], strict=True))["name"]
        for info in await sdk.xinfo_consumers(key, "readers")
    ] == ["alice"]
    transaction = sdk.multi()
    transaction.xinfo_consumers(key, "nonexistent_group")
    transaction.xlen(key)
    assert await transaction.exec() == [[], 1]


def test_a_server_whose_redis_is_unreachable_does_not_start():
    with (
        pytest.raises(RuntimeError, match="cannot reach Redis"),
        serve_in_subprocess("redis://127.0.0.1:1/0", "token"),
    ):
        pass
