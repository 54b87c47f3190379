"""The users feature through its HTTP API: registration, login, tokens, profiles, account deletion.

Every test runs against a real app (lifespan included) on SQLite and, when configured, PostgreSQL.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from typing import Any

import httpx
import jwt
import pytest
from litestar.testing import AsyncTestClient

from app import create_app
from core.cache import Cache, InMemoryCache
from tests.conftest import Account

REGISTER = "/api/v1/auth/register"
LOGIN = "/api/v1/auth/login"
LOGOUT = "/api/v1/auth/logout"
ME = "/api/v1/users/me"
PROBLEM_JSON = "application/problem+json"
PUBLIC_PROFILE_FIELDS = {"id", "username", "display_name", "bio", "joined_at"}
OWN_ACCOUNT_FIELDS = PUBLIC_PROFILE_FIELDS | {"email"}


def new_name(prefix: str = "u") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def registration(**overrides: str) -> dict[str, str]:
    username = overrides.pop("username", None) or new_name()
    return {
        "email": f"{username.lower()}@example.com",
        "username": username,
        "password": "correct-horse-battery",
        **overrides,
    }


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON), response.headers
    body = response.json()
    assert body["status"] == status
    assert body["title"]
    assert body["request_id"] == response.headers["x-request-id"]
    return body


def assert_field_error(response: httpx.Response, field: str, status: int = 400) -> dict[str, Any]:
    body = assert_problem(response, status)
    assert body["errors"], body
    assert body["errors"][0]["field"] == field, body
    return body


def assert_unauthorized(response: httpx.Response) -> None:
    assert_problem(response, 401)
    assert response.headers["www-authenticate"].lower().startswith("bearer")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def log_in(http: httpx.AsyncClient, login: str, password: str) -> httpx.Response:
    return await http.post(LOGIN, json={"login": login, "password": password})


SIMULATED_ADDRESS = "x-test-client-address"


def simulate_client_addresses(client: httpx.AsyncClient) -> None:
    """Let requests to this running app say which address they come from.

    The test client sends every request from one address; this sets the ASGI scope's `client` from a
    test-only header instead, as a server would from the connection's peer.
    """
    app = client.app  # type: ignore[attr-defined]
    inner = app.asgi_handler

    async def with_address(scope: Any, receive: Any, send: Any) -> None:
        address = dict(scope.get("headers", ())).get(SIMULATED_ADDRESS.encode())
        if address:
            scope["client"] = (address.decode(), 40000)
        await inner(scope, receive, send)

    app.asgi_handler = with_address


async def log_in_from(http: httpx.AsyncClient, address: str, login: str, password: str) -> httpx.Response:
    return await http.post(
        LOGIN, json={"login": login, "password": password}, headers={SIMULATED_ADDRESS: address}
    )


# ---------------------------------------------------------------- registration


async def test_register_returns_the_new_account_without_secrets(client):
    data = registration(username="Ada_Lovelace", email="Ada@Example.COM")

    response = await client.post(REGISTER, json=data)

    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == OWN_ACCOUNT_FIELDS
    assert body["username"] == "Ada_Lovelace"
    assert body["email"] == "ada@example.com"
    assert uuid.UUID(body["id"])
    assert "correct-horse-battery" not in response.text
    assert "argon2" not in response.text
    profile = await client.get(f"/api/v1/users/{body['id']}")
    assert profile.json()["joined_at"] == body["joined_at"]


@pytest.mark.parametrize(
    ("field", "second"),
    [
        ("email", {"email": "TAKEN@example.com"}),
        ("username", {"username": "Taken_Name"}),
        ("username", {"username": "taken_name"}),
    ],
)
async def test_register_refuses_a_taken_email_or_username_whatever_its_case(client, field, second):
    first = registration(username="Taken_Name", email="taken@example.com")
    assert (await client.post(REGISTER, json=first)).status_code == 201

    response = await client.post(REGISTER, json=registration(**second))

    body = assert_field_error(response, field, status=409)
    assert field in body["detail"]


INVALID_REGISTRATIONS = [
    ("email", {"email": "not-an-email"}),
    ("email", {"email": "ada@"}),
    ("username", {"username": "ab"}),
    ("username", {"username": "a" * 31}),
    ("username", {"username": "ada lovelace"}),
    ("username", {"username": "ada!"}),
    ("password", {"password": "short1!"}),
    ("password", {"password": "1234567890"}),
    ("password", {"password": "1234567890\n"}),
    ("password", {"username": "Grace_Hopper", "password": "grace_hopper"}),
]


async def test_register_refuses_invalid_input_naming_the_field(client):
    # One app for all cases: each is refused, so none changes what the next one meets.
    for field, overrides in INVALID_REGISTRATIONS:
        response = await client.post(REGISTER, json=registration(**overrides))

        assert_field_error(response, field)


# Single-line fields refuse every C0 control character and DEL: PostgreSQL text cannot hold NUL, and
# the others have no place in a name, an address or a password. A trailing newline included, which a
# regex's `$` would let through.
SINGLE_LINE_BREAKERS = ["a\x00b", "a\x01", "a\tb", "a\nb", "ab\n", "a\rb", "a\x1b[2J", "a\x7f"]


async def test_register_refuses_control_characters_naming_the_field(client):
    for breaker in SINGLE_LINE_BREAKERS:
        for field, value in (
            ("email", f"ada{breaker}@example.com"),
            ("username", f"ada_{breaker}"),
            ("password", f"correct-horse-{breaker}"),
        ):
            fixed = {"email": "ada@example.com", "username": "ada_l"}  # the rest valid
            response = await client.post(REGISTER, json=registration(**{**fixed, field: value}))

            body = assert_field_error(response, field)
            assert "control character" in body["errors"][0]["message"] or field == "username", body


async def test_login_refuses_control_characters_before_looking_anything_up(client, sign_up):
    account = await sign_up()

    for field, change in (
        ("login", {"login": f"{account.username}\x00"}),
        ("login", {"login": f"{account.email}\n"}),
        ("password", {"login": account.username, "password": f"{account.password}\x00"}),
    ):
        response = await client.post(LOGIN, json={"login": account.username, "password": "x", **change})

        assert_field_error(response, field)


async def test_register_accepts_the_username_boundaries(client):
    for username in ("abc", "a" * 30, "A-b_9"):
        response = await client.post(REGISTER, json=registration(username=username))
        assert response.status_code == 201, response.text


async def test_register_refuses_a_missing_field(client):
    data = registration()
    del data["password"]

    response = await client.post(REGISTER, json=data)

    assert_field_error(response, "password")


async def test_register_refuses_an_unknown_field(client):
    response = await client.post(REGISTER, json={**registration(), "is_admin": True})

    body = assert_problem(response, 400)
    assert "is_admin" in body["detail"]


async def test_register_refuses_a_body_that_is_not_json(client):
    response = await client.post(
        REGISTER, content=b"email=a@example.com&username=abc", headers={"content-type": "text/plain"}
    )

    assert_problem(response, 415)


async def test_register_refuses_a_body_over_the_size_limit(serve):
    async with serve(max_request_body_bytes=2048) as client:
        small = await client.post(REGISTER, json=registration(bio_padding="x" * 10))
        large = await client.post(REGISTER, json=registration(bio_padding="x" * 4096))

    assert small.status_code == 400  # under the limit it gets as far as validation
    assert_problem(large, 413)


# ---------------------------------------------------------------- login


async def test_login_by_username_or_email_gives_a_bearer_token(client, make_settings):
    data = registration(username="Ada_L")
    await client.post(REGISTER, json=data)

    for login in ("Ada_L", "ada_l", "ada_l@example.com", "ADA_L@EXAMPLE.COM"):
        response = await log_in(client, login, data["password"])
        assert response.status_code == 200, (login, response.text)
        body = response.json()
        assert body["token_type"] == "bearer"
        assert body["expires_in"] == make_settings().access_token_ttl_seconds
        claims = jwt.decode(body["access_token"], options={"verify_signature": False})
        assert claims["exp"] - claims["iat"] == pytest.approx(body["expires_in"], abs=1)
        assert claims["jti"]  # what logout revokes
        me = await client.get(ME, headers=bearer(body["access_token"]))
        assert me.json()["username"] == "Ada_L"


async def test_login_failures_do_not_tell_unknown_accounts_from_wrong_passwords(client, sign_up):
    account = await sign_up()

    wrong_password = await log_in(client, account.username, "not-the-password")
    unknown_user = await log_in(client, "nobody_here", "not-the-password")
    unknown_email = await log_in(client, "nobody@example.com", "not-the-password")

    def comparable(response: httpx.Response) -> tuple[int, bytes, dict[str, str]]:
        # Byte for byte, but for the request id (which differs per request by design).
        body = response.content.replace(response.headers["x-request-id"].encode(), b"<id>")
        headers = {k: v for k, v in response.headers.items() if k != "x-request-id"}
        return response.status_code, body, headers

    for response in (wrong_password, unknown_user, unknown_email):
        assert_unauthorized(response)
    assert comparable(wrong_password) == comparable(unknown_user) == comparable(unknown_email)


async def test_login_refuses_an_empty_login(client):
    response = await log_in(client, "", "whatever-password")

    assert_field_error(response, "login")


async def test_login_attempts_per_account_are_limited(serve):
    async with serve(login_rate_limit=3, login_rate_window_seconds=60) as client:
        data = registration()
        assert (await client.post(REGISTER, json=data)).status_code == 201
        # Each attempt comes from another address, so only the account's own limit can apply; using
        # the email and the username in turn must not double the allowance.
        logins = [data["username"], data["email"], data["username"], data["email"]]
        simulate_client_addresses(client)
        responses = [
            await log_in_from(client, f"198.51.100.{number}", login, "wrong-password")
            for number, login in enumerate(logins)
        ]
        correct_password = await log_in_from(client, "198.51.100.200", data["username"], data["password"])

    assert [r.status_code for r in responses] == [401, 401, 401, 429]
    assert_problem(responses[3], 429)
    assert 1 <= int(responses[3].headers["retry-after"]) <= 60
    # The limit holds even for the right password: guessing on is pointless.
    assert correct_password.status_code == 429


async def test_login_attempts_per_address_are_limited_across_accounts(serve):
    async with serve(login_rate_limit=3, login_rate_window_seconds=60) as client:
        statuses = [(await log_in(client, new_name(), "wrong-password")).status_code for _ in range(4)]
        simulate_client_addresses(client)
        elsewhere = await log_in_from(client, "203.0.113.9", new_name(), "wrong-password")

    assert statuses == [401, 401, 401, 429]
    assert elsewhere.status_code == 401  # another address has its own allowance


async def test_login_limit_resets_when_retry_after_has_passed(serve):
    async with serve(login_rate_limit=3, login_rate_window_seconds=2) as client:
        data = registration()
        assert (await client.post(REGISTER, json=data)).status_code == 201
        assert (await log_in(client, data["username"], "wrong-password")).status_code == 401
        # Part of the window goes by before the limit is reached, so Retry-After is not a whole
        # window: a client that waits exactly as long as told must get in.
        await asyncio.sleep(0.7)
        assert (await log_in(client, data["username"], "wrong-password")).status_code == 401
        assert (await log_in(client, data["username"], "wrong-password")).status_code == 401
        limited = await log_in(client, data["username"], data["password"])
        assert_problem(limited, 429)

        await asyncio.sleep(float(limited.headers["retry-after"]))
        after = await log_in(client, data["username"], data["password"])

    assert after.status_code == 200, after.text


# ---------------------------------------------------------------- tokens and logout


async def test_logout_revokes_only_that_token(client, sign_up):
    account = await sign_up()
    second = (await log_in(client, account.username, account.password)).json()["access_token"]

    response = await client.post(LOGOUT, headers=account.headers)

    assert response.status_code == 204
    assert response.content == b""
    assert_unauthorized(await client.get(ME, headers=account.headers))
    assert_unauthorized(await client.post(LOGOUT, headers=account.headers))
    assert (await client.get(ME, headers=bearer(second))).status_code == 200


def _resigned(token: str, secret: str, **claims: Any) -> str:
    payload = jwt.decode(token, secret, algorithms=["HS256"])
    return jwt.encode({**payload, **claims}, secret, algorithm="HS256")


async def test_an_expired_token_is_refused(client, sign_up, make_settings):
    account = await sign_up()
    secret = make_settings().secret_key
    now = int(time.time())

    expired = _resigned(account.token, secret, iat=now - 7200, exp=now - 3600)
    # The same forgery with a live expiry works, so it is the expiry alone that is refused.
    still_valid = _resigned(account.token, secret, iat=now - 60, exp=now + 600)

    assert_unauthorized(await client.get(ME, headers=bearer(expired)))
    assert (await client.get(ME, headers=bearer(still_valid))).status_code == 200


async def test_a_tampered_token_is_refused(client, sign_up):
    account = await sign_up()
    other = await sign_up()
    header, payload, signature = account.token.split(".")
    middle = len(signature) // 2
    flipped = signature[:middle] + ("A" if signature[middle] != "A" else "B") + signature[middle + 1 :]
    # Another user's claims under this token's signature.
    borrowed_payload = other.token.split(".")[1]

    for token in (f"{header}.{payload}.{flipped}", f"{header}.{borrowed_payload}.{signature}"):
        assert_unauthorized(await client.get(ME, headers=bearer(token)))


async def test_a_token_signed_with_another_key_is_refused(client, sign_up):
    account = await sign_up()
    payload = jwt.decode(account.token, options={"verify_signature": False})

    forged = jwt.encode(payload, "someone-elses-secret-key-of-some-length", algorithm="HS256")

    assert_unauthorized(await client.get(ME, headers=bearer(forged)))


async def test_a_missing_or_malformed_token_is_refused(client):
    for headers in (
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer not-a-jwt"},
        {"Authorization": "Bearer a.b.c"},
        {"Authorization": "Basic YWRhOnNlY3JldA=="},
    ):
        assert_unauthorized(await client.get(ME, headers=headers))


# ---------------------------------------------------------------- my account


async def test_read_me(client, sign_up):
    account = await sign_up()

    response = await client.get(ME, headers=account.headers)

    assert response.status_code == 200
    body = response.json()
    assert set(body) == OWN_ACCOUNT_FIELDS
    assert (body["id"], body["email"], body["username"]) == (account.id, account.email, account.username)


async def test_update_profile_fields(client, sign_up):
    account = await sign_up()
    new_username = new_name("Renamed")

    response = await client.patch(
        ME,
        json={"username": new_username, "display_name": "  Ada Lovelace ", "bio": "Engines."},
        headers=account.headers,
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["username"], body["display_name"], body["bio"]) == (new_username, "Ada Lovelace", "Engines.")
    assert (await client.get(ME, headers=account.headers)).json() == body
    assert (await log_in(client, new_username.lower(), account.password)).status_code == 200
    assert (await log_in(client, account.username, account.password)).status_code == 401


async def test_update_username_to_its_own_name_in_another_case(client, sign_up):
    account = await sign_up()

    response = await client.patch(ME, json={"username": account.username.upper()}, headers=account.headers)

    assert response.status_code == 200, response.text
    assert response.json()["username"] == account.username.upper()


async def test_update_username_to_a_taken_one_conflicts(client, sign_up):
    account = await sign_up()
    other = await sign_up()

    response = await client.patch(ME, json={"username": other.username.upper()}, headers=account.headers)

    assert_field_error(response, "username", status=409)
    assert (await client.get(ME, headers=account.headers)).json()["username"] == account.username


async def test_update_refuses_invalid_values_naming_the_field(client, sign_up):
    account = await sign_up()
    before = (await client.get(ME, headers=account.headers)).json()

    for field, change in (
        ("username", {"username": "no"}),
        ("username", {"username": "no spaces"}),
        ("display_name", {"display_name": "x" * 51}),
        ("bio", {"bio": "x" * 501}),
        ("password", {"password": "short", "current_password": account.password}),
        ("password", {"password": "12345678901", "current_password": account.password}),
    ):
        response = await client.patch(ME, json=change, headers=account.headers)

        assert_field_error(response, field)
    assert (await client.get(ME, headers=account.headers)).json() == before
    assert (await log_in(client, account.username, account.password)).status_code == 200


async def test_profile_text_refuses_control_characters_but_a_bio_keeps_its_lines(client, sign_up):
    account = await sign_up()
    before = (await client.get(ME, headers=account.headers)).json()

    for breaker in SINGLE_LINE_BREAKERS:
        response = await client.patch(ME, json={"display_name": breaker}, headers=account.headers)
        assert_field_error(response, "display_name")
    for breaker in ("a\x00b", "a\x01", "a\x0bb", "a\x0cb", "a\x1b[2J", "a\x7f"):
        response = await client.patch(ME, json={"bio": breaker}, headers=account.headers)
        assert_field_error(response, "bio")
    for field, body in (
        ("password", {"password": "new-pass\x00word", "current_password": account.password}),
        ("current_password", {"password": "a-new-long-secret", "current_password": "x\x00"}),
    ):
        assert_field_error(await client.patch(ME, json=body, headers=account.headers), field)
    assert (await client.get(ME, headers=account.headers)).json() == before

    bio = "Engines.\n\tAnalytical ones,\r\nmostly."
    response = await client.patch(ME, json={"bio": bio}, headers=account.headers)
    assert response.status_code == 200, response.text
    assert (await client.get(ME, headers=account.headers)).json()["bio"] == bio


async def test_update_refuses_a_password_equal_to_the_username(client, sign_up):
    account = await sign_up()

    response = await client.patch(
        ME,
        json={"password": account.username.upper(), "current_password": account.password},
        headers=account.headers,
    )

    assert_field_error(response, "password")


async def test_update_refuses_unknown_fields(client, sign_up):
    account = await sign_up()

    response = await client.patch(ME, json={"email": "new@example.com"}, headers=account.headers)

    assert_problem(response, 400)


async def test_update_needs_a_token(client):
    assert_unauthorized(await client.patch(ME, json={"bio": "hello"}))


@pytest.mark.parametrize("current", [None, "", "not-the-password"])
async def test_password_change_needs_the_current_password(client, sign_up, current):
    account = await sign_up()
    change: dict[str, str] = {"password": "a-brand-new-password"}
    if current is not None:
        change["current_password"] = current

    response = await client.patch(ME, json=change, headers=account.headers)

    assert_field_error(response, "current_password")
    assert (await client.get(ME, headers=account.headers)).status_code == 200
    assert (await log_in(client, account.username, account.password)).status_code == 200


async def test_password_change_signs_out_old_tokens(client, sign_up):
    account = await sign_up()
    other_session = (await log_in(client, account.username, account.password)).json()["access_token"]

    response = await client.patch(
        ME,
        json={"password": "a-brand-new-password", "current_password": account.password},
        headers=account.headers,
    )

    assert response.status_code == 200, response.text
    assert_unauthorized(await client.get(ME, headers=account.headers))
    assert_unauthorized(await client.get(ME, headers=bearer(other_session)))
    assert_unauthorized(await log_in(client, account.username, account.password))
    fresh = await log_in(client, account.username, "a-brand-new-password")
    assert fresh.status_code == 200
    assert (await client.get(ME, headers=bearer(fresh.json()["access_token"]))).status_code == 200


async def delete_account(client: httpx.AsyncClient, account: Account, password: str) -> httpx.Response:
    return await client.request("DELETE", ME, json={"password": password}, headers=account.headers)


async def test_delete_account(client, sign_up):
    account = await sign_up()
    other_session = (await log_in(client, account.username, account.password)).json()["access_token"]
    survivor = await sign_up()

    response = await delete_account(client, account, account.password)

    assert response.status_code == 204, response.text
    assert_unauthorized(await client.get(ME, headers=account.headers))
    assert_unauthorized(await client.get(ME, headers=bearer(other_session)))
    assert_problem(await client.get(f"/api/v1/users/{account.id}"), 404)
    assert_unauthorized(await log_in(client, account.username, account.password))
    assert (await client.get(ME, headers=survivor.headers)).status_code == 200
    # The name and email are free again.
    again = await client.post(
        REGISTER, json={"email": account.email, "username": account.username, "password": account.password}
    )
    assert again.status_code == 201, again.text


@pytest.mark.parametrize("body", [{"password": "not-the-password"}, {}])
async def test_delete_account_needs_the_password(client, sign_up, body):
    account = await sign_up()

    response = await client.request("DELETE", ME, json=body, headers=account.headers)

    assert_field_error(response, "password")
    assert (await client.get(ME, headers=account.headers)).status_code == 200


async def test_delete_account_refuses_control_characters_in_the_password(client, sign_up):
    account = await sign_up()

    response = await client.request("DELETE", ME, json={"password": "\x00"}, headers=account.headers)

    assert_field_error(response, "password")
    assert (await client.get(ME, headers=account.headers)).status_code == 200


async def test_delete_account_needs_a_token(client):
    assert_unauthorized(await client.request("DELETE", ME, json={"password": "whatever-password"}))


# ---------------------------------------------------------------- the signed-in user, cached

# Each change signs out the token it is made with: the very next request must refuse it, though the
# account behind it was read (and cached) a moment before. tests/test_two_workers.py asks the other
# worker.
SIGNING_OUT = {
    "password change": lambda account: (
        "PATCH",
        {"password": "a-brand-new-password", "current_password": account.password},
        200,
    ),
    "account deletion": lambda account: ("DELETE", {"password": account.password}, 204),
    "logout": lambda account: ("POST", None, 204),
}


@pytest.mark.parametrize("change", SIGNING_OUT)
async def test_a_signed_out_token_is_refused_at_once_though_its_account_was_cached(client, sign_up, change):
    account = await sign_up()
    other_session = (await log_in(client, account.username, account.password)).json()["access_token"]
    for token in (account.token, other_session):  # the account is in the cache now
        assert (await client.get(ME, headers=bearer(token))).status_code == 200
    method, body, status = SIGNING_OUT[change](account)
    path = LOGOUT if change == "logout" else ME

    response = await client.request(method, path, json=body, headers=account.headers)

    assert response.status_code == status, response.text
    assert_unauthorized(await client.get(ME, headers=account.headers))
    # A logout revokes one token; the other two changes every token of the account.
    expected = 200 if change == "logout" else 401
    assert (await client.get(ME, headers=bearer(other_session))).status_code == expected


async def test_a_profile_change_is_what_the_next_request_sees(client, sign_up):
    account = await sign_up()
    assert (await client.get(ME, headers=account.headers)).json()["username"] == account.username
    renamed = new_name("renamed")

    changed = await client.patch(ME, json={"username": renamed, "bio": "New."}, headers=account.headers)

    assert changed.status_code == 200, changed.text
    shown = (await client.get(ME, headers=account.headers)).json()
    assert (shown["username"], shown["bio"]) == (renamed, "New.")


async def test_password_changes_in_a_row_each_sign_out_the_tokens_before(client, sign_up):
    account = await sign_up()
    password = account.password
    for number in range(3):
        token = (await log_in(client, account.username, password)).json()["access_token"]
        assert (await client.get(ME, headers=bearer(token))).status_code == 200
        new_password = f"password-number-{number}"
        response = await client.patch(
            ME, json={"password": new_password, "current_password": password}, headers=bearer(token)
        )
        assert response.status_code == 200, response.text
        assert_unauthorized(await client.get(ME, headers=bearer(token)))
        password = new_password


class Outage(Cache):
    """The in-process cache behind a switch: while `down`, every call raises, as a client of a cache
    service that cannot be reached does; switched back, it holds what it held before."""

    def __init__(self) -> None:
        self.inner = InMemoryCache()
        self.down = False

    def _up(self) -> InMemoryCache:
        if self.down:
            raise ConnectionError("cache service unreachable")
        return self.inner

    async def set(self, key: str, value: str | bytes, expires_in: Any = None) -> None:
        await self._up().set(key, value, expires_in)

    async def get(self, key: str, renew_for: Any = None) -> bytes | None:
        return await self._up().get(key, renew_for)

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return await self._up().get_many(keys)

    async def delete(self, key: str) -> None:
        await self._up().delete(key)

    async def delete_all(self) -> None:
        await self._up().delete_all()

    async def exists(self, key: str) -> bool:
        return await self._up().exists(key)

    async def expires_in(self, key: str) -> int | None:
        return await self._up().expires_in(key)

    async def incr(self, key: str, amount: int = 1, *, expires_in: int | None = None) -> int:
        return await self._up().incr(key, amount, expires_in=expires_in)

    async def increment_field(self, key: str, field: str, amount: int = 1) -> int:
        return await self._up().increment_field(key, field, amount)

    async def claim_fields(self, key: str, claim: str) -> dict[str, int]:
        return await self._up().claim_fields(key, claim)

    async def ping(self) -> None:
        await self._up().ping()


async def test_while_the_cache_is_down_outdated_tokens_are_refused_and_sign_outs_wait(
    client, sign_up, make_settings
):
    cache = Outage()
    async with AsyncTestClient(app=create_app(make_settings(), cache=cache)) as http:
        account = await sign_up(on=http)
        changed_before = await sign_up(on=http)
        old_token = changed_before.token
        assert (await http.get(ME, headers=bearer(old_token))).status_code == 200  # cached
        new_password = "a-brand-new-password"
        response = await http.patch(
            ME,
            json={"password": new_password, "current_password": changed_before.password},
            headers=bearer(old_token),
        )
        assert response.status_code == 200, response.text
        fresh = (await log_in(http, changed_before.username, new_password)).json()["access_token"]
        assert (await http.get(ME, headers=account.headers)).status_code == 200  # cached

        cache.down = True
        # The database answers for the account: the token outdated before the outage stays refused.
        assert_unauthorized(await http.get(ME, headers=bearer(old_token)))
        assert (await http.get(ME, headers=bearer(fresh))).status_code == 200
        assert (await http.get(ME, headers=account.headers)).status_code == 200
        # A change that would sign every token out cannot be told to the other workers: refused,
        # nothing changed.
        for method, body in (
            ("PATCH", {"password": "yet-another-password", "current_password": account.password}),
            ("DELETE", {"password": account.password}),
        ):
            refused = await http.request(method, ME, json=body, headers=account.headers)
            problem = assert_problem(refused, 503)
            assert problem["type"] == "urn:clipdex:problem:cache-unavailable", problem
            assert int(refused.headers["retry-after"]) >= 1
        assert (await http.get(ME, headers=account.headers)).status_code == 200
        # A profile change is made, and shown, cache or not.
        renamed = await http.patch(ME, json={"bio": "During the outage."}, headers=account.headers)
        assert renamed.status_code == 200, renamed.text

        cache.down = False
        shown = await http.get(ME, headers=account.headers)
        assert shown.json()["bio"] == "During the outage."
        assert_unauthorized(await http.get(ME, headers=bearer(old_token)))
        assert (await log_in(http, account.username, account.password)).status_code == 200


# ---------------------------------------------------------------- public profiles


async def test_public_profile(client, sign_up):
    account = await sign_up()
    await client.patch(ME, json={"display_name": "Ada", "bio": "Engines."}, headers=account.headers)

    response = await client.get(f"/api/v1/users/{account.id}")

    assert response.status_code == 200
    body = response.json()
    assert set(body) == PUBLIC_PROFILE_FIELDS
    assert (body["id"], body["username"], body["display_name"], body["bio"]) == (
        account.id,
        account.username,
        "Ada",
        "Engines.",
    )
    assert account.email not in response.text


async def test_public_profile_of_an_unknown_id_is_not_found(client):
    for user_id in (str(uuid.uuid4()), "not-a-uuid", "123"):
        assert_problem(await client.get(f"/api/v1/users/{user_id}"), 404)
