"""The cache port on Upstash Redis, through the official SDK's async client, so that every worker shares it.

How the port maps onto Redis commands:

| port method | Redis |
| --- | --- |
| `set` | `SET k v` / `SET k v PX ms` |
| `get` | `GET k`; with `renew_for`: `MULTI GET k, PEXPIRE k ms XX EXEC` (renews only a key that expires) |
| `delete` / `exists` / `expires_in` | `DEL` / `EXISTS` / `PTTL`, rounded up to whole seconds |
| `delete_all` | `SCAN 0 MATCH <prefix>* COUNT 500` + `UNLINK`, batch by batch: never `FLUSHDB` |
| `incr` | `INCRBY`; with `expires_in`: `MULTI SET k 0 NX PX ms, INCRBY k n EXEC` |
| `increment_field` | `HINCRBY` |
| `claim_fields` | `EVAL`: `RENAME k claim` when claim is absent, then `HGETALL claim` |
| `ping` | `PING` |

Every key lives under a prefix (`clipdex:` by default), so the database can be shared and `delete_all`
removes clipdex's keys only.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import timedelta

import httpx
from upstash_redis.asyncio import Redis

from core.cache import Cache

_DELETE_BATCH = 500
# Error answers in a row (no call succeeding between them) after which calls pause like for a silence.
_FAILURES_BEFORE_PAUSING = 3
# claim_fields: KEYS[1] the counter map, KEYS[2] the claim; moves the map only onto an empty claim.
_CLAIM_FIELDS = """
if redis.call('EXISTS', KEYS[2]) == 0 and redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('RENAME', KEYS[1], KEYS[2])
end
return redis.call('HGETALL', KEYS[2])
"""


class CacheUnavailable(TimeoutError):
    """Upstash Redis did not answer in time or could not be reached (or did so and has not answered
    a PING since).

    A TimeoutError, as a missed deadline was before: callers that read around a slow cache need no
    change. The call may still have reached Upstash (only its answer was lost), so an increment that
    raised this may have counted.
    """


class UpstashRedisCache(Cache):
    """The shared cache: one SDK client, opened by `open()` and released by `close()`.

    Every call has a deadline of `timeout_seconds` (the SDK has none): a slow or silent Upstash makes
    the call raise CacheUnavailable (a TimeoutError) instead of holding the request that made it; from
    then on (and after a refused connection) calls fail without asking until Upstash answers a PING.
    The SDK's own retry is off: it waits 3 s before retrying, which no deadline leaves room for, and a
    retried INCRBY whose first attempt did arrive would count twice. Callers already treat a failing cache as a miss or a skipped write.

    Values are bytes, and the REST protocol carries JSON text, so each byte travels as the character with
    the same number (Latin-1). JSON carries those exactly, Redis stores their UTF-8 form, and the SDK's
    base64 transport brings it back unchanged. ASCII stays as it is, so a counter that INCRBY wrote reads
    back as its digits and a value set as digits can be incremented, as with the in-process cache.
    """

    def __init__(self, url: str, token: str, timeout_seconds: float, *, prefix: str = "clipdex:") -> None:
        if timeout_seconds <= 0:
            raise ValueError("timeout_seconds must be positive")
        self._url = url
        self._token = token
        self._timeout = timeout_seconds
        self._prefix = prefix
        self._client: Redis | None = None
        self._resources = AsyncExitStack()
        self._unavailable = ""  # why calls fail without asking, until the prober hears a PONG
        self._prober: asyncio.Task[None] | None = None
        self._answered_at = 0.0  # time.monotonic() of the last call that got an answer
        self._failed_in_a_row = 0

    async def open(self) -> None:
        """Create the client and its HTTP connection pool, once; every call then reuses them."""
        if self._client is not None:
            return
        client = Redis(
            self._url,
            self._token,
            rest_retries=0,
            allow_telemetry=False,
            # Reads see this client's earlier writes even on a read replica of a global database.
            read_your_writes=True,
        )
        # As its context manager, so that whatever the SDK holds open is released by close().
        self._client = await self._resources.enter_async_context(client)

    async def close(self) -> None:
        self._client = None
        if self._prober is not None:
            self._prober.cancel()
            await asyncio.gather(self._prober, return_exceptions=True)
            self._prober = None
        self._unavailable = ""
        resources, self._resources = self._resources, AsyncExitStack()
        await resources.aclose()

    @asynccontextmanager
    async def _call(self, operation: str) -> AsyncIterator[Redis]:
        if self._client is None:
            raise RuntimeError("UpstashRedisCache is not open: await open() first")
        # A request makes several cache calls; with Upstash silent each would wait out the deadline in
        # turn. Once a call found it unreachable or silent, calls fail at once until a PING in the
        # background is answered again, so a request waits at most about one deadline.
        if self._unavailable:
            raise CacheUnavailable(f"Upstash Redis is unavailable ({self._unavailable}); waiting for it")
        try:
            async with asyncio.timeout(self._timeout):
                yield self._client
        except TimeoutError as exc:
            reason = f"did not answer {operation} within {self._timeout:g} s"
            # Silent, or only slow with this call? If it answered other calls lately, it is there.
            if time.monotonic() - self._answered_at > self._timeout / 2:
                self._became_unavailable(reason)
            raise CacheUnavailable(f"Upstash Redis {reason}") from exc
        except (httpx.TransportError, ValueError) as exc:  # unreachable, cut off, or not its JSON
            self._became_unavailable(f"unreachable: {exc!r}")
            raise CacheUnavailable(f"Upstash Redis is unreachable ({operation}): {exc!r}") from exc
        except Exception as exc:
            # An error answer (its Redis down, say) is quick, but a request making several calls would
            # still pay for each: after a few in a row with none answered, calls pause as above.
            self._failed_in_a_row += 1
            if self._failed_in_a_row >= _FAILURES_BEFORE_PAUSING:
                self._became_unavailable(
                    f"{self._failed_in_a_row} calls in a row failed, the last with {exc!r}"
                )
            raise
        self._answered_at = time.monotonic()
        self._failed_in_a_row = 0

    def _became_unavailable(self, reason: str) -> None:
        self._unavailable = reason
        if self._prober is None or self._prober.done():
            self._prober = asyncio.get_running_loop().create_task(self._probe(), name="upstash-redis-probe")

    async def _probe(self) -> None:
        """PING until Upstash answers, then let calls through again."""
        while (client := self._client) is not None:
            await asyncio.sleep(min(self._timeout, 1.0))
            try:
                async with asyncio.timeout(self._timeout):
                    if await client.ping() == "PONG":
                        self._unavailable, self._failed_in_a_row = "", 0
                        return
            except Exception:
                continue

    def _key(self, key: str) -> str:
        return self._prefix + key

    async def set(self, key: str, value: str | bytes, expires_in: int | timedelta | None = None) -> None:
        text = _text(value.encode() if isinstance(value, str) else value)
        milliseconds = _milliseconds(expires_in)
        async with self._call("set") as redis:
            if milliseconds is None:
                await redis.set(self._key(key), text)
            elif milliseconds <= 0:  # expired on arrival, as in the in-process cache
                await redis.delete(self._key(key))
            else:
                await redis.set(self._key(key), text, px=milliseconds)

    async def get(self, key: str, renew_for: int | timedelta | None = None) -> bytes | None:
        milliseconds = _milliseconds(renew_for)
        async with self._call("get") as redis:
            if milliseconds is None:
                text = await redis.get(self._key(key))
            else:
                transaction = redis.multi()
                transaction.get(self._key(key))
                # XX: only a key that already expires is renewed; one without a TTL keeps none.
                transaction.pexpire(self._key(key), milliseconds, xx=True)
                text, _ = await transaction.exec()
        return None if text is None else _bytes(text)

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        async with self._call("get_many") as redis:
            texts = await redis.mget(*(self._key(key) for key in keys))
        return [None if text is None else _bytes(text) for text in texts]

    async def delete(self, key: str) -> None:
        async with self._call("delete") as redis:
            await redis.delete(self._key(key))

    async def delete_all(self) -> None:
        """Remove every key under this cache's prefix, batch by batch; other keys stay."""
        pattern = _glob_escape(self._prefix) + "*"
        cursor = 0
        while True:
            # A deadline per batch rather than for the whole: a big cache legitimately takes several.
            async with self._call("delete_all") as redis:
                cursor, keys = await redis.scan(cursor, match=pattern, count=_DELETE_BATCH)
                if keys:
                    await redis.unlink(*keys)
            if cursor == 0:
                return

    async def exists(self, key: str) -> bool:
        async with self._call("exists") as redis:
            return await redis.exists(self._key(key)) == 1

    async def expires_in(self, key: str) -> int | None:
        async with self._call("expires_in") as redis:
            milliseconds = await redis.pttl(self._key(key))
        if milliseconds < 0:  # -1: no TTL, -2: no key
            return None
        # Rounded up: a client told to wait this long must find the key gone.
        return math.ceil(milliseconds / 1000)

    async def incr(self, key: str, amount: int = 1, *, expires_in: int | None = None) -> int:
        async with self._call("incr") as redis:
            if expires_in is None:
                return await redis.incrby(self._key(key), amount)
            transaction = redis.multi()
            # Creates the key with its window only when it is absent; INCRBY keeps an existing TTL.
            transaction.set(self._key(key), "0", nx=True, px=max(1, expires_in * 1000))
            transaction.incrby(self._key(key), amount)
            _, value = await transaction.exec()
            return value

    async def increment_field(self, key: str, field: str, amount: int = 1) -> int:
        async with self._call("increment_field") as redis:
            return await redis.hincrby(self._key(key), field, amount)

    async def claim_fields(self, key: str, claim: str) -> dict[str, int]:
        async with self._call("claim_fields") as redis:
            # One script, so atomic: an HINCRBY lands before the move (and is claimed) or after it.
            flat = await redis.eval(_CLAIM_FIELDS, keys=[self._key(key), self._key(claim)])
        return {field: int(value) for field, value in zip(flat[::2], flat[1::2], strict=True)}

    async def ping(self) -> None:
        async with self._call("ping") as redis:
            answer = await redis.ping()
        if answer != "PONG":
            raise RuntimeError(f"Upstash Redis answered PING with {answer!r}")


def _text(value: bytes) -> str:
    return value.decode("latin-1")


def _bytes(text: str) -> bytes:
    return text.encode("latin-1")


def _milliseconds(duration: int | timedelta | None) -> int | None:
    if duration is None:
        return None
    if isinstance(duration, timedelta):
        return int(duration.total_seconds() * 1000)
    return duration * 1000


def _glob_escape(text: str) -> str:
    # SCAN MATCH treats *, ?, [ and \ as pattern syntax; the prefix is meant literally.
    return "".join("\\" + char if char in "*?[]\\" else char for char in text)
