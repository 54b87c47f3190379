"""Accounts and authentication: registration, login and logout, and each user's own profile."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Annotated, Any

import msgspec
import strawberry
from email_validator import EmailNotValidError, validate_email
from litestar import Request, Router, delete, get, patch, post
from litestar.connection import ASGIConnection
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody
from litestar.security.jwt import JWTAuth, Token
from piccolo.columns import UUID, Integer, Text, Timestamptz, Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.engine.base import Engine
from piccolo.table import Table

from core import text
from core.auth import (
    AccountChangeUnavailable,
    LoginRateLimiter,
    OptionalBearerAuthMiddleware,
    Passwords,
    PublicOperation,
    RevocationUnavailable,
    TokenRevocations,
)
from core.cache import Cache, ReadThroughCache
from core.database import is_unique_violation, write_transaction
from core.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    InvalidValue,
    NotFound,
    TooManyRequests,
    Unauthorized,
    problem_responses,
)
from core.graphql import Info, converted, parsed_id
from core.openapi import BEARER_SCHEME, BearerOperation
from core.settings import Settings

logger = logging.getLogger("clipdex.auth")

# ---------------------------------------------------------------- tables


class User(Table, tablename="users"):
    id = UUID(primary_key=True)
    email = Varchar(length=254, unique=True)
    username = Varchar(length=30)
    # Lower-cased username: "Alice" and "alice" are one account name, whatever case it is shown in.
    username_key = Varchar(length=30, unique=True)
    display_name = Varchar(length=50, default="")
    bio = Text(default="")
    password_hash = Varchar(length=255)
    # Bumped on password change: every token issued before it carries an older number and is refused.
    token_version = Integer(default=0)
    created_at = Timestamptz(default=TimestamptzNow())


# ---------------------------------------------------------------- schemas

USERNAME_PATTERN = text.described_pattern(
    text.whole_value("[A-Za-z0-9_-]+"), "must be made of letters, digits, _ and - only"
)
Username = Annotated[
    str,
    text.single_line(
        min_length=3,
        max_length=30,
        pattern=USERNAME_PATTERN,
        description="3-30 letters, digits, `_` or `-`; unique regardless of case.",
        examples=["ada_l"],
    ),
]
# Something besides the digits 0-9 in it, and no control character.
PASSWORD_PATTERN = text.described_pattern(
    # Leading digits, then the first other character: no lookahead (see text._text).
    text.whole_value(f"[0-9]*[^0-9{text.CONTROL}][^{text.CONTROL}]*"),
    "must not be all digits or contain control characters",
)
Password = Annotated[
    str,
    text.single_line(
        min_length=8,
        max_length=256,
        pattern=PASSWORD_PATTERN,
        description="At least 8 characters, not all digits, not equal to the username.",
        examples=["correct-horse-battery"],
    ),
]
# A password to check against the account's: any password one could have set fits these bounds.
GivenPassword = Annotated[str, text.single_line(min_length=1, max_length=256)]
Email = Annotated[str, text.single_line(max_length=254, examples=["ada@example.com"])]
DisplayName = Annotated[str, text.single_line(max_length=50, examples=["Ada Lovelace"])]
Bio = Annotated[
    str, text.multi_line(max_length=500, examples=["Notes on engines, analytical and otherwise."])
]


class UserRegister(msgspec.Struct, forbid_unknown_fields=True):
    email: Email
    username: Username
    password: Password


class UserLogin(msgspec.Struct, forbid_unknown_fields=True):
    login: Annotated[
        str,
        text.single_line(min_length=1, max_length=254, description="Email or username.", examples=["ada_l"]),
    ]
    password: GivenPassword


class AccessToken(msgspec.Struct):
    access_token: str
    expires_in: Annotated[int, msgspec.Meta(description="Seconds until the token expires.")]
    token_type: str = "bearer"


class UserUpdate(msgspec.Struct, forbid_unknown_fields=True):
    username: Username | msgspec.UnsetType = msgspec.UNSET
    display_name: DisplayName | msgspec.UnsetType = msgspec.UNSET
    bio: Bio | msgspec.UnsetType = msgspec.UNSET
    password: Password | msgspec.UnsetType = msgspec.UNSET
    current_password: (
        Annotated[str, text.single_line(max_length=256, description="Required when changing the password.")]
        | msgspec.UnsetType
    ) = msgspec.UNSET


class AccountDeletion(msgspec.Struct, forbid_unknown_fields=True):
    password: GivenPassword


class UserPublic(msgspec.Struct):
    id: uuid.UUID
    username: str
    display_name: str
    bio: str
    joined_at: datetime


class UserPrivate(msgspec.Struct):
    """The signed-in user's own view of their account."""

    id: uuid.UUID
    email: str
    username: str
    display_name: str
    bio: str
    joined_at: datetime


class SignedInUser(msgspec.Struct, frozen=True):
    """`request.user` of a request with a valid token: the account's row without its password hash.

    What handlers read of a `User` (id, email, names, bio, created_at, token_version), kept in the
    cache (see SignedInUsers) so that a request with a token reads no database row.
    """

    id: uuid.UUID
    email: str
    username: str
    display_name: str
    bio: str
    created_at: datetime
    token_version: int


def public_view(user: User) -> UserPublic:
    return UserPublic(user.id, user.username, user.display_name, user.bio, user.created_at)


def private_view(user: User | SignedInUser) -> UserPrivate:
    return UserPrivate(user.id, user.email, user.username, user.display_name, user.bio, user.created_at)


# ---------------------------------------------------------------- rules


def normalise_email(raw: str) -> str:
    try:
        return validate_email(raw, check_deliverability=False).normalized.lower()
    except EmailNotValidError as exc:
        raise InvalidInput("email", str(exc)) from None


def check_password_rules(password: str, username: str) -> None:
    if password.lower() == username.lower():
        raise InvalidInput("password", "must not be the username")


async def _raise_conflict_for(email: str | None, username: str | None, *, other_than: Any = None) -> None:
    """Raise 409 naming the field whose value another account already holds."""
    for field, column, value in (("email", User.email, email), ("username", User.username_key, username)):
        if value is None:
            continue
        query = User.exists().where(column == value)
        if other_than is not None:
            query = query.where(User.id != other_than)
        if await query:
            raise Conflict(field, f"That {field} is already taken.")


async def register_user(data: UserRegister, passwords: Passwords) -> User:
    email = normalise_email(data.email)
    check_password_rules(data.password, data.username)
    await _raise_conflict_for(email, data.username.lower())
    user = User(
        email=email,
        username=data.username,
        username_key=data.username.lower(),
        password_hash=await passwords.hash(data.password),
    )
    try:
        await user.save()
    except Exception as exc:
        if not is_unique_violation(exc):
            raise
        # Someone else took the name between our check and our insert.
        await _raise_conflict_for(email, data.username.lower())
        raise
    return user


async def find_by_login(login: str) -> User | None:
    column, value = (
        (User.email, login.strip().lower()) if "@" in login else (User.username_key, login.lower())
    )
    return await User.objects().where(column == value).first()


async def update_user(
    user: User | SignedInUser,
    data: UserUpdate,
    engine: Engine,
    passwords: Passwords,
    signed_in: SignedInUsers,
) -> User:
    """Apply a profile or password change; a password change signs out every token of the account."""
    # Read again: the signed-in user comes from the cache, without the password hash.
    current = await User.objects().where(User.id == user.id).first()
    if current is None:
        raise Unauthorized()  # deleted while this request was under way
    user = current
    changes: dict[Any, Any] = {}
    if data.username is not msgspec.UNSET:
        await _raise_conflict_for(None, data.username.lower(), other_than=user.id)
        changes |= {User.username: data.username, User.username_key: data.username.lower()}
    if data.display_name is not msgspec.UNSET:
        changes[User.display_name] = data.display_name.strip()
    if data.bio is not msgspec.UNSET:
        changes[User.bio] = data.bio.strip()
    if data.password is not msgspec.UNSET:
        if data.current_password is msgspec.UNSET:
            raise InvalidInput("current_password", "is required to change the password")
        if not await passwords.verify(user.password_hash, data.current_password):
            raise InvalidInput("current_password", "does not match the current password")
        check_password_rules(data.password, data.username or user.username)
        changes[User.password_hash] = await passwords.hash(data.password)
    if not changes:
        return user
    signs_out = User.password_hash in changes
    if signs_out:
        changes[User.token_version] = User.token_version + 1
    # Only a change that signs tokens out must reach every worker before it is made.
    async with signed_in.changing(user.id, signs_out=signs_out), write_transaction(engine):
        try:
            await User.update(changes).where(User.id == user.id)
        except Exception as exc:
            if is_unique_violation(exc):
                raise Conflict("username", "That username is already taken.") from None
            raise
    return await User.objects().where(User.id == user.id).first()


AccountRemoval = Callable[[uuid.UUID], Awaitable[None]]
"""Removes an account and everything it owns. The features that own rows supply it (app.py wires the
likes feature's, which also corrects like counts and caches); the database cascade alone would not."""


async def delete_own_account(
    user: User | SignedInUser,
    data: AccountDeletion,
    passwords: Passwords,
    remove_account: AccountRemoval,
    signed_in: SignedInUsers,
) -> None:
    # The password hash is read here: the signed-in user comes from the cache, without it.
    row = await User.select(User.password_hash).where(User.id == user.id).first()
    if not await passwords.verify(row["password_hash"] if row else None, data.password) or row is None:
        raise InvalidInput("password", "does not match the current password")
    async with signed_in.changing(user.id, signs_out=True):
        await remove_account(user.id)


async def users_by_ids(user_ids: list[uuid.UUID]) -> list[User | None]:
    """These users, in the order of the ids (None for an id with no user): one query for many owners."""
    rows = await User.objects().where(User.id.is_in(list(set(user_ids)))) if user_ids else []
    found = {row.id: row for row in rows}
    return [found.get(user_id) for user_id in user_ids]


# ---------------------------------------------------------------- authentication

_SIGNED_IN_COLUMNS = (
    User.id,
    User.email,
    User.username,
    User.display_name,
    User.bio,
    User.created_at,
    User.token_version,
)
_snapshot_decoder = msgspec.msgpack.Decoder(SignedInUser)


class SignedInUsers:
    """The accounts behind tokens, read from the shared cache so that a request with a token needs no
    database round trip, yet an outdated token is refused on every worker from the request after the
    change on.

    An account's snapshot lives at `auth:user:<id>`, stamped with the account's generation, which
    counts its changes twice each (ReadThroughCache's generation of `user:<id>`). A change makes it
    odd before it writes the database and even again after the commit (`changing`). While it is odd,
    readers go to the database and store nothing, so a reader that read the row just before a commit
    can never leave it for later requests: by the time it stores, the generation has moved on and its
    stamp is accepted no more. A closing increment that fails is made again once the cache answers
    (until then this process reads around the account, see ReadThroughCache.bump); left odd, the
    account is read from the database, as it was before this cache. A change that signs tokens out (a
    password change, a deletion) is refused when the cache cannot be told first: once the cache
    answered again, the snapshot from before the change would vouch for the old tokens on the other
    workers. While the cache is down every worker reads the database instead.

    Generations have no expiry and snapshots do, so a cache that evicts only expiring keys (or the
    least recently used: a generation is read with every snapshot under it) drops a snapshot before
    its generation. The generation, the snapshot and the token's revocation are read in one round
    trip.
    """

    def __init__(self, cache: Cache, revocations: TokenRevocations, ttl_seconds: int) -> None:
        self._cache = cache
        self._entries = ReadThroughCache(cache)
        self._revocations = revocations
        self._ttl_seconds = ttl_seconds

    async def for_token(self, token: Token) -> SignedInUser | None:
        """The account a token signs in, as it is now; None when the token is refused (revoked, no
        token id, not an account's, an account deleted or changed since the token was issued)."""
        try:
            user_id = uuid.UUID(token.sub)
        except ValueError:
            return None
        if not isinstance(token.jti, str):
            return None  # a token that cannot be revoked is not one of ours
        account = str(user_id)  # spelt once: a UUID's str() is a good part of a cached read's cost
        found = await self._entries.look_up(
            f"auth:user:{account}", (f"user:{account}",), (self._revocations.key(token.jti),)
        )
        # A revocation that cannot be read (the cache is down) is let through: tokens are short-lived,
        # and a password change or deletion still refuses old ones through the database.
        if found.others[0] is not None:
            return None
        # Odd: a change is under way, or ended without its closing increment.
        stamp = None if found.generations is None or found.generations[0] % 2 else found.stamp
        if stamp is not None and found.value is not None:
            user = _snapshot_decoder.decode(found.value)
        else:
            user = await self._from_database(user_id)
            if user is not None and stamp is not None:
                await self._entries.store(
                    f"auth:user:{account}", stamp, msgspec.msgpack.encode(user), self._ttl_seconds
                )
        return user if user is not None and token.extras.get("ver") == user.token_version else None

    @staticmethod
    async def _from_database(user_id: uuid.UUID) -> SignedInUser | None:
        row = await User.select(*_SIGNED_IN_COLUMNS).where(User.id == user_id).first()
        if row is None:
            return None
        return SignedInUser(
            id=uuid.UUID(str(row["id"])),
            email=row["email"],
            username=row["username"],
            display_name=row["display_name"],
            bio=row["bio"],
            created_at=row["created_at"],
            token_version=row["token_version"],
        )

    @asynccontextmanager
    async def changing(self, user_id: uuid.UUID, *, signs_out: bool) -> AsyncIterator[None]:
        """Around a change to the account's row (its commit inside): every later request reads it anew.

        Raises AccountChangeUnavailable, before anything is changed, when the change signs tokens out
        and the cache cannot be told.
        """
        name = f"user:{user_id}"
        began = False
        try:
            if await self._cache.incr(f"gen:{name}") % 2 == 0:
                await self._cache.incr(f"gen:{name}")  # a change before ended without its closing increment
            began = True
        except Exception as exc:
            if signs_out:
                logger.warning("cache unavailable: a change signing every token out refused", exc_info=True)
                raise AccountChangeUnavailable() from exc
            logger.warning("cache unavailable: profile change not announced before it was made")
        try:
            yield
        finally:
            # Odd to even; or, when the opening increment failed, even to the next even one.
            await self._entries.bump(*([name] if began else [name, name]))


class TokenIssuer:
    """Issues access tokens that name the user, a unique id (for revocation) and the token version."""

    def __init__(self, auth: JWTAuth[Any, Token], ttl_seconds: int) -> None:
        self._auth = auth
        self._ttl_seconds = ttl_seconds

    def issue(self, user: User) -> AccessToken:
        token = self._auth.create_token(
            identifier=str(user.id),
            token_unique_jwt_id=uuid.uuid4().hex,
            token_extras={"ver": user.token_version},
        )
        return AccessToken(access_token=token, expires_in=self._ttl_seconds)


async def log_in(
    data: UserLogin,
    client: str,
    token_issuer: TokenIssuer,
    login_limiter: LoginRateLimiter,
    passwords: Passwords,
) -> AccessToken:
    """A token for these credentials, within the login rate limit of the client's address and the account."""
    user = await find_by_login(data.login)
    # Counted per account, not per spelling of the login: an account's email and username share one
    # allowance. Unknown logins are counted by their text, under another prefix so none can pose as an id.
    account = f"account:{user.id}" if user else f"login:{data.login.strip().lower()}"
    await login_limiter.hit(f"address:{client}", account)
    if not await passwords.verify(user.password_hash if user else None, data.password) or user is None:
        raise Unauthorized("Unknown login or wrong password.")
    return token_issuer.issue(user)


async def sign_out(token: Token, revocations: TokenRevocations) -> None:
    """Revoke this token until it would have expired anyway."""
    if isinstance(token.jti, str):
        await revocations.revoke(token.jti, token.exp.timestamp())


def build_user_auth(settings: Settings, signed_in: SignedInUsers) -> JWTAuth[SignedInUser, Token]:
    """Litestar's JWT bearer auth, resolving tokens to users and honouring revocations."""

    async def retrieve_user(token: Token, _: ASGIConnection[Any, Any, Any, Any]) -> SignedInUser | None:
        return await signed_in.for_token(token)

    return JWTAuth[SignedInUser, Token](
        retrieve_user_handler=retrieve_user,
        authentication_middleware_class=OptionalBearerAuthMiddleware,
        token_secret=settings.secret_key,
        default_token_expiration=timedelta(seconds=settings.access_token_ttl_seconds),
        exclude=["^/schema", "^/health$", "^/ready$", "^/metrics$"],
        description="A bearer token from `POST /api/v1/auth/login`.",
        openapi_security_scheme_name=BEARER_SCHEME,
    )


# ---------------------------------------------------------------- handlers

_PUBLIC = {"exclude_from_auth": True}


@post(
    "/auth/register",
    opt=_PUBLIC,
    security=[],
    operation_class=PublicOperation,
    summary="Create an account",
    responses=problem_responses(
        InvalidValue("username", "must be at least 3 characters"),
        InvalidValue("password", "must not be all digits or contain control characters"),
        Conflict("email", "That email is already taken."),
        Conflict("username", "That username is already taken."),
        413,
        415,
        503,
    ),
)
async def register(data: JSONBody[UserRegister], passwords: NamedDependency[Passwords]) -> UserPrivate:
    return private_view(await register_user(data, passwords))


@post(
    "/auth/login",
    opt=_PUBLIC,
    security=[],
    operation_class=PublicOperation,
    status_code=200,
    summary="Exchange credentials for a bearer token",
    responses=problem_responses(
        InvalidValue("login", "is required"),
        Unauthorized("Unknown login or wrong password."),
        413,
        415,
        TooManyRequests(60, "Too many login attempts; try again later."),
        503,
    ),
)
async def login(
    request: Request[Any, Any, Any],
    data: JSONBody[UserLogin],
    token_issuer: NamedDependency[TokenIssuer],
    login_limiter: NamedDependency[LoginRateLimiter],
    passwords: NamedDependency[Passwords],
) -> AccessToken:
    client = request.client.host if request.client else "unknown"
    return await log_in(data, client, token_issuer, login_limiter, passwords)


@post(
    "/auth/logout",
    status_code=204,
    summary="Revoke the token of this request",
    operation_class=BearerOperation,
    responses=problem_responses(401, 415, RevocationUnavailable(), 503),
)
async def logout(request: Request[User, Token, Any], revocations: NamedDependency[TokenRevocations]) -> None:
    await sign_out(request.auth, revocations)


@get(
    "/users/me", summary="My account", operation_class=BearerOperation, responses=problem_responses(401, 503)
)
async def read_me(request: Request[SignedInUser, Token, Any]) -> UserPrivate:
    return private_view(request.user)


@patch(
    "/users/me",
    summary="Change my profile or password",
    operation_class=BearerOperation,
    responses=problem_responses(
        InvalidInput("current_password", "is required to change the password"),
        401,
        Conflict("username", "That username is already taken."),
        413,
        415,
        AccountChangeUnavailable(),
        503,
    ),
)
async def update_me(
    request: Request[SignedInUser, Token, Any],
    data: JSONBody[UserUpdate],
    db: NamedDependency[Engine],
    passwords: NamedDependency[Passwords],
    signed_in_users: NamedDependency[SignedInUsers],
) -> UserPrivate:
    """Changing the password needs `current_password`, and signs out every session, this one included."""
    return private_view(await update_user(request.user, data, db, passwords, signed_in_users))


@delete(
    "/users/me",
    summary="Delete my account and everything it owns",
    operation_class=BearerOperation,
    responses=problem_responses(
        InvalidInput("password", "does not match the current password"),
        401,
        413,
        415,
        AccountChangeUnavailable(),
        503,
    ),
)
async def delete_me(
    request: Request[SignedInUser, Token, Any],
    data: JSONBody[AccountDeletion],
    passwords: NamedDependency[Passwords],
    remove_account: NamedDependency[AccountRemoval],
    signed_in_users: NamedDependency[SignedInUsers],
) -> None:
    await delete_own_account(request.user, data, passwords, remove_account, signed_in_users)


@get(
    "/users/{user_id:uuid}",
    opt=_PUBLIC,
    security=[],
    operation_class=PublicOperation,
    summary="A user's public profile",
    responses=problem_responses(NotFound("No user with that id."), 503),
)
async def read_user(user_id: FromPath[uuid.UUID]) -> UserPublic:
    user = await User.objects().where(User.id == user_id).first()
    if user is None:
        raise NotFound("No user with that id.")
    return public_view(user)


# ---------------------------------------------------------------- GraphQL

# A user's videos and likes are the videos and likes features': they supply them as the `user_videos`
# and `user_likes` services (app.py wires them, as it wires AccountRemoval), and videos their type by name.
VideosPage = Annotated["VideoConnection", strawberry.lazy("features.videos.videos")]  # noqa: F821


@strawberry.type(name="User")
class UserNode:
    id: strawberry.ID
    username: str
    display_name: str
    bio: str
    joined_at: datetime
    own_email: strawberry.Private[str]

    @classmethod
    def of(cls, user: User | SignedInUser) -> UserNode:
        return cls(
            id=strawberry.ID(str(user.id)),
            username=user.username,
            display_name=user.display_name,
            bio=user.bio,
            joined_at=user.created_at,
            own_email=user.email,
        )

    def _is_viewer(self, info: Info) -> bool:
        return info.context.viewer is not None and str(info.context.viewer.id) == self.id

    @strawberry.field(description="Only on the signed-in user's own account; null elsewhere.")
    def email(self, info: Info) -> str | None:
        return self.own_email if self._is_viewer(info) else None

    @strawberry.field(description="Their public videos, newest first (as GET /users/{id}/videos).")
    async def videos(self, info: Info, first: int = 20, after: str | None = None) -> VideosPage:
        return await info.context.service("user_videos")(info, uuid.UUID(self.id), first, after)

    @strawberry.field(description="Videos they liked, newest like first: on `me` only (an error elsewhere).")
    async def likes(self, info: Info, first: int = 20, after: str | None = None) -> VideosPage | None:
        if not self._is_viewer(info):
            raise Forbidden("Only your own likes can be listed: ask through `me`.")
        return await info.context.service("user_likes")(info, first, after)


@strawberry.type
class AccessTokenNode:
    access_token: str
    expires_in: int = strawberry.field(description="Seconds until the token expires.")
    token_type: str = "bearer"


@strawberry.input
class RegisterInput:
    email: str
    username: str
    password: str


@strawberry.input(description="Only the fields given change; a new password needs currentPassword.")
class ProfileChanges:
    username: str | None = strawberry.UNSET
    display_name: str | None = strawberry.UNSET
    bio: str | None = strawberry.UNSET
    password: str | None = strawberry.UNSET
    current_password: str | None = strawberry.UNSET


@strawberry.type
class UserQueries:
    @strawberry.field(description="The signed-in user; null without a token.")
    def me(self, info: Info) -> UserNode | None:
        return UserNode.of(info.context.viewer) if info.context.viewer is not None else None

    @strawberry.field(description="A user's public profile; null when there is no such user.")
    async def user(self, info: Info, id: strawberry.ID) -> UserNode | None:
        found = await info.context.loader("users.by_id", users_by_ids).load(parsed_id(id))
        return UserNode.of(found) if found is not None else None


@strawberry.type
class UserMutations:
    @strawberry.mutation(description="Create an account (as POST /api/v1/auth/register).")
    async def register(self, info: Info, input: RegisterInput) -> UserNode:
        return UserNode.of(
            await register_user(converted(input, UserRegister), info.context.service("passwords"))
        )

    @strawberry.mutation(description="A bearer token, within the same login rate limit as REST.")
    async def login(self, info: Info, login: str, password: str) -> AccessTokenNode:
        request = info.context.request
        client = request.client.host if request.client else "unknown"
        token = await log_in(
            converted({"login": login, "password": password}, UserLogin),
            client,
            info.context.service("token_issuer"),
            info.context.service("login_limiter"),
            info.context.service("passwords"),
        )
        return AccessTokenNode(access_token=token.access_token, expires_in=token.expires_in)

    @strawberry.mutation(description="Revoke the token of this request. True once it is refused.")
    async def logout(self, info: Info) -> bool:
        info.context.signed_in()
        await sign_out(info.context.request.auth, info.context.service("revocations"))
        return True

    @strawberry.mutation(
        description="Change my profile or password (a new password signs out every session)."
    )
    async def update_me(self, info: Info, input: ProfileChanges) -> UserNode:
        data = converted(input, UserUpdate)
        user = await update_user(
            info.context.signed_in(),
            data,
            info.context.service("db"),
            info.context.service("passwords"),
            info.context.service("signed_in_users"),
        )
        return UserNode.of(user)

    @strawberry.mutation(description="Delete my account and everything it owns. True once it is gone.")
    async def delete_me(self, info: Info, password: str) -> bool:
        data = converted({"password": password}, AccountDeletion)
        await delete_own_account(
            info.context.signed_in(),
            data,
            info.context.service("passwords"),
            info.context.service("remove_account"),
            info.context.service("signed_in_users"),
        )
        return True


router = Router(
    path="/api/v1",
    route_handlers=[register, login, logout, read_me, update_me, delete_me, read_user],
    tags=["users"],
)
