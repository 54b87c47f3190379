"""Authentication building blocks: password hashing, token revocation and login rate limiting.

The users feature assembles these into Litestar's JWT auth. Revocations and rate-limit counters live
in the cache port, so they hold across workers once the cache is shared.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from litestar import Request
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException
from litestar.middleware.authentication import AuthenticationResult
from litestar.security.jwt import JWTAuth, JWTAuthenticationMiddleware, Token
from litestar.types import Scope

from core.cache import Cache
from core.errors import Problem, TooManyRequests
from core.openapi import BEARER_SCHEME, BearerOperation

logger = logging.getLogger("clipdex.auth")


class Passwords:
    """Argon2id password hashing, with cost parameters from the settings."""

    def __init__(self, time_cost: int, memory_kib: int) -> None:
        self._hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib)
        # Verified against when the account does not exist, so that a missing account costs as much
        # time as a wrong password and login timing does not tell which accounts exist.
        self._dummy_hash = self._hasher.hash("clipdex-timing-equaliser")

    async def hash(self, password: str) -> str:
        # argon2 is deliberately slow (tens of ms of CPU): keep it off the event loop.
        return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        """Whether `password` matches; a missing hash (unknown account) never matches but costs the same."""

        def verify() -> bool:
            try:
                return (
                    self._hasher.verify(password_hash or self._dummy_hash, password)
                    and password_hash is not None
                )
            except (VerificationError, InvalidHashError):
                return False

        return await asyncio.to_thread(verify)


class RevocationUnavailable(Problem):
    def __init__(self) -> None:
        super().__init__(
            503,
            "The sign-out could not be recorded (the cache is unavailable), so this token still works."
            " Try again shortly.",
            kind="cache-unavailable",
            headers={"Retry-After": "2"},
        )


class AccountChangeUnavailable(Problem):
    def __init__(self) -> None:
        super().__init__(
            503,
            "The change would sign out every token of the account, and the servers cannot be told (the"
            " cache is unavailable), so nothing was changed. Try again shortly.",
            kind="cache-unavailable",
            headers={"Retry-After": "2"},
        )


class TokenRevocations:
    """Token ids revoked before their expiry, remembered only until they would have expired anyway.

    Whoever authenticates a token reads `key(token_id)` along with the rest it reads from the cache
    (one round trip): the token is revoked while a value is there.
    """

    def __init__(self, cache: Cache) -> None:
        self._cache = cache

    @staticmethod
    def key(token_id: str) -> str:
        return f"auth:revoked:{token_id}"

    async def revoke(self, token_id: str, expires_at: float) -> None:
        remaining = int(expires_at - time.time()) + 1
        if remaining <= 0:
            return
        try:
            await self._cache.set(self.key(token_id), b"1", expires_in=remaining)
        except Exception as exc:
            # A sign-out that answered 204 without being recorded would leave a token the client
            # believes dead working: say so instead, and let it try again.
            logger.warning("cache unavailable: token revocation not recorded", exc_info=True)
            raise RevocationUnavailable() from exc


class LoginRateLimiter:
    """Fixed-window attempt counters: at most `limit` attempts per `window` seconds for each key."""

    def __init__(self, cache: Cache, limit: int, window_seconds: int) -> None:
        self._cache = cache
        self._limit = limit
        self._window = window_seconds

    async def hit(self, *subjects: str) -> None:
        """Count one attempt against every subject; raise TooManyRequests when any is over its limit."""
        retry_after = 0
        for subject in subjects:
            # Hashing keeps arbitrary client text (emails, addresses) out of cache key syntax.
            key = "auth:login-attempts:" + hashlib.sha256(subject.encode()).hexdigest()[:32]
            try:
                attempts = await self._cache.incr(key, expires_in=self._window)
                if attempts > self._limit:
                    remaining = await self._cache.expires_in(key)
                    # The port rounds to whole seconds, possibly down: one more second keeps a client
                    # that waits exactly Retry-After from arriving while the window is still open.
                    wait = self._window if remaining is None else min(self._window, remaining + 1)
                    retry_after = max(retry_after, wait)
            except Exception:
                logger.warning("cache unavailable: login rate limit not applied", exc_info=True)
        if retry_after:
            raise TooManyRequests(retry_after, "Too many login attempts; try again later.")


class OptionalBearerAuthMiddleware(JWTAuthenticationMiddleware):
    """Litestar's JWT middleware, letting routes marked `auth_optional` through without a token, and
    remembering the tokens it decoded.

    Such routes see `request.user` as None when no token is sent; a token that is sent must still be
    valid, so a client with a bad token learns it instead of silently browsing anonymously.

    Decoding a token (PyJWT: base64, JSON, the HMAC, the claims) costs ~100-200 µs, more than the rest
    of a cached read; a client sends the same token with every request. A token string decodes to the
    same claims every time, so the last DECODED_TOKENS valid ones are kept per secret, each until its
    `exp` (the only claim whose verdict changes with time: Litestar's tokens carry no `nbf`, and one
    that does is decoded every time). Whose token it is, its version and its revocation are still
    checked on every request.
    """

    DECODED_TOKENS = 4096
    _decoded: OrderedDict[tuple[str, str], tuple[Token, float]] = OrderedDict()

    async def authenticate_request(
        self, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> AuthenticationResult:
        if connection.route_handler.opt.get("auth_optional") and not _sent_header(
            connection.scope, self.auth_header
        ):
            return AuthenticationResult(user=None, auth=None)
        return await super().authenticate_request(connection)

    async def authenticate_token(
        self, encoded_token: str, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> AuthenticationResult:
        key = (self.token_secret, encoded_token)
        remembered = self._decoded.get(key)
        if remembered is None or (self.verify_expiry and remembered[1] <= time.time()):
            token = self.token_cls.decode(
                encoded_token=encoded_token,
                secret=self.token_secret,
                algorithm=self.algorithm,
                audience=self.token_audience,
                issuer=self.token_issuer,
                require_claims=self.require_claims,
                verify_exp=self.verify_expiry,
                verify_nbf=self.verify_not_before,
                strict_audience=self.strict_audience,
            )
            if "nbf" not in token.extras:
                self._decoded[key] = (token, token.exp.timestamp())
                if len(self._decoded) > self.DECODED_TOKENS:
                    self._decoded.popitem(last=False)
        else:
            token = remembered[0]
            self._decoded.move_to_end(key)
        user = await self.retrieve_user_handler(token, connection)
        if not user or (self.revoked_token_handler and await self.revoked_token_handler(token, connection)):
            raise NotAuthorizedException()
        return AuthenticationResult(user=user, auth=token)


def bearer_authenticator(auth: JWTAuth[Any, Token]) -> Callable[[Scope], Awaitable[Any]]:
    """The signed-in user of a request, for code in front of Litestar's routes (core.shortcuts): None
    without a token, else what the routes' own middleware makes of it (the same decoding, user and
    revocation checks), raising NotAuthorizedException for a token they would refuse."""
    # The middleware instance only authenticates here: it never wraps an app.
    middleware = cast(OptionalBearerAuthMiddleware, auth.middleware(app=cast(Any, None)))

    async def authenticate(scope: Scope) -> Any:
        sent = _sent_header(scope, middleware.auth_header)
        if sent is None:
            return None
        # JWTAuthenticationMiddleware.authenticate_request's reading of the header, off the raw headers
        # (the route's auth_optional check needs a route, and a token that is sent must be valid anyway).
        encoded_token = sent.decode("latin-1").partition(" ")[-1]
        result = await middleware.authenticate_token(encoded_token, ASGIConnection(scope))
        return result.user

    return authenticate


def _sent_header(scope: Any, name: str) -> bytes | None:
    """The value of header `name` if the request sent it non-empty: read off the raw headers, without
    building Litestar's header mapping for a request that sends none."""
    wanted = name.lower().encode("latin-1")
    return next((value for key, value in scope["headers"] if key == wanted and value), None)


@dataclass
class PublicOperation(BearerOperation):
    """The OpenAPI operation of an endpoint that needs no token (pass it as `operation_class`).

    The JWT auth declares the bearer scheme API-wide, and Litestar leaves a handler's empty `security`
    out of the document, so public endpoints would be documented as needing a token; an explicit
    empty list overrides the API-wide requirement.
    """

    def __post_init__(self) -> None:
        super().__post_init__()
        self.security = []


@dataclass
class OptionalAuthOperation(BearerOperation):
    """The OpenAPI operation of an `auth_optional` endpoint: anonymous, or with a valid bearer token.

    The empty requirement `{}` beside the bearer one is how OpenAPI says the token may be left out.
    """

    def __post_init__(self) -> None:
        super().__post_init__()
        self.security = [{}, {BEARER_SCHEME: []}]


def optional_user(request: Request[Any, Any, Any]) -> Any:
    """The signed-in user of a request to an `auth_optional` route: None when no token was sent."""
    return request.scope.get("user")
