"""Request ids, the access log and log formatting: what lets an operator follow one request."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import sys
import time
from typing import Any

import msgspec
from litestar.plugins.prometheus import PrometheusConfig, PrometheusMiddleware
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from core.settings import Settings

access_logger = logging.getLogger("clipdex.access")

_CLIENT_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_STANDARD_RECORD_KEYS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


def request_id_of(scope: Scope) -> str:
    """The request id of this connection, taken from `X-Request-ID` when it is sane, else made up."""
    state = scope.setdefault("state", {})
    request_id = state.get("request_id")
    if request_id is None:
        sent = next((value for name, value in scope.get("headers", ()) if name == b"x-request-id"), b"")
        request_id = sent.decode("latin-1")
        if not _CLIENT_REQUEST_ID.match(request_id):
            # 128 random bits in hex, as uuid4().hex gives, without building a UUID: a fifth of the cost.
            request_id = os.urandom(16).hex()
        state["request_id"] = request_id
    return request_id


class RequestContext:
    """Wraps the whole ASGI app, so unrouted requests (404, 405) get an id and a log line too.

    Litestar's own middleware runs only for requests that matched a route, which is why this sits
    outside it.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = request_id_of(scope)
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode("latin-1")))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            if access_logger.isEnabledFor(logging.INFO):
                duration_ms = (time.perf_counter() - started) * 1000
                access_logger.handle(
                    AccessRecord(scope["method"], scope["path"], status, duration_ms, request_id)
                )


class AccessRecord(logging.LogRecord):
    """The access log's record of one request: what `access_logger.info(...)` with these fields as
    `extra` would make, built for a fraction of the cost (LogRecord's constructor looks up the file,
    module, thread, process and task of the call, which no clipdex format shows; they are left empty).
    """

    # The attributes a LogRecord always has, for formats that name them. In the instance's __dict__, not
    # on the class: logging's %-style formats read `record.__dict__`.
    _ALWAYS = {
        "pathname": "",
        "filename": "",
        "module": "",
        "lineno": 0,
        "funcName": None,
        "threadName": None,
        "processName": None,
        "taskName": None,
        "thread": None,
        "process": None,
        "exc_info": None,
        "exc_text": None,
        "stack_info": None,
        "levelno": logging.INFO,
        "levelname": "INFO",
        "msg": "%s %s %s %.1fms",
    }

    def __init__(self, method: str, path: str, status: int, duration_ms: float, request_id: str) -> None:
        self.__dict__.update(self._ALWAYS)
        self.name = access_logger.name
        self.created = time.time()
        self.msecs = (self.created - int(self.created)) * 1000
        self.relativeCreated = (self.created - logging._startTime) * 1000
        self.args = (method, path, status, duration_ms)
        self.method = method
        self.path = path
        self.status = status
        self.duration_ms = round(duration_ms, 2)
        self.request_id = request_id


def printable(text: str) -> str:
    """`text` with every unprintable character (control characters, line and paragraph separators,
    bidirectional overrides) written as an escape: a logged value cannot start a line of its own, move
    the cursor or recolour a terminal, whatever a client put in a path or a header."""
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else _escape(char) for char in text)


def _escape(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


class TextFormatter(logging.Formatter):
    """The text log format, a record to a line: its message printable (a traceback follows on its own lines)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = printable(record.message)
        return super().formatMessage(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with whatever `extra` fields the caller attached.

    JSON escapes C0 control characters itself; strings are made printable too, because DEL, C1
    controls and U+2028 pass through JSON unescaped and still move a terminal or a log viewer.
    """

    _second = -1
    _stamp = ""

    def format(self, record: logging.LogRecord) -> str:
        # One line per request: the timestamp string is made once a second, not per line.
        second = int(record.created)
        if second != self._second:
            self._second, self._stamp = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(second))
        entry: dict[str, Any] = {
            "time": self._stamp,
            "level": record.levelname,
            "logger": record.name,
            "message": printable(record.getMessage()),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD_RECORD_KEYS:
                entry[key] = printable(value) if isinstance(value, str) else value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return msgspec.json.encode(entry, enc_hook=str).decode()


class CachedLabelsPrometheusMiddleware(PrometheusMiddleware):
    """Litestar's Prometheus middleware with the same metrics and labels, each label set looked up once.

    prometheus_client's labels() checks and locks on every call, and the parent calls it five times
    a request and parses the URL for a label it then replaces by the route template: together a
    fifth of the CPU time of a cached video read (profile in BENCHMARKS.md). Here the labelled
    children are kept per (method, route template, status). Configs this does not cover (no
    group_path, extra labels, exemplars) get the parent's behaviour.
    """

    def __init__(self, app: ASGIApp, config: PrometheusConfig) -> None:
        super().__init__(app, config)
        self._simple = config.group_path and not config.labels and not config.exemplars
        self._in_progress: dict[tuple[str, str], Any] = {}
        self._finished: dict[tuple[str, str, int], tuple[Any, Any, Any | None]] = {}

    def _labels(self, method: str, path: str, status: int) -> dict[str, str | int | float]:
        return {"method": method, "path": path, "status_code": status, "app_name": self._config.app_name}

    def _finished_children(self, method: str, path: str, status: int) -> tuple[Any, Any, Any | None]:
        key = (method, path, status)
        children = self._finished.get(key)
        if children is None:
            labels = self._labels(*key)
            values = list(labels.values())
            errors = self.requests_error_count(labels).labels(*values) if status >= 500 else None
            children = (
                self.request_count(labels).labels(*values),
                self.request_time(labels).labels(*values),
                errors,
            )
            self._finished[key] = children
        return children

    def in_progress(self, method: str, path: str) -> Any:
        """The requests-in-progress gauge of a route (its template as `path`)."""
        gauge = self._in_progress.get((method, path))
        if gauge is None:
            labels = self._labels(method, path, 200)
            gauge = self._in_progress[(method, path)] = self.requests_in_progress(labels).labels(
                *labels.values()
            )
        return gauge

    def finished(self, method: str, path: str, status: int, seconds: float) -> None:
        """Count one answered request of a route and its duration up to the response body."""
        count, duration, errors = self._finished_children(method, path, status)
        if errors is not None:
            errors.inc()
        count.inc()
        duration.observe(seconds)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self._simple or scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        method, path = scope["method"], scope["path_template"]
        in_progress = self.in_progress(method, path)
        started = time.perf_counter()
        span = [200, 0.0]  # status, duration up to the response body, as the parent measures it

        async def measured_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                span[0] = message["status"]
            elif message["type"] == "http.response.body":
                span[1] = time.perf_counter() - started
            await send(message)

        in_progress.inc()
        try:
            await self.app(scope, receive, measured_send)
        finally:
            in_progress.dec()
            self.finished(method, path, int(span[0]), span[1])


class LoopBatchedStreamHandler(logging.StreamHandler):
    """A StreamHandler writing the lines one event-loop iteration logged in one write and flush.

    Every request writes an access-log line; written and flushed one by one that was a system call
    per request, ~15 µs of a ~50 µs cached read (BENCHMARKS.md section 1). Lines logged on an event
    loop now wait for the end of its current iteration (microseconds; under load one write carries
    the lines of several requests), in order; lines logged where no loop runs (start-up, worker
    threads) are written at once, after any still waiting. A process killed outright loses at most
    the lines of the iteration it was in; a normal exit flushes them (logging.shutdown).
    """

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._waiting: list[str] = []
        self._write_scheduled_on: asyncio.AbstractEventLoop | None = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + self.terminator
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self._waiting.append(line)
                self._write_waiting()
                return
            self._waiting.append(line)
            if self._write_scheduled_on is not loop:
                self._write_scheduled_on = loop
                loop.call_soon(self._write_scheduled)
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)

    def _write_scheduled(self) -> None:
        with self.lock:
            self._write_scheduled_on = None
            self._write_waiting()

    def _write_waiting(self) -> None:
        if self._waiting:
            lines, self._waiting = "".join(self._waiting), []
            self.stream.write(lines)
            self.stream.flush()

    def flush(self) -> None:
        with self.lock:
            if self.stream and hasattr(self.stream, "write"):
                self._write_waiting()
            super().flush()


def configure_logging(settings: Settings) -> None:
    # The switches the logging HOWTO gives for speed: no thread, process or caller lookups per record,
    # which no clipdex format shows. Half the cost of the access log line every request writes.
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging._srcfile = None
    handler = LoopBatchedStreamHandler(sys.stderr)
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S"))
    clipdex = logging.getLogger("clipdex")
    clipdex.handlers[:] = [handler]
    clipdex.setLevel(settings.log_level)
    clipdex.propagate = False
    # Libraries (httpx under the Upstash SDKs, asyncpg, ...) speak up only for warnings, in the same
    # format: at INFO httpx logs every Upstash request, a line per cache or index call.
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(logging.WARNING, logging.getLevelName(settings.log_level)))


def silence_server_access_log() -> None:
    """Mute uvicorn's access log: ours carries the request id, the server's would repeat it without.

    Called from the lifespan, because uvicorn configures its loggers after the app is built.
    """
    logging.getLogger("uvicorn.access").disabled = True
