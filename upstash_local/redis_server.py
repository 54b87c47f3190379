"""A local server speaking Upstash Redis's REST protocol (as the official SDK uses it) in front of a real Redis.

Run it with `python -m upstash_local.redis_server --port 8079 --token TOKEN --redis-url redis://127.0.0.1:6379/0`
(the token may come from UPSTASH_REDIS_REST_TOKEN instead), then point clipdex or any Upstash SDK at
`http://127.0.0.1:8079`. What it serves:

- `POST /` with one command as a JSON array (`["SET", "key", "value", "EX", 60]`) -> `{"result": ...}`;
- `POST /pipeline` with an array of commands -> `[{"result": ...} | {"error": ...}, ...]`, sent to Redis
  pipelined on one connection, not atomic;
- `POST /multi-exec`, the same shapes, run atomically in one Redis MULTI/EXEC transaction;
- `Authorization: Bearer <token>` on every request (401 `{"error": "Unauthorized"}` otherwise);
- `Upstash-Encoding: base64`: every string in a result is base64-encoded except a bare "OK"; integers stay
  JSON numbers; nil is null; floats are strings (Redis sends them as bulk strings), so they are encoded too;
- an `Upstash-Sync-Token` header on every response;
- errors as `{"error": "<Redis's message>"}` with 400 (command error or malformed body) or 500 (Redis down);
- and where Upstash deliberately answers differently from Redis (SCAN with MATCH or TYPE, XTRIM with
  `~`, ZRANGESTORE by rank with LIMIT, XINFO CONSUMERS of a missing group), Upstash's answer: see
  redis_dialect.py.
"""

from __future__ import annotations

import argparse
import hmac
import itertools
import logging
import os
import select
import socket
import subprocess
import sys
import tempfile
import time
from base64 import b64encode
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msgspec
import uvicorn
from redis.asyncio import BlockingConnectionPool
from redis.exceptions import RedisError, ResponseError

from upstash_local.redis_dialect import translate

logger = logging.getLogger("upstash_local.redis")

TOKEN_ENV = "UPSTASH_REDIS_REST_TOKEN"
READY_PREFIX = "upstash_local.redis_server listening on "
MAX_BODY_BYTES = 32 * 1024 * 1024
ROUTES = ("", "pipeline", "multi-exec")

# Connections are pooled and shared by every request, so commands that change a connection's state (its
# database, a transaction, a subscription, its replies) or that stop or reconfigure the whole server are
# refused instead of passed on. Transactions are what /multi-exec is for.
REFUSED_COMMANDS = frozenset(
    {
        b"AUTH", b"CLIENT", b"CONFIG", b"DEBUG", b"DISCARD", b"EXEC", b"HELLO", b"MONITOR", b"MULTI",
        b"PSUBSCRIBE", b"PSYNC", b"PUNSUBSCRIBE", b"QUIT", b"REPLICAOF", b"RESET", b"SELECT", b"SHUTDOWN",
        b"SLAVEOF", b"SSUBSCRIBE", b"SUBSCRIBE", b"SUNSUBSCRIBE", b"SWAPDB", b"SYNC", b"UNSUBSCRIBE",
        b"UNWATCH", b"WATCH",
    }
)  # fmt: skip

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
# What redis-py's RESP2 parser hands back without response callbacks; errors inside arrays stay objects.
Reply = bytes | int | None | list["Reply"] | ResponseError


class BadRequest(Exception):
    """The request cannot be run as sent; the message is the body's `error`."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class RedisRestApp:
    """The ASGI app: Upstash's Redis REST protocol on top of a pool of connections to one Redis database."""

    def __init__(
        self,
        redis_url: str,
        token: str,
        *,
        max_connections: int = 64,
        on_ready: Callable[[], None] | None = None,
    ) -> None:
        if not token:
            raise ValueError("a token is required")
        self._redis_name = _redacted(redis_url)
        self._expected_authorization = f"Bearer {token}".encode()
        # Blocking: a burst of clients waits for a free connection instead of failing with "too many".
        self._pool = BlockingConnectionPool.from_url(
            redis_url, max_connections=max_connections, timeout=10, socket_connect_timeout=5
        )
        self._on_ready = on_ready
        # Read-your-writes is automatic with one Redis; the token only has to be there for the SDK.
        self._sync_tokens = itertools.count(1)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            status, payload = await self._respond(scope, receive)
            body = msgspec.json.encode(payload)
            headers = [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"upstash-sync-token", str(next(self._sync_tokens)).encode()),
            ]
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self._execute([[b"PING"]], atomic=False)
                except (RedisError, OSError) as exc:
                    reason = f"cannot reach Redis at {self._redis_name}: {exc}"
                    await send({"type": "lifespan.startup.failed", "message": reason})
                    return
                await send({"type": "lifespan.startup.complete"})
                if self._on_ready is not None:
                    self._on_ready()
            elif message["type"] == "lifespan.shutdown":
                await self._pool.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _respond(self, scope: Scope, receive: Receive) -> tuple[int, object]:
        headers = dict(scope["headers"])
        if not hmac.compare_digest(headers.get(b"authorization", b""), self._expected_authorization):
            return 401, {"error": "Unauthorized"}
        route = scope["path"].strip("/")
        if route not in ROUTES:
            return 404, {"error": "ERR only POST /, /pipeline and /multi-exec with JSON bodies are served"}
        if scope["method"] != "POST":
            return 405, {"error": "ERR method not allowed: POST a JSON command array"}
        base64 = headers.get(b"upstash-encoding", b"").lower() == b"base64"
        try:
            payload = msgspec.json.decode(await _read_body(receive))
            if route == "":
                return await self._run_one(payload, base64)
            return 200, await self._run_many(payload, atomic=route == "multi-exec", base64=base64)
        except BadRequest as exc:
            return exc.status, {"error": str(exc)}
        except msgspec.DecodeError:
            return 400, {"error": "ERR the request body is not valid JSON"}
        except (RedisError, OSError) as exc:
            # Command errors are replies, handled above; this is Redis unreachable or a broken connection.
            logger.warning("Redis at %s failed: %s", self._redis_name, exc)
            return 500, {"error": f"ERR Redis is unavailable: {exc}"}
        except Exception:
            logger.exception("unexpected failure serving %s", scope["path"])
            return 500, {"error": "ERR internal server error"}

    async def _run_one(self, payload: object, base64: bool) -> tuple[int, object]:
        command = _parse_command(payload)
        if refusal := _refusal(command):
            return 400, {"error": refusal}
        translated = translate(command)
        (reply,) = await self._execute([translated.command], atomic=False)
        reply = translated.reply(reply)
        if isinstance(reply, ResponseError):
            return 400, {"error": _error_text(reply)}
        return 200, {"result": _encode(reply, base64)}

    async def _run_many(self, payload: object, *, atomic: bool, base64: bool) -> list[dict[str, object]]:
        if not isinstance(payload, list):
            raise BadRequest("ERR the body must be a JSON array of command arrays")
        commands = [_parse_command(item) for item in payload]
        refusals = [_refusal(command) for command in commands]
        if atomic and any(refusals):
            # Redis discards a whole transaction when one command fails to queue; a refused one counts so.
            abort = "EXECABORT Transaction discarded because of previous errors."
            return [{"error": refusal or abort} for refusal in refusals]
        runnable = [
            translate(command) for command, refusal in zip(commands, refusals, strict=True) if not refusal
        ]
        replies = await self._execute([t.command for t in runnable], atomic=atomic) if runnable else []
        fixed = iter([t.reply(reply) for t, reply in zip(runnable, replies, strict=True)])
        return [{"error": refusal} if refusal else _item(next(fixed), base64) for refusal in refusals]

    async def _execute(self, commands: list[list[bytes]], *, atomic: bool) -> list[Reply]:
        """Send the commands on one connection in one write; one reply (or ResponseError) per command."""
        wire = [[b"MULTI"], *commands, [b"EXEC"]] if atomic else commands
        connection = await self._pool.get_connection()
        try:
            await connection.send_packed_command(_pack(wire))
            replies: list[Reply] = []
            for _ in wire:
                try:
                    replies.append(await connection.read_response())
                except ResponseError as error:  # a reply like any other; the connection is still in step
                    replies.append(error)
        except BaseException:
            # Unread replies (a failure or a cancellation half-way) would be read by the next request.
            await connection.disconnect()
            raise
        finally:
            await self._pool.release(connection)
        if not atomic:
            return replies
        outcome = replies[-1]
        if isinstance(outcome, list):
            return outcome
        # EXEC refused to run anything (EXECABORT): each command gets its queueing error or the abort.
        queued = replies[1:-1]
        aborted = outcome if isinstance(outcome, ResponseError) else ResponseError("EXECABORT")
        return [reply if isinstance(reply, ResponseError) else aborted for reply in queued]


def _pack(commands: list[list[bytes]]) -> bytes:
    """The commands in RESP, exactly as given (redis-py's packer would split a command name at spaces,
    turning a refused `"CONFIG GET"` into CONFIG GET)."""
    packed = bytearray()
    for command in commands:
        packed += b"*%d\r\n" % len(command)
        for argument in command:
            packed += b"$%d\r\n%s\r\n" % (len(argument), argument)
    return bytes(packed)


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise BadRequest("ERR the client went away")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise BadRequest(f"ERR the request body is larger than {MAX_BODY_BYTES} bytes", status=413)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _parse_command(item: object) -> list[bytes]:
    if not isinstance(item, list) or not item or not isinstance(item[0], str):
        raise BadRequest("ERR a command must be a JSON array that starts with the command name")
    try:
        command = [_argument(value) for value in item]
    except UnicodeEncodeError:
        raise BadRequest("ERR a command argument is not valid Unicode") from None
    if command[0].upper() == b"FLUSHALL":
        # An Upstash database is a whole server: FLUSHALL empties it, here this Redis database only.
        command[0] = b"FLUSHDB"
    return command


def _argument(value: object) -> bytes:
    if isinstance(value, str):
        return value.encode()
    # bool is an int to Python but JSON true/false to the client: refused rather than sent as 1/0.
    if isinstance(value, float | int) and not isinstance(value, bool):
        return repr(value).encode()
    raise BadRequest("ERR command arguments must be strings or numbers")


def _refusal(command: list[bytes]) -> str | None:
    name = command[0].upper()
    if name in REFUSED_COMMANDS:
        return f"ERR '{name.decode(errors='replace')}' is not available through the REST API"
    return None


def _item(reply: Reply, base64: bool) -> dict[str, object]:
    if isinstance(reply, ResponseError):
        return {"error": _error_text(reply)}
    return {"result": _encode(reply, base64)}


def _encode(reply: Reply, base64: bool) -> object:
    if isinstance(reply, bytes):
        if not base64:
            return reply.decode(errors="replace")
        return "OK" if reply == b"OK" else b64encode(reply).decode("ascii")
    if isinstance(reply, list):
        return [_encode(element, base64) for element in reply]
    if isinstance(reply, ResponseError):  # inside an array (a script's result): no place for an error
        return _encode(_error_text(reply).encode(), base64)
    return reply  # an integer or nil


def _error_text(error: ResponseError) -> str:
    # redis-py strips the error code (ERR, EXECABORT, ...) off the message; Upstash clients see Redis's.
    message = str(error)
    return f"{error.status_code} {message}" if error.status_code else message


def _redacted(redis_url: str) -> str:
    parts = urlsplit(redis_url)
    return f"{parts.scheme}://{parts.hostname}:{parts.port or 6379}{parts.path}"


@dataclass(frozen=True)
class LocalServer:
    """Where a running local server answers, and the token it wants."""

    url: str
    token: str


@contextmanager
def serve_in_subprocess(
    redis_url: str, token: str, *, host: str = "127.0.0.1", port: int = 0, startup_timeout: float = 20.0
) -> Iterator[LocalServer]:
    """Run the server as a child process for the duration of the block (for tests and dev scripts).

    Port 0 takes a free port; the child prints the address it bound once Redis answered, so the server
    is ready when this yields. Raises RuntimeError with the child's own message when it cannot start.
    """
    command = [sys.executable, "-m", "upstash_local.redis_server", "--host", host, "--port", str(port)]
    command += ["--redis-url", redis_url]
    # The token goes through the environment, not the command line that `ps` shows.
    environment = {**os.environ, TOKEN_ENV: token}
    with tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen(
            command,
            cwd=Path(__file__).resolve().parent.parent,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=stderr,
        )
        try:
            url = _wait_until_ready(process, startup_timeout)
            if url is None:
                stderr.seek(0)
                output = stderr.read().decode(errors="replace").strip() or "no output"
                raise RuntimeError(f"the local Upstash Redis server did not start: {output}")
            yield LocalServer(url, token)
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if process.stdout is not None:
                process.stdout.close()


def _wait_until_ready(process: subprocess.Popen[bytes], timeout: float) -> str | None:
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    while (remaining := deadline - time.monotonic()) > 0:
        readable, _, _ = select.select([process.stdout], [], [], remaining)
        if not readable:
            return None
        line = process.stdout.readline().decode(errors="replace")
        if not line:  # end of output: the child exited
            return None
        if line.startswith(READY_PREFIX):
            return line.removeprefix(READY_PREFIX).strip()
    return None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m upstash_local.redis_server",
        description="Serve Upstash Redis's REST API locally, in front of a real Redis.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8079, help="0 takes a free port (default: 8079)")
    parser.add_argument("--token", default=os.environ.get(TOKEN_ENV), help=f"default: ${TOKEN_ENV}")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    args = parser.parse_args(argv)
    if not args.token:
        parser.error(f"--token or ${TOKEN_ENV} is required")

    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # Bound here rather than by uvicorn so that port 0 works and the real port can be announced.
    sock = socket.create_server((args.host, args.port))
    host, port = sock.getsockname()[:2]
    address = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def announce() -> None:
        print(f"{READY_PREFIX}{address}", flush=True)

    app = RedisRestApp(args.redis_url, args.token, on_ready=announce)
    config = uvicorn.Config(
        app, log_config=None, log_level=args.log_level, access_log=False, lifespan="on", server_header=False
    )
    server = uvicorn.Server(config)
    server.run(sockets=[sock])
    if not server.started:
        sys.exit(1)


if __name__ == "__main__":
    main()
