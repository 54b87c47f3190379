"""A local Upstash QStash: its REST API as the official `qstash` SDK uses it, with real signed deliveries.

Run it with `python -m upstash_local.qstash_server --port 8081 --token TOKEN` (the token may come from
QSTASH_TOKEN instead), then point the SDK at it: `QStash(token, base_url="http://127.0.0.1:8081")` or
QSTASH_URL. What it serves, under `/v2`:

- `publish/{url}`, `enqueue/{queue}/{url}`, `batch`: messages with QStash's `Upstash-*` headers (delay,
  not-before, retries, retry-delay expression, timeout, deduplication by id or content, forwarded headers,
  callback and failure-callback URLs and their headers, method, label);
- `messages/{id}` (get, cancel), `messages` (bulk cancel); `schedules` (cron, create, list, get, pause,
  resume, delete); `dlq` (list, get, delete, bulk delete); `queues` (upsert, list, get, delete, pause,
  resume); `events` (the log, newest first, filtered and paged by cursor); `keys` and `keys/rotate`.

Delivery calls the destination with QStash's headers: `Upstash-Signature` (an HS256 JWT signed with the
current signing key, checked by `qstash.Receiver`), `Upstash-Message-Id`, `Upstash-Retried`, the forwarded
headers. A non-2xx answer or a timeout is retried on QStash's backoff (min(1 day, e^(2.5 n)) s, or the
publisher's `Upstash-Retry-Delay` expression in ms), scaled by `--retry-delay-scale` for tests; after the
last retry the message goes to the dead-letter queue and the failure callback is called.

Destinations are loopback only unless `--allow-destination HOST` names another host, so the server cannot
be used as an open proxy. State is in memory, or in a SQLite file with `--path FILE` (messages, schedules,
queues, the DLQ and the signing keys survive a restart; the event log does not). `LocalQStashServer`
starts one in a child process for tests.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import base64
import calendar
import contextlib
import hashlib
import hmac
import ipaddress
import json
import logging
import math
import os
import re
import secrets
import select
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx
import jwt
import uvicorn

logger = logging.getLogger("upstash_local.qstash")

TOKEN_ENV = "QSTASH_TOKEN"
READY_PREFIX = "upstash_local.qstash_server listening on "
ROOT = Path(__file__).resolve().parent.parent
# QStash's paid plans accept 10 MB messages (the free one 1 MB); the larger bound keeps every plan's
# traffic working locally.
MAX_BODY_BYTES = 10 << 20
# What a DLQ entry or callback keeps of a destination's answer.
MAX_RESPONSE_BODY_BYTES = 64 << 10
DEFAULT_MAX_RETRIES = 3  # the free plan's maximum, which QStash uses when Upstash-Retries is absent
MAX_RETRIES = 20
MAX_RETRY_DELAY_SECONDS = 86400.0  # QStash caps every retry delay at one day
DEDUPLICATION_WINDOW_MS = 10 * 60 * 1000
MAX_EVENTS = 10_000
DEFAULT_SIGNATURE_TTL = 300
DEFAULT_DELIVERY_TIMEOUT = 60.0
# Cron times are computed on a clock that runs --cron-minute-seconds faster than the real one, anchored
# here (2026-01-01 UTC) so that a restart keeps the same firing times.
CRON_CLOCK_ANCHOR = 1_767_225_600.0
# Forwarded as given, these would describe a different request than the one sent (the body's length,
# its framing, the host it is for), so the delivery's own values win.
FRAMING_HEADERS = frozenset({"content-length", "transfer-encoding", "connection", "host", "upgrade", "te"})
HTTP_METHODS = frozenset({"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"})

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class QStashHTTPError(Exception):
    """An answer other than 2xx, in QStash's error shape `{"error": message}`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _now_ms() -> int:
    return int(time.time() * 1000)


# ---------------------------------------------------------------- parsing QStash's header values

_DURATION_PART = re.compile(r"(\d+)(ms|s|m|h|d)")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: str, header: str) -> float:
    """Seconds in a QStash duration (`10s`, `2m`, `1h30m`, `3d`; a bare number is seconds)."""
    text = value.strip()
    if text.isdigit():
        return float(text)
    if not text or _DURATION_PART.sub("", text):
        raise QStashHTTPError(400, f"invalid {header}: {value!r} (expected e.g. 10s, 5m, 1h30m, 2d)")
    return sum(int(number) * _DURATION_UNITS[unit] for number, unit in _DURATION_PART.findall(text))


_EXPRESSION_FUNCTIONS: dict[str, Callable[..., float]] = {
    "pow": pow, "sqrt": math.sqrt, "abs": abs, "exp": math.exp, "floor": math.floor,
    "ceil": math.ceil, "round": round, "min": min, "max": max,
}  # fmt: skip
_EXPRESSION_NODES = (
    ast.Expression, ast.BinOp, ast.UnaryOp, ast.Call, ast.Name, ast.Load, ast.Constant,
    ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Mod, ast.Pow, ast.USub, ast.UAdd,
)  # fmt: skip


def compile_retry_delay(expression: str) -> ast.Expression:
    """The parsed `Upstash-Retry-Delay` expression: arithmetic on `retried` and QStash's functions only."""
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError:
        raise QStashHTTPError(400, f"invalid Upstash-Retry-Delay expression: {expression!r}") from None
    for node in ast.walk(tree):
        if not isinstance(node, _EXPRESSION_NODES):
            raise QStashHTTPError(400, f"invalid Upstash-Retry-Delay expression: {expression!r}")
        if isinstance(node, ast.Name) and node.id != "retried" and node.id not in _EXPRESSION_FUNCTIONS:
            raise QStashHTTPError(400, f"unknown name {node.id!r} in Upstash-Retry-Delay")
        if isinstance(node, ast.Call) and not (
            isinstance(node.func, ast.Name) and node.func.id in _EXPRESSION_FUNCTIONS
        ):
            raise QStashHTTPError(400, f"unknown function in Upstash-Retry-Delay: {expression!r}")
        if isinstance(node, ast.Constant) and not isinstance(node.value, int | float):
            raise QStashHTTPError(400, f"only numbers are allowed in Upstash-Retry-Delay: {expression!r}")
    return tree


def evaluate_retry_delay(expression: str, retried: int) -> float:
    """Milliseconds to wait before the next attempt, per the publisher's expression."""
    tree = compile_retry_delay(expression)
    try:
        # The tree holds only arithmetic, `retried` and the listed functions (checked above).
        value = eval(compile(tree, "<retry-delay>", "eval"), {"__builtins__": {}}, {
            **_EXPRESSION_FUNCTIONS, "retried": retried
        })  # fmt: skip
        return max(0.0, float(value))
    except (ArithmeticError, ValueError, TypeError):
        return 0.0


def default_retry_delay(retry_number: int) -> float:
    """QStash's backoff in seconds before retry number n (1 for the first): min(1 day, e^(2.5 n))."""
    return min(MAX_RETRY_DELAY_SECONDS, math.exp(2.5 * retry_number))


# ---------------------------------------------------------------- cron

_MONTH_NAMES = {name: index for index, name in enumerate(calendar.month_abbr) if name}
_DAY_NAMES = {name: index for index, name in enumerate(["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"])}


@dataclass(frozen=True)
class Cron:
    """A 5-field cron expression (minute hour day-of-month month day-of-week), QStash's dialect:
    `*`, numbers, `a-b`, `/step`, lists, month and day names, and an optional `CRON_TZ=Zone` prefix."""

    text: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    any_day: bool
    any_weekday: bool
    zone: ZoneInfo | None

    @classmethod
    def parse(cls, text: str) -> Cron:
        expression = text.strip()
        zone = None
        if expression.upper().startswith("CRON_TZ="):
            name, _, expression = expression[len("CRON_TZ=") :].partition(" ")
            try:
                zone = ZoneInfo(name)
            except (ZoneInfoNotFoundError, ValueError):
                raise QStashHTTPError(400, f"invalid cron timezone: {name!r}") from None
        fields = expression.split()
        if len(fields) != 5:
            raise QStashHTTPError(400, f"invalid cron expression {text!r}: expected 5 fields")
        months = {name.upper(): number for name, number in _MONTH_NAMES.items()}
        minutes, hours, days, month_set, weekdays = (
            _cron_field(fields[0], 0, 59, {}, text),
            _cron_field(fields[1], 0, 23, {}, text),
            _cron_field(fields[2], 1, 31, {}, text),
            _cron_field(fields[3], 1, 12, months, text),
            frozenset(day % 7 for day in _cron_field(fields[4], 0, 7, _DAY_NAMES, text)),
        )
        cron = cls(text, minutes, hours, days, month_set, weekdays, fields[2] == "*", fields[4] == "*", zone)
        if cron.next_after(CRON_CLOCK_ANCHOR) is None:
            raise QStashHTTPError(400, f"cron expression {text!r} never fires")
        return cron

    def _day_matches(self, moment: datetime) -> bool:
        in_month = moment.day in self.days
        in_week = (moment.isoweekday() % 7) in self.weekdays
        if self.any_day or self.any_weekday:  # one side unrestricted: the other decides (cron's rule)
            return in_month and in_week
        return in_month or in_week

    def next_after(self, timestamp: float) -> float | None:
        """The first matching minute strictly after `timestamp` (unix seconds), or None within 5 years."""
        zone = self.zone or UTC
        moment = datetime.fromtimestamp(timestamp, zone).replace(second=0, microsecond=0, tzinfo=None)
        moment += timedelta(minutes=1)
        limit = moment + timedelta(days=5 * 366)
        while moment < limit:
            if moment.month not in self.months:
                moment = (moment.replace(day=1, hour=0, minute=0) + timedelta(days=32)).replace(day=1)
            elif not self._day_matches(moment):
                moment = moment.replace(hour=0, minute=0) + timedelta(days=1)
            elif moment.hour not in self.hours:
                moment = moment.replace(minute=0) + timedelta(hours=1)
            elif moment.minute not in self.minutes:
                moment += timedelta(minutes=1)
            else:
                return moment.replace(tzinfo=zone).timestamp()
        return None


def _cron_field(text: str, low: int, high: int, names: dict[str, int], whole: str) -> frozenset[int]:
    def number(token: str) -> int:
        value = names.get(token.upper()) if names else None
        if value is None:
            if not token.isdigit():
                raise QStashHTTPError(400, f"invalid cron expression {whole!r}: {token!r}")
            value = int(token)
        if not low <= value <= high:
            raise QStashHTTPError(400, f"invalid cron expression {whole!r}: {value} is out of range")
        return value

    values: set[int] = set()
    for part in text.split(","):
        span, _, step_text = part.partition("/")
        step = number(step_text) if step_text and step_text.isdigit() and int(step_text) > 0 else None
        if step_text and step is None:
            raise QStashHTTPError(400, f"invalid cron expression {whole!r}: step {step_text!r}")
        if span == "*":
            start, end = low, high
        elif "-" in span:
            first, _, last = span.partition("-")
            start, end = number(first), number(last)
            if start > end:
                raise QStashHTTPError(400, f"invalid cron expression {whole!r}: range {span!r}")
        else:
            start = number(span)
            end = high if step else start
        values.update(range(start, end + 1, step or 1))
    return frozenset(values)


# ---------------------------------------------------------------- storage


class Store:
    """Records by kind and id, as JSON, in SQLite (a file with --path, else memory): the state that
    must outlive a restart. Writes are small and local, so they run inline."""

    def __init__(self, path: Path | None) -> None:
        self._db = sqlite3.connect(str(path) if path else ":memory:", isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL" if path else "PRAGMA journal_mode=MEMORY")
        # A crash may lose the last write, never corrupt the file: enough for a development server.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS records (kind TEXT NOT NULL, id TEXT NOT NULL, data TEXT NOT NULL,"
            " PRIMARY KEY (kind, id))"
        )

    def put(self, kind: str, key: str, record: dict[str, Any]) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO records (kind, id, data) VALUES (?, ?, ?)",
            (kind, key, json.dumps(record)),
        )

    def delete(self, kind: str, key: str) -> None:
        self._db.execute("DELETE FROM records WHERE kind = ? AND id = ?", (kind, key))

    def load(self, kind: str) -> dict[str, dict[str, Any]]:
        rows = self._db.execute("SELECT id, data FROM records WHERE kind = ? ORDER BY rowid", (kind,))
        return {key: json.loads(data) for key, data in rows}

    def close(self) -> None:
        self._db.close()


# ---------------------------------------------------------------- the server


@dataclass(frozen=True)
class Options:
    """How this server departs from QStash's own timings and reach (for tests and local development)."""

    allowed_hosts: frozenset[str] = frozenset()
    retry_delay_scale: float = 1.0
    cron_minute_seconds: float = 60.0
    signature_ttl: int = DEFAULT_SIGNATURE_TTL
    delivery_timeout: float = DEFAULT_DELIVERY_TIMEOUT
    tick_seconds: float = 0.02


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    client: str


@dataclass
class _Queue:
    active: set[str] = field(default_factory=set)


class QStashApp:
    """The ASGI app: QStash's REST API, and the loop that delivers what is due."""

    def __init__(
        self,
        token: str,
        *,
        path: Path | None = None,
        options: Options | None = None,
        on_ready: Callable[[], None] | None = None,
    ) -> None:
        if not token:
            raise ValueError("a token is required")
        self._expected_authorization = f"Bearer {token}".encode()
        self._options = options or Options()
        self._store = Store(path)
        self._on_ready = on_ready
        self._messages = self._store.load("message")
        self._schedules = self._store.load("schedule")
        self._dlq = self._store.load("dlq")
        self._queues = self._store.load("queue")
        self._dedup = self._store.load("dedup")
        keys = self._store.load("keys").get("signing")
        if keys is None:
            keys = {"current": _signing_key(), "next": _signing_key()}
            self._store.put("keys", "signing", keys)
        self._keys = keys
        self._events: list[dict[str, Any]] = []
        self._event_seq = 0
        self._last_message_ns = 0
        self._in_flight: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._client: httpx.AsyncClient | None = None
        # A message that was mid-delivery when the server stopped is simply due again.
        for schedule in self._schedules.values():
            if not schedule["isPaused"]:
                schedule["nextAt"] = self._next_fire(schedule["cron"])
        self._routes: list[tuple[str, re.Pattern[str], Callable[..., Awaitable[Any]]]] = [
            ("POST", re.compile(r"/v2/publish/(?P<destination>.+)"), self._publish),
            ("POST", re.compile(r"/v2/enqueue/(?P<queue>[^/]+)/(?P<destination>.+)"), self._enqueue),
            ("POST", re.compile(r"/v2/batch"), self._batch),
            ("GET", re.compile(r"/v2/messages/(?P<id>[^/]+)"), self._get_message),
            ("DELETE", re.compile(r"/v2/messages/(?P<id>[^/]+)"), self._cancel_message),
            ("DELETE", re.compile(r"/v2/messages"), self._cancel_messages),
            ("POST", re.compile(r"/v2/schedules/(?P<destination>.+)"), self._create_schedule),
            ("GET", re.compile(r"/v2/schedules"), self._list_schedules),
            ("GET", re.compile(r"/v2/schedules/(?P<id>[^/]+)"), self._get_schedule),
            ("DELETE", re.compile(r"/v2/schedules/(?P<id>[^/]+)"), self._delete_schedule),
            ("PATCH", re.compile(r"/v2/schedules/(?P<id>[^/]+)/(?P<action>pause|resume)"), self._pause_schedule),
            ("GET", re.compile(r"/v2/dlq"), self._list_dlq),
            ("GET", re.compile(r"/v2/dlq/(?P<id>[^/]+)"), self._get_dlq),
            ("DELETE", re.compile(r"/v2/dlq/(?P<id>[^/]+)"), self._delete_dlq),
            ("DELETE", re.compile(r"/v2/dlq"), self._delete_dlq_many),
            ("POST", re.compile(r"/v2/queues"), self._upsert_queue),
            ("GET", re.compile(r"/v2/queues"), self._list_queues),
            ("GET", re.compile(r"/v2/queues/(?P<name>[^/]+)"), self._get_queue),
            ("DELETE", re.compile(r"/v2/queues/(?P<name>[^/]+)"), self._delete_queue),
            ("POST", re.compile(r"/v2/queues/(?P<name>[^/]+)/(?P<action>pause|resume)"), self._pause_queue),
            ("GET", re.compile(r"/v2/events"), self._list_events),
            ("GET", re.compile(r"/v2/keys"), self._get_keys),
            ("POST", re.compile(r"/v2/keys/rotate"), self._rotate_keys),
        ]  # fmt: skip

    # ------------------------------------------------------------ ASGI

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        try:
            status, payload = 200, await self._respond(scope, receive)
        except QStashHTTPError as exc:
            status, payload = exc.status, {"error": exc.message}
        except Exception:
            logger.exception("unexpected failure serving %s", scope.get("path"))
            status, payload = 500, {"error": "internal server error"}
        body = b"" if payload is None else json.dumps(payload).encode()
        headers = [(b"content-length", str(len(body)).encode())]
        if payload is not None:
            headers.append((b"content-type", b"application/json"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._client = httpx.AsyncClient(follow_redirects=False, trust_env=False)
                self._loop_task = asyncio.create_task(self._deliver_forever())
                await send({"type": "lifespan.startup.complete"})
                if self._on_ready is not None:
                    self._on_ready()
            elif message["type"] == "lifespan.shutdown":
                if self._loop_task is not None:
                    self._loop_task.cancel()
                for task in list(self._tasks):
                    task.cancel()
                await asyncio.gather(*self._tasks, return_exceptions=True)
                if self._client is not None:
                    await self._client.aclose()
                self._store.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _respond(self, scope: Scope, receive: Receive) -> Any:
        headers = {
            name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]
        }
        authorization = headers.get("authorization", "").encode("latin-1")
        if not hmac.compare_digest(authorization, self._expected_authorization):
            raise QStashHTTPError(401, "Unauthorized")
        # The destination URL is part of the path as sent; the raw path keeps its escapes as they were.
        raw_path = scope.get("raw_path") or scope["path"].encode()
        path = raw_path.decode("latin-1")
        query_string = scope.get("query_string", b"").decode("latin-1")
        matched_path = False
        for method, pattern, handler in self._routes:
            match = pattern.fullmatch(path)
            if match is None:
                continue
            matched_path = True
            if method != scope["method"]:
                continue
            body = await _read_body(receive)
            client = scope.get("client") or ("", 0)
            request = Request(scope["method"], path, parse_qs(query_string), headers, body, client[0])
            arguments = match.groupdict()
            if "destination" in arguments:
                # The SDK appends the destination as is, so its own query string arrived as ours.
                arguments["destination"] = _fix_scheme(arguments["destination"]) + (
                    f"?{query_string}" if query_string else ""
                )
            return await handler(request, **arguments)
        if matched_path:
            raise QStashHTTPError(405, f"method {scope['method']} is not allowed on {scope['path']}")
        raise QStashHTTPError(404, f"{scope['path']} is not part of QStash's API served here")

    # ------------------------------------------------------------ publishing

    async def _publish(self, request: Request, destination: str) -> dict[str, Any]:
        return self._accept(destination, request.headers, request.body, queue=None, client=request.client)

    async def _enqueue(self, request: Request, queue: str, destination: str) -> dict[str, Any]:
        self._ensure_queue(queue)
        return self._accept(destination, request.headers, request.body, queue=queue, client=request.client)

    async def _batch(self, request: Request) -> list[dict[str, Any]]:
        items = _json(request.body)
        if not isinstance(items, list):
            raise QStashHTTPError(400, "the batch body must be a JSON array of messages")
        prepared = []
        for index, item in enumerate(items):
            if not isinstance(item, dict) or not isinstance(item.get("destination"), str):
                raise QStashHTTPError(400, f"batch message {index} needs a destination")
            headers = item.get("headers") or {}
            body = item.get("body")
            queue = item.get("queue")
            if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
                raise QStashHTTPError(400, f"batch message {index}: headers must map names to strings")
            if body is not None and not isinstance(body, str):
                raise QStashHTTPError(400, f"batch message {index}: body must be a string")
            if queue is not None and not isinstance(queue, str):
                raise QStashHTTPError(400, f"batch message {index}: queue must be a string")
            lowered = {name.lower(): value for name, value in headers.items()}
            # Every message is checked before any is accepted, so a bad one leaves no half a batch.
            self._parse_message(item["destination"], lowered, (body or "").encode(), queue, request.client)
            prepared.append((item["destination"], lowered, (body or "").encode(), queue))
        answers = []
        for destination, headers, body, queue in prepared:
            if queue:
                self._ensure_queue(queue)
            answers.append(self._accept(destination, headers, body, queue=queue, client=request.client))
        return answers

    def _accept(
        self, destination: str, headers: dict[str, str], body: bytes, *, queue: str | None, client: str
    ) -> dict[str, Any]:
        message = self._parse_message(destination, headers, body, queue, client)
        dedup_key = _deduplication_key(destination, headers, body)
        now = _now_ms()
        if dedup_key is not None:
            seen = self._dedup.get(dedup_key)
            if seen is not None and seen["expiresAt"] > now:
                return {"messageId": seen["messageId"], "deduplicated": True}
            for expired in [key for key, seen in self._dedup.items() if seen["expiresAt"] <= now]:
                del self._dedup[expired]
                self._store.delete("dedup", expired)
            record = {"messageId": message["messageId"], "expiresAt": now + DEDUPLICATION_WINDOW_MS}
            self._dedup[dedup_key] = record
            self._store.put("dedup", dedup_key, record)
        self._save(message)
        self._event(message, "CREATED")
        self._wake.set()
        return {"messageId": message["messageId"], "deduplicated": False}

    def _parse_message(
        self, destination: str, headers: dict[str, str], body: bytes, queue: str | None, client: str
    ) -> dict[str, Any]:
        url = self._check_destination(destination, "destination")
        if "upstash-flow-control-key" in headers:
            raise QStashHTTPError(400, "flow control is not supported by this local QStash server")
        method = headers.get("upstash-method", "POST").upper()
        if method not in HTTP_METHODS:
            raise QStashHTTPError(400, f"invalid Upstash-Method: {method!r}")
        now = _now_ms()
        not_before = now
        if "upstash-not-before" in headers:
            value = headers["upstash-not-before"].strip()
            if not value.isdigit():
                raise QStashHTTPError(400, "invalid Upstash-Not-Before: expected unix seconds")
            not_before = int(value) * 1000
        elif "upstash-delay" in headers:
            not_before = now + int(parse_duration(headers["upstash-delay"], "Upstash-Delay") * 1000)
        retries = DEFAULT_MAX_RETRIES
        if "upstash-retries" in headers:
            value = headers["upstash-retries"].strip()
            if not value.isdigit() or int(value) > MAX_RETRIES:
                raise QStashHTTPError(400, f"invalid Upstash-Retries: expected 0 to {MAX_RETRIES}")
            retries = int(value)
        retry_delay = headers.get("upstash-retry-delay")
        if retry_delay is not None:
            compile_retry_delay(retry_delay)
        timeout = self._options.delivery_timeout
        if "upstash-timeout" in headers:
            timeout = parse_duration(headers["upstash-timeout"], "Upstash-Timeout")
            if timeout <= 0:
                raise QStashHTTPError(400, "invalid Upstash-Timeout: it must be positive")
        callback = headers.get("upstash-callback")
        if callback is not None:
            callback = self._check_destination(callback, "Upstash-Callback")
        failure_callback = headers.get("upstash-failure-callback")
        if failure_callback is not None:
            failure_callback = self._check_destination(failure_callback, "Upstash-Failure-Callback")
        forwarded = {
            name: value
            for name, value in _prefixed(headers, "upstash-forward-").items()
            if name.lower() not in FRAMING_HEADERS
        }
        if "content-type" in headers:
            forwarded["Content-Type"] = headers["content-type"]
        return {
            "messageId": self._new_message_id(),
            "url": url,
            "method": method,
            "header": forwarded,
            "body": base64.b64encode(body).decode("ascii"),
            "maxRetries": retries,
            "retryDelayExpression": retry_delay,
            "timeout": timeout,
            "notBefore": not_before,
            "createdAt": now,
            "callback": callback,
            "failureCallback": failure_callback,
            "callbackHeader": _prefixed(headers, "upstash-callback-"),
            "failureCallbackHeader": _prefixed(headers, "upstash-failure-callback-"),
            "queueName": queue,
            "scheduleId": None,
            "label": headers.get("upstash-label"),
            "callerIP": client,
            "retried": 0,
            "nextAt": not_before,
        }

    def _check_destination(self, destination: str, what: str) -> str:
        url = destination.strip()
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise QStashHTTPError(
                400,
                f"invalid {what} {destination!r}: expected an http(s) URL"
                " (URL groups and LLM APIs are not supported by this local QStash server)",
            )
        try:
            parts.port  # noqa: B018 - raises on a malformed port
        except ValueError:
            raise QStashHTTPError(400, f"invalid {what} {destination!r}: bad port") from None
        host = parts.hostname.lower()
        if host not in self._options.allowed_hosts and not _is_loopback(host):
            raise QStashHTTPError(
                400,
                f"{what} host {host!r} is not allowed: this local server delivers to loopback only"
                " (start it with --allow-destination HOST to allow another)",
            )
        return url

    def _ensure_queue(self, name: str) -> dict[str, Any]:
        queue = self._queues.get(name)
        if queue is None:
            now = _now_ms()
            queue = {"name": name, "parallelism": 1, "paused": False, "createdAt": now, "updatedAt": now}
            self._queues[name] = queue
            self._store.put("queue", name, queue)
        return queue

    def _new_message_id(self) -> str:
        # Ids sort in the order the messages were made: a queue delivers in that order, and two
        # messages enqueued within one millisecond share a createdAt.
        self._last_message_ns = max(time.time_ns(), self._last_message_ns + 1)
        return f"msg_{self._last_message_ns:016x}{uuid.uuid4().hex[:16]}"

    def _save(self, message: dict[str, Any]) -> None:
        self._messages[message["messageId"]] = message
        self._store.put("message", message["messageId"], message)

    def _forget(self, message_id: str) -> dict[str, Any] | None:
        message = self._messages.pop(message_id, None)
        if message is not None:
            self._store.delete("message", message_id)
        return message

    # ------------------------------------------------------------ messages

    async def _get_message(self, request: Request, id: str) -> dict[str, Any]:
        message = self._messages.get(id)
        if message is None:
            raise QStashHTTPError(404, f"message {id} not found")
        return _message_view(message)

    async def _cancel_message(self, request: Request, id: str) -> None:
        message = self._forget(id)
        if message is None:
            raise QStashHTTPError(404, f"message {id} not found")
        self._event(message, "CANCELED")
        return None

    async def _cancel_messages(self, request: Request) -> dict[str, int]:
        ids = _ids_named(request, "messageIds", "messages")
        if ids is None:
            ids = list(self._messages)
        cancelled = 0
        for message_id in ids:
            message = self._forget(message_id)
            if message is not None:
                cancelled += 1
                self._event(message, "CANCELED")
        return {"cancelled": cancelled}

    # ------------------------------------------------------------ schedules

    async def _create_schedule(self, request: Request, destination: str) -> dict[str, str]:
        headers = request.headers
        cron_text = headers.get("upstash-cron")
        if not cron_text:
            raise QStashHTTPError(400, "Upstash-Cron is required to create a schedule")
        Cron.parse(cron_text)
        template = self._parse_message(destination, headers, request.body, None, request.client)
        queue = headers.get("upstash-queue-name")
        delay = None
        if "upstash-delay" in headers:
            delay = int(parse_duration(headers["upstash-delay"], "Upstash-Delay"))
        schedule_id = headers.get("upstash-schedule-id") or f"scd_{uuid.uuid4().hex}"
        previous = self._schedules.get(schedule_id)
        schedule = {
            "scheduleId": schedule_id,
            "destination": template["url"],
            "cron": cron_text,
            "createdAt": previous["createdAt"] if previous else _now_ms(),
            "method": template["method"],
            "header": template["header"],
            "body": template["body"],
            "retries": template["maxRetries"],
            "retryDelayExpression": template["retryDelayExpression"],
            "timeout": int(template["timeout"]) if "upstash-timeout" in headers else None,
            "delay": delay,
            "callback": template["callback"],
            "failureCallback": template["failureCallback"],
            "callbackHeader": template["callbackHeader"],
            "failureCallbackHeader": template["failureCallbackHeader"],
            "queueName": queue,
            "label": template["label"],
            "callerIP": request.client,
            "isPaused": False,
            "lastScheduleTime": previous.get("lastScheduleTime") if previous else None,
            "nextAt": self._next_fire(cron_text),
        }
        self._schedules[schedule_id] = schedule
        self._store.put("schedule", schedule_id, schedule)
        self._wake.set()
        return {"scheduleId": schedule_id}

    def _schedule(self, schedule_id: str) -> dict[str, Any]:
        schedule = self._schedules.get(schedule_id)
        if schedule is None:
            raise QStashHTTPError(404, f"schedule {schedule_id} not found")
        return schedule

    async def _list_schedules(self, request: Request) -> list[dict[str, Any]]:
        return [_schedule_view(schedule) for schedule in self._schedules.values()]

    async def _get_schedule(self, request: Request, id: str) -> dict[str, Any]:
        return _schedule_view(self._schedule(id))

    async def _delete_schedule(self, request: Request, id: str) -> None:
        self._schedule(id)
        del self._schedules[id]
        self._store.delete("schedule", id)

    async def _pause_schedule(self, request: Request, id: str, action: str) -> None:
        schedule = self._schedule(id)
        schedule["isPaused"] = action == "pause"
        schedule["nextAt"] = None if schedule["isPaused"] else self._next_fire(schedule["cron"])
        self._store.put("schedule", id, schedule)
        self._wake.set()

    def _next_fire(self, cron_text: str) -> int | None:
        """When (real unix ms) the cron next fires, on the sped-up cron clock."""
        speed = 60.0 / self._options.cron_minute_seconds
        now = time.time()
        cron_now = CRON_CLOCK_ANCHOR + (now - CRON_CLOCK_ANCHOR) * speed
        cron_next = Cron.parse(cron_text).next_after(cron_now)
        if cron_next is None:
            return None
        return int((CRON_CLOCK_ANCHOR + (cron_next - CRON_CLOCK_ANCHOR) / speed) * 1000)

    def _fire(self, schedule: dict[str, Any]) -> None:
        now = _now_ms()
        not_before = now + (schedule["delay"] or 0) * 1000
        message = {
            "messageId": self._new_message_id(),
            "url": schedule["destination"],
            "method": schedule["method"],
            "header": schedule["header"],
            "body": schedule["body"],
            "maxRetries": schedule["retries"],
            "retryDelayExpression": schedule["retryDelayExpression"],
            "timeout": schedule["timeout"] or self._options.delivery_timeout,
            "notBefore": not_before,
            "createdAt": now,
            "callback": schedule["callback"],
            "failureCallback": schedule["failureCallback"],
            "callbackHeader": schedule["callbackHeader"],
            "failureCallbackHeader": schedule["failureCallbackHeader"],
            "queueName": schedule["queueName"],
            "scheduleId": schedule["scheduleId"],
            "label": schedule["label"],
            "callerIP": schedule["callerIP"],
            "retried": 0,
            "nextAt": not_before,
        }
        if message["queueName"]:
            self._ensure_queue(message["queueName"])
        self._save(message)
        self._event(message, "CREATED")
        schedule["lastScheduleTime"] = now
        schedule["nextAt"] = self._next_fire(schedule["cron"])
        self._store.put("schedule", schedule["scheduleId"], schedule)

    # ------------------------------------------------------------ dead-letter queue

    async def _list_dlq(self, request: Request) -> dict[str, Any]:
        entries = [entry for entry in reversed(self._dlq.values()) if _matches(entry, request.query)]
        page, cursor = _page(entries, request.query)
        return {"messages": page, **({"cursor": cursor} if cursor else {})}

    def _dlq_entry(self, dlq_id: str) -> dict[str, Any]:
        entry = self._dlq.get(dlq_id)
        if entry is None:
            raise QStashHTTPError(404, f"DLQ message {dlq_id} not found")
        return entry

    async def _get_dlq(self, request: Request, id: str) -> dict[str, Any]:
        return self._dlq_entry(id)

    async def _delete_dlq(self, request: Request, id: str) -> None:
        self._dlq_entry(id)
        del self._dlq[id]
        self._store.delete("dlq", id)

    async def _delete_dlq_many(self, request: Request) -> dict[str, int]:
        ids = _ids_named(request, "dlqIds", "DLQ messages")
        if ids is None:
            ids = list(self._dlq)
        deleted = 0
        for dlq_id in ids:
            if self._dlq.pop(dlq_id, None) is not None:
                self._store.delete("dlq", dlq_id)
                deleted += 1
        return {"deleted": deleted}

    # ------------------------------------------------------------ queues

    async def _upsert_queue(self, request: Request) -> None:
        payload = _json(request.body)
        if not isinstance(payload, dict) or not isinstance(payload.get("queueName"), str):
            raise QStashHTTPError(400, "queueName is required")
        parallelism = payload.get("parallelism", 1)
        if not isinstance(parallelism, int) or isinstance(parallelism, bool) or not 1 <= parallelism <= 100:
            raise QStashHTTPError(400, "parallelism must be an integer from 1 to 100")
        paused = payload.get("paused", False)
        if not isinstance(paused, bool):
            raise QStashHTTPError(400, "paused must be true or false")
        queue = self._ensure_queue(payload["queueName"])
        queue.update(parallelism=parallelism, paused=paused, updatedAt=_now_ms())
        self._store.put("queue", queue["name"], queue)
        self._wake.set()

    def _queue_view(self, queue: dict[str, Any]) -> dict[str, Any]:
        lag = sum(1 for message in self._messages.values() if message["queueName"] == queue["name"])
        return {**queue, "lag": lag}

    def _queue(self, name: str) -> dict[str, Any]:
        queue = self._queues.get(name)
        if queue is None:
            raise QStashHTTPError(404, f"queue {name} not found")
        return queue

    async def _list_queues(self, request: Request) -> list[dict[str, Any]]:
        return [self._queue_view(queue) for queue in self._queues.values()]

    async def _get_queue(self, request: Request, name: str) -> dict[str, Any]:
        return self._queue_view(self._queue(name))

    async def _delete_queue(self, request: Request, name: str) -> None:
        self._queue(name)
        del self._queues[name]
        self._store.delete("queue", name)
        for message in [m for m in self._messages.values() if m["queueName"] == name]:
            self._forget(message["messageId"])
            self._event(message, "CANCELED")

    async def _pause_queue(self, request: Request, name: str, action: str) -> None:
        queue = self._queue(name)
        queue.update(paused=action == "pause", updatedAt=_now_ms())
        self._store.put("queue", name, queue)
        self._wake.set()

    # ------------------------------------------------------------ events and keys

    def _event(self, message: dict[str, Any], state: str, **details: Any) -> None:
        self._event_seq += 1
        event = {
            "cursor": self._event_seq,
            "time": _now_ms(),
            "messageId": message["messageId"],
            "state": state,
            "url": message["url"],
            "queueName": message.get("queueName"),
            "scheduleId": message.get("scheduleId"),
            "label": message.get("label"),
            "header": {name: [value] for name, value in message["header"].items()},
            "body": message["body"],
            "method": message["method"],
            "maxRetries": message["maxRetries"],
            "callback": message.get("callback"),
            "failureCallback": message.get("failureCallback"),
            **details,
        }
        self._events.append({key: value for key, value in event.items() if value is not None})
        if len(self._events) > MAX_EVENTS:
            del self._events[: len(self._events) - MAX_EVENTS]

    async def _list_events(self, request: Request) -> dict[str, Any]:
        query = request.query
        wanted_ids = set(query.get("messageIds", [])) | set(query.get("messageId", []))
        state = query.get("state", [None])[0]
        events = [
            {key: value for key, value in event.items() if key != "cursor"}
            for event in reversed(self._events)
            if (not wanted_ids or event["messageId"] in wanted_ids)
            and (state is None or event["state"] == state)
            and _matches(event, query)
        ]
        page, cursor = _page(events, query)
        return {"events": page, **({"cursor": cursor} if cursor else {})}

    async def _get_keys(self, request: Request) -> dict[str, str]:
        return dict(self._keys)

    async def _rotate_keys(self, request: Request) -> dict[str, str]:
        self._keys = {"current": self._keys["next"], "next": _signing_key()}
        self._store.put("keys", "signing", self._keys)
        return dict(self._keys)

    # ------------------------------------------------------------ delivery

    async def _deliver_forever(self) -> None:
        while True:
            try:
                self._dispatch_due()
            except Exception:
                logger.exception("the delivery loop failed; it carries on")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._options.tick_seconds)

    def _dispatch_due(self) -> None:
        now = _now_ms()
        for schedule in list(self._schedules.values()):
            if not schedule["isPaused"] and schedule["nextAt"] is not None and schedule["nextAt"] <= now:
                self._fire(schedule)
        queues: dict[str, _Queue] = {}
        for message in self._messages.values():
            name = message["queueName"]
            if name and message.get("started"):
                queues.setdefault(name, _Queue()).active.add(message["messageId"])
        for message in sorted(self._messages.values(), key=lambda m: (m["createdAt"], m["messageId"])):
            message_id = message["messageId"]
            name = message["queueName"]
            if name:
                queue = self._queues.get(name) or self._ensure_queue(name)
                state = queues.setdefault(name, _Queue())
                if queue["paused"]:
                    continue
                if message_id not in state.active:
                    # Queues deliver in order: a later message waits for a free slot even when due.
                    if len(state.active) >= queue["parallelism"]:
                        continue
                    if message["nextAt"] > now:
                        continue
                    state.active.add(message_id)
            if message_id in self._in_flight or message["nextAt"] > now:
                continue
            self._in_flight.add(message_id)
            task = asyncio.create_task(self._attempt(message))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _attempt(self, message: dict[str, Any]) -> None:
        message_id = message["messageId"]
        try:
            if not message.get("started"):
                message["started"] = True
                self._store.put("message", message_id, message)
            self._event(message, "ACTIVE")
            status, response_headers, response_body, error = await self._call(message)
            if message_id not in self._messages:  # cancelled while in flight
                return
            if status is not None and 200 <= status < 300:
                self._forget(message_id)
                self._event(message, "DELIVERED", responseStatus=status)
                self._callback(message, "callback", status, response_headers, response_body)
            elif message["retried"] < message["maxRetries"]:
                delay = self._retry_delay(message)
                message["retried"] += 1
                message["nextAt"] = _now_ms() + int(delay * 1000)
                self._store.put("message", message_id, message)
                details = {"error": error, "responseStatus": status, "nextDeliveryTime": message["nextAt"]}
                self._event(message, "ERROR", **details)
                self._event(message, "RETRY", nextDeliveryTime=message["nextAt"])
            else:
                self._forget(message_id)
                self._event(message, "FAILED", error=error, responseStatus=status)
                self._dead_letter(message, status, response_headers, response_body)
                self._callback(message, "failureCallback", status, response_headers, response_body)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("delivering %s failed unexpectedly", message_id)
        finally:
            self._in_flight.discard(message_id)
            self._wake.set()

    def _retry_delay(self, message: dict[str, Any]) -> float:
        if message["retryDelayExpression"]:
            seconds = evaluate_retry_delay(message["retryDelayExpression"], message["retried"]) / 1000
        else:
            seconds = default_retry_delay(message["retried"] + 1)
        return min(MAX_RETRY_DELAY_SECONDS, seconds) * self._options.retry_delay_scale

    async def _call(self, message: dict[str, Any]) -> tuple[int | None, dict[str, str], bytes, str | None]:
        assert self._client is not None
        body = base64.b64decode(message["body"])
        headers = {name: value for name, value in message["header"].items()}
        headers.update(
            {
                "Upstash-Signature": self.sign(message["url"], body),
                "Upstash-Message-Id": message["messageId"],
                "Upstash-Retried": str(message["retried"]),
                "User-Agent": "Upstash-QStash",
            }
        )
        if message.get("scheduleId"):
            headers["Upstash-Schedule-Id"] = message["scheduleId"]
        if message.get("queueName"):
            headers["Upstash-Queue-Name"] = message["queueName"]
        try:
            response = await self._client.request(
                message["method"], message["url"], content=body, headers=headers, timeout=message["timeout"]
            )
        except httpx.TimeoutException:
            return None, {}, b"", f"the destination did not answer within {message['timeout']:g} s"
        except httpx.HTTPError as exc:
            return None, {}, b"", f"the destination could not be called: {exc!r}"
        error = None if response.is_success else f"the destination answered {response.status_code}"
        return (
            response.status_code,
            dict(response.headers),
            response.content[:MAX_RESPONSE_BODY_BYTES],
            error,
        )

    def sign(self, url: str, body: bytes) -> str:
        """The `Upstash-Signature` JWT of one delivery, as QStash makes it."""
        now = int(time.time())
        claims = {
            "iss": "Upstash",
            "sub": url,
            "exp": now + self._options.signature_ttl,
            "nbf": now,
            "iat": now,
            "jti": f"jwt_{secrets.token_hex(16)}",
            "body": base64.urlsafe_b64encode(hashlib.sha256(body).digest()).decode("ascii").rstrip("="),
        }
        return jwt.encode(claims, self._keys["current"], algorithm="HS256")

    def _dead_letter(
        self, message: dict[str, Any], status: int | None, headers: dict[str, str], body: bytes
    ) -> None:
        dlq_id = f"dlq_{uuid.uuid4().hex}"
        entry = {
            **_message_view(message),
            "dlqId": dlq_id,
            "responseStatus": status or 0,
            "responseHeader": {name: [value] for name, value in headers.items()},
            **_body_fields(body, "responseBody", "responseBodyBase64"),
        }
        self._dlq[dlq_id] = entry
        self._store.put("dlq", dlq_id, entry)

    def _callback(
        self, message: dict[str, Any], kind: str, status: int | None, headers: dict[str, str], body: bytes
    ) -> None:
        url = message.get(kind)
        if not url:
            return
        payload = {
            "status": status or 0,
            "header": {name: [value] for name, value in headers.items()},
            "body": base64.b64encode(body).decode("ascii"),
            "retried": message["retried"],
            "maxRetries": message["maxRetries"],
            "sourceMessageId": message["messageId"],
            "url": message["url"],
            "method": message["method"],
            "sourceHeader": {name: [value] for name, value in message["header"].items()},
            "sourceBody": message["body"],
            "notBefore": message["notBefore"],
            "createdAt": message["createdAt"],
            "scheduleId": message.get("scheduleId"),
            "callerIP": message.get("callerIP"),
        }
        if kind == "failureCallback":
            payload["dlqId"] = next(reversed(self._dlq), None)
        now = _now_ms()
        call_headers = message["callbackHeader" if kind == "callback" else "failureCallbackHeader"]
        callback = {
            "messageId": self._new_message_id(),
            "url": url,
            "method": "POST",
            "header": {**call_headers, "Content-Type": "application/json"},
            "body": base64.b64encode(json.dumps(payload).encode()).decode("ascii"),
            "maxRetries": message["maxRetries"],
            "retryDelayExpression": message["retryDelayExpression"],
            "timeout": message["timeout"],
            "notBefore": now,
            "createdAt": now,
            "callback": None,
            "failureCallback": None,
            "callbackHeader": {},
            "failureCallbackHeader": {},
            "queueName": None,
            "scheduleId": None,
            "label": message.get("label"),
            "callerIP": message.get("callerIP"),
            "retried": 0,
            "nextAt": now,
        }
        self._save(callback)
        self._event(callback, "CREATED")


# ---------------------------------------------------------------- small pieces


def _signing_key() -> str:
    return f"sig_{secrets.token_urlsafe(24)}"


def _fix_scheme(destination: str) -> str:
    # Some HTTP stacks collapse the `//` of a URL inside a path; QStash's own examples rely on it.
    return re.sub(r"^(https?):/(?!/)", r"\1://", destination)


def _is_loopback(host: str) -> bool:
    if host == "localhost":  # other *.localhost names may go to DNS, which could answer anything
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _prefixed(headers: dict[str, str], prefix: str) -> dict[str, str]:
    found = {}
    for name, value in headers.items():
        if name.startswith(prefix) and len(name) > len(prefix):
            # HTTP/1.1 servers lower-case header names; the canonical capitalisation is what QStash sends.
            found["-".join(part.capitalize() for part in name[len(prefix) :].split("-"))] = value
    return found


def _deduplication_key(destination: str, headers: dict[str, str], body: bytes) -> str | None:
    if "upstash-deduplication-id" in headers:
        return "id:" + headers["upstash-deduplication-id"]
    if headers.get("upstash-content-based-deduplication", "").lower() == "true":
        digest = hashlib.sha256()
        digest.update(destination.encode())
        for name in sorted(headers):
            if name.startswith("upstash-forward-") or name == "content-type":
                digest.update(f"\n{name}:{headers[name]}".encode())
        digest.update(b"\n\n" + body)
        return "content:" + digest.hexdigest()
    return None


def _body_fields(body: bytes, text_key: str, base64_key: str) -> dict[str, str]:
    try:
        return {text_key: body.decode("utf-8")}
    except UnicodeDecodeError:
        return {base64_key: base64.b64encode(body).decode("ascii")}


def _message_view(message: dict[str, Any]) -> dict[str, Any]:
    view = {
        "messageId": message["messageId"],
        "url": message["url"],
        "method": message["method"],
        "header": {name: [value] for name, value in message["header"].items()},
        **_body_fields(base64.b64decode(message["body"]), "body", "bodyBase64"),
        "maxRetries": message["maxRetries"],
        "retryDelayExpression": message["retryDelayExpression"],
        "notBefore": message["notBefore"],
        "createdAt": message["createdAt"],
        "callback": message["callback"],
        "failureCallback": message["failureCallback"],
        "callbackHeader": {k: [v] for k, v in message["callbackHeader"].items()} or None,
        "failureCallbackHeader": {k: [v] for k, v in message["failureCallbackHeader"].items()} or None,
        "queueName": message["queueName"],
        "scheduleId": message["scheduleId"],
        "label": message["label"],
        "callerIP": message["callerIP"],
    }
    return {key: value for key, value in view.items() if value is not None}


def _schedule_view(schedule: dict[str, Any]) -> dict[str, Any]:
    view = {
        **{key: value for key, value in schedule.items() if key not in ("nextAt", "body", "header")},
        "header": {name: [value] for name, value in schedule["header"].items()},
        **_body_fields(base64.b64decode(schedule["body"]), "body", "bodyBase64"),
        "nextScheduleTime": schedule["nextAt"],
    }
    return {key: value for key, value in view.items() if value is not None and value != {}}


def _matches(record: dict[str, Any], query: dict[str, list[str]]) -> bool:
    """The DLQ and log filters the SDK sends (exact matches, and a time window in unix ms)."""
    for parameter, key in (
        ("messageId", "messageId"), ("url", "url"), ("queueName", "queueName"),
        ("scheduleId", "scheduleId"), ("label", "label"), ("callerIp", "callerIP"),
        ("responseStatus", "responseStatus"),
    ):  # fmt: skip
        wanted = query.get(parameter)
        if parameter == "messageId" and "messageIds" in query:
            continue
        if wanted and str(record.get(key)) != wanted[0]:
            return False
    moment = record.get("time", record.get("createdAt", 0))
    for parameter, keep in (
        ("fromDate", lambda bound: moment >= bound),
        ("toDate", lambda bound: moment <= bound),
    ):
        value = query.get(parameter)
        if value:
            if not value[0].isdigit():
                raise QStashHTTPError(400, f"{parameter} must be unix milliseconds")
            if not keep(int(value[0])):
                return False
    return True


def _page(items: list[Any], query: dict[str, list[str]]) -> tuple[list[Any], str | None]:
    """One page and the cursor of the next (a position; None at the end)."""
    cursor_text = query.get("cursor", ["0"])[0] or "0"
    count_text = query.get("count", ["100"])[0]
    if not cursor_text.isdigit() or not count_text.isdigit() or int(count_text) < 1:
        raise QStashHTTPError(400, "cursor and count must be non-negative integers (count at least 1)")
    start, count = int(cursor_text), min(int(count_text), 1000)
    page = items[start : start + count]
    return page, str(start + count) if start + count < len(items) else None


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise QStashHTTPError(400, "the request body is not valid JSON") from None


def _ids_named(request: Request, key: str, what: str) -> list[str] | None:
    """The ids a bulk cancel or delete names under `key`; None when the body names none (all of them)."""
    payload = _json(request.body) if request.body.strip() else {}
    if not isinstance(payload, dict) or set(payload) - {key}:
        # Filters other than ids could match more than meant; refusing them never deletes too much.
        raise QStashHTTPError(400, f'only {{"{key}": [...]}} (or no body, for all {what}) is supported here')
    ids = payload.get(key)
    if ids is not None and (not isinstance(ids, list) or not all(isinstance(i, str) for i in ids)):
        raise QStashHTTPError(400, f"{key} must be an array of strings")
    return ids


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise QStashHTTPError(400, "the client went away before sending the whole body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise QStashHTTPError(413, f"the request body is larger than {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


# ---------------------------------------------------------------- running


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m upstash_local.qstash_server", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081, help="0 takes a free port (default: 8081)")
    parser.add_argument("--token", default=os.environ.get(TOKEN_ENV), help=f"default: ${TOKEN_ENV}")
    parser.add_argument("--path", type=Path, help="keep state in this SQLite file (default: in memory)")
    parser.add_argument(
        "--allow-destination",
        action="append",
        default=[],
        metavar="HOST",
        help="also deliver to this host name or address (repeatable; loopback is always allowed)",
    )
    parser.add_argument(
        "--retry-delay-scale",
        type=float,
        default=1.0,
        help="multiply every retry delay by this (e.g. 0.001 in tests: QStash's 12 s becomes 12 ms)",
    )
    parser.add_argument(
        "--cron-minute-seconds",
        type=float,
        default=60.0,
        help="how many real seconds one cron minute lasts (e.g. 1 in tests: `* * * * *` fires each second)",
    )
    parser.add_argument(
        "--signature-ttl",
        type=int,
        default=DEFAULT_SIGNATURE_TTL,
        help=f"seconds a delivery's signature stays valid (default: {DEFAULT_SIGNATURE_TTL})",
    )
    parser.add_argument(
        "--delivery-timeout",
        type=float,
        default=DEFAULT_DELIVERY_TIMEOUT,
        help=f"seconds to wait for a destination without Upstash-Timeout (default: {DEFAULT_DELIVERY_TIMEOUT:g})",
    )
    parser.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    args = parser.parse_args(argv)
    if not args.token:
        parser.error(f"--token or ${TOKEN_ENV} is required")
    if args.retry_delay_scale < 0 or args.cron_minute_seconds < 0.5 or args.signature_ttl < 1:
        parser.error("--retry-delay-scale must be >= 0, --cron-minute-seconds >= 0.5, --signature-ttl >= 1")
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    options = Options(
        allowed_hosts=frozenset(host.lower() for host in args.allow_destination),
        retry_delay_scale=args.retry_delay_scale,
        cron_minute_seconds=args.cron_minute_seconds,
        signature_ttl=args.signature_ttl,
        delivery_timeout=args.delivery_timeout,
    )
    # Bound here rather than by uvicorn so that port 0 works and the real port can be announced.
    sock = socket.create_server((args.host, args.port))
    host, port = sock.getsockname()[:2]
    address = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def announce() -> None:
        print(f"{READY_PREFIX}{address}", flush=True)

    try:
        app = QStashApp(args.token, path=args.path, options=options, on_ready=announce)
    except sqlite3.Error as exc:
        parser.error(f"cannot open --path {args.path}: {exc}")
    config = uvicorn.Config(
        app, log_config=None, log_level=args.log_level, access_log=False, lifespan="on", server_header=False
    )
    server = uvicorn.Server(config)
    server.run(sockets=[sock])
    if not server.started:
        sys.exit(1)


@dataclass
class LocalQStashServer:
    """A QStash server in a child process on a free port with a random token, for tests and scripts.

    with LocalQStashServer.start(retry_delay_scale=0.001) as server:
        client = QStash(server.token, base_url=server.url)
    """

    url: str
    token: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @classmethod
    def start(
        cls,
        *,
        path: Path | None = None,
        token: str | None = None,
        options: list[str] | None = None,
        startup_timeout: float = 20.0,
    ) -> LocalQStashServer:
        """Start one; `options` are more command-line options (e.g. ["--retry-delay-scale", "0.001"])."""
        token = token or uuid.uuid4().hex
        command = [sys.executable, "-m", "upstash_local.qstash_server", "--port", "0", *(options or [])]
        if path is not None:
            command += ["--path", str(path)]
        log = Path(tempfile.mkstemp(prefix="upstash-qstash-", suffix=".log")[1])
        with log.open("wb") as output:
            process = subprocess.Popen(
                command,
                cwd=ROOT,
                # In the environment, not on the command line, where other users' `ps` would see it.
                env={**os.environ, TOKEN_ENV: token},
                stdout=subprocess.PIPE,
                stderr=output,
            )
        server = cls("", token, process, log)
        url = server._wait_until_ready(startup_timeout)
        if url is None:
            server.stop(keep_log=True)
            output_text = log.read_text(errors="replace").strip() or "no output"
            log.unlink(missing_ok=True)
            raise RuntimeError(f"the local QStash server did not start: {output_text[-2000:]}")
        server.url = url
        return server

    def _wait_until_ready(self, timeout: float) -> str | None:
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            readable, _, _ = select.select([self.process.stdout], [], [], remaining)
            if not readable:
                return None
            line = self.process.stdout.readline().decode(errors="replace")
            if not line:  # end of output: the child exited
                return None
            if line.startswith(READY_PREFIX):
                return line.removeprefix(READY_PREFIX).strip()
        return None

    def stop(self, *, keep_log: bool = False) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        if not keep_log:
            self.log_path.unlink(missing_ok=True)

    def __enter__(self) -> LocalQStashServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


if __name__ == "__main__":
    main()
