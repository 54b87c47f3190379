"""Request ids, the access log and log formatting: what lets an operator follow one request."""

from __future__ import annotations

import logging
import re
import sys
import time
import uuid
from typing import Any

import msgspec
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
        sent = dict(scope.get("headers", ())).get(b"x-request-id", b"").decode("latin-1")
        request_id = sent if _CLIENT_REQUEST_ID.match(sent) else uuid.uuid4().hex
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
            access_logger.info(
                "%s %s %s %.1fms",
                scope["method"],
                scope["path"],
                status,
                (time.perf_counter() - started) * 1000,
                extra={
                    "method": scope["method"],
                    "path": scope["path"],
                    "status": status,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                    "request_id": request_id,
                },
            )


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with whatever `extra` fields the caller attached."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD_RECORD_KEYS})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return msgspec.json.encode(entry, enc_hook=str).decode()


def configure_logging(settings: Settings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
        )
    clipdex = logging.getLogger("clipdex")
    clipdex.handlers[:] = [handler]
    clipdex.setLevel(settings.log_level)
    clipdex.propagate = False


def silence_server_access_log() -> None:
    """Mute uvicorn's access log: ours carries the request id, the server's would repeat it without.

    Called from the lifespan, because uvicorn configures its loggers after the app is built.
    """
    logging.getLogger("uvicorn.access").disabled = True
