"""The hottest cached reads answered beneath Litestar: straight from the cache, without routing,
parameter parsing, dependency injection or a Response object; whatever a shortcut does not answer goes
on to Litestar unchanged.

A cached `GET /api/v1/videos/{id}` spent ~55% of its CPU time in that machinery (BENCHMARKS.md
section 1): the read itself is one cache lookup and a byte copy. A shortcut answers only what it can
answer completely (a video this viewer may see, from the cache or read through it); a 404, a bad id,
a refused token or any failure falls through to the route, which answers it as always, so errors are
rendered in the one place they are. The route stays the API's description (OpenAPI) and the answer's
other half: tests/core/test_shortcuts.py compares both, header for header.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from litestar.types import ASGIApp, Receive, Scope, Send

logger = logging.getLogger("clipdex.shortcuts")


class Answer(NamedTuple):
    """A whole response: status, raw headers (lower-case names), body."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


Authenticate = Callable[[Scope], Awaitable[Any]]
"""The request's signed-in user (None without a token); raises for a token the routes would refuse."""


@dataclass(frozen=True)
class Shortcut:
    """Answers `GET <prefix><rest>`, as the route `path_template` would, when it can."""

    prefix: str
    path_template: str  # the route's, for its metrics
    answer: Callable[[str, Any, Scope], Awaitable[Answer | None]]  # (rest, viewer, scope)


class RouteMetrics(Protocol):
    """What a shortcut records for its route: the same series the routes' Prometheus middleware keeps."""

    def in_progress(self, method: str, path: str) -> Any: ...

    def finished(self, method: str, path: str, status: int, seconds: float) -> None: ...


class CachedAnswers:
    """An ASGI layer in front of Litestar's router (inside the request id and access log) trying its
    shortcuts on GET requests. Requests with an `Origin` header go on to Litestar when CORS is on
    (its middleware adds the CORS headers)."""

    def __init__(
        self,
        app: ASGIApp,
        shortcuts: list[Shortcut],
        authenticate: Authenticate,
        metrics: RouteMetrics,
        *,
        cross_origin_to_routes: bool,
    ) -> None:
        self.app = app
        self._shortcuts = shortcuts
        self._authenticate = authenticate
        self._metrics = metrics
        self._cross_origin_to_routes = cross_origin_to_routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        shortcut = self._shortcut_for(scope)
        if shortcut is not None:
            started = time.perf_counter()
            in_progress = self._metrics.in_progress("GET", shortcut.path_template)
            in_progress.inc()
            try:
                answer = await self._answer(shortcut, scope)
                if answer is not None:
                    await send(
                        {"type": "http.response.start", "status": answer.status, "headers": answer.headers}
                    )
                    await send({"type": "http.response.body", "body": answer.body})
                    seconds = time.perf_counter() - started
                    self._metrics.finished("GET", shortcut.path_template, answer.status, seconds)
                    return
            finally:
                in_progress.dec()
        await self.app(scope, receive, send)

    async def answer(self, scope: Scope) -> Answer | None:
        """The shortcut's answer to this request, or None when it goes on to the routes."""
        shortcut = self._shortcut_for(scope)
        return None if shortcut is None else await self._answer(shortcut, scope)

    def _shortcut_for(self, scope: Scope) -> Shortcut | None:
        if scope["type"] != "http" or scope["method"] != "GET":
            return None
        if self._cross_origin_to_routes and any(name == b"origin" for name, _ in scope["headers"]):
            return None
        path: str = scope["path"]
        return next((shortcut for shortcut in self._shortcuts if path.startswith(shortcut.prefix)), None)

    async def _answer(self, shortcut: Shortcut, scope: Scope) -> Answer | None:
        try:
            viewer = await self._authenticate(scope)
            return await shortcut.answer(scope["path"][len(shortcut.prefix) :], viewer, scope)
        except Exception:
            # The route meets the same failure and answers it (a 401, a 503) as it always does.
            logger.debug("shortcut for %s passed a request on", shortcut.path_template, exc_info=True)
            return None
