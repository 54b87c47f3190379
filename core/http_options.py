"""OPTIONS answers that list every method of the path, whichever handlers those methods came from."""

from __future__ import annotations

from litestar import Litestar
from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.routes import HTTPRoute
from litestar.types import ASGIApp, Message, Receive, Scope, Send


class AllowEveryMethod(ASGIMiddleware):
    """Puts all of a path's methods in the `Allow` header of its OPTIONS answer.

    Litestar 2 builds a path's automatic OPTIONS handler with its first route handler and keeps it
    when more handlers join the path, so its `Allow` names only the first one's methods
    (`GET, OPTIONS` on /api/v1/users/me, which has PATCH and DELETE too; litestar#4169, fixed in v3
    only). The routes themselves know every method: the header is rewritten from them.
    """

    scopes = (ScopeType.HTTP,)

    def __init__(self) -> None:
        self._allow: dict[str, bytes] | None = None

    def _allow_by_path(self, app: Litestar) -> dict[str, bytes]:
        # The routes are complete once the app serves requests, so the first OPTIONS reads them once.
        if self._allow is None:
            self._allow = {
                route.path_format: ", ".join(sorted(route.methods)).encode()
                for route in app.routes
                if isinstance(route, HTTPRoute)
            }
        return self._allow

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        if scope["method"] != "OPTIONS":
            await next_app(scope, receive, send)
            return
        allow = self._allow_by_path(Litestar.from_scope(scope)).get(scope["path_template"])

        async def send_with_allow(message: Message) -> None:
            if allow is not None and message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if any(name.lower() == b"allow" for name, _ in headers):
                    headers = [(name, value) for name, value in headers if name.lower() != b"allow"]
                    message = {**message, "headers": [*headers, (b"allow", allow)]}
            await send(message)

        await next_app(scope, receive, send_with_allow)
