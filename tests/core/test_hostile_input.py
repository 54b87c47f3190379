"""Hostile or careless input: deep nesting, malformed JSON, values of the wrong JSON type, control
characters, forged access-log lines. Each is a 4xx problem naming what is wrong, never a 500 or a
logged traceback, on every backend."""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import msgspec
import pytest
from litestar.routes import HTTPRoute
from litestar.testing import AsyncTestClient

from app import create_app
from tests.conftest import Account

PROBLEM_JSON = "application/problem+json"
REGISTER = "/api/v1/auth/register"
LOGIN = "/api/v1/auth/login"
VIDEOS = "/api/v1/videos"
ME = "/api/v1/users/me"
SEARCH = "/api/v1/search"
BODY_PROBLEMS = {"urn:clipdex:problem:malformed-body", "urn:clipdex:problem:validation-error"}
# Names a client has no use for: the handler's parameter, msgspec's JSON paths and its type names.
INTERNAL_NAMES = re.compile(r"\bdata\b|\$\.|`|Struct|UnsetType|NoneType|msgspec|litestar", re.IGNORECASE)


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def logged() -> Iterator[_Records]:
    """Every record the clipdex loggers emit during the test (they do not propagate to the root)."""
    captured = _Records()
    clipdex = logging.getLogger("clipdex")
    clipdex.addHandler(captured)
    try:
        yield captured
    finally:
        clipdex.removeHandler(captured)


def assert_body_problem(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    body = response.json()
    assert body["type"] in BODY_PROBLEMS, body
    assert body["request_id"] == response.headers["x-request-id"]
    assert body["errors"], body
    return body


def assert_readable(body: dict[str, Any]) -> None:
    texts = [body["detail"], *(f"{error['field']} {error['message']}" for error in body["errors"])]
    for text in texts:
        assert not INTERNAL_NAMES.search(text), body


def json_routes(client: httpx.AsyncClient, video_id: str) -> list[tuple[str, str]]:
    """(method, path) of every route whose handler reads a JSON body, path parameters filled in."""
    routes = []
    for route in client.app.routes:  # type: ignore[attr-defined]
        if not isinstance(route, HTTPRoute):
            continue
        for method, (handler, _) in route.route_handler_map.items():
            if "data" in handler.parsed_fn_signature.parameters:
                path = re.sub(r"\{video_id:uuid\}", video_id, route.path)
                path = re.sub(r"\{user_id:uuid\}", str(uuid.uuid4()), path)
                routes.append((method, path))
    return sorted(routes)


async def _video_id(client: httpx.AsyncClient, owner: Account) -> str:
    body = {"title": "Owned", "url": "https://media.example.com/owned.mp4", "duration_seconds": 60}
    response = await client.post(VIDEOS, json=body, headers=owner.headers)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def _send(client: httpx.AsyncClient, method: str, path: str, content: bytes, account: Account) -> Any:
    headers = {"content-type": "application/json", **account.headers}
    return client.request(method, path, content=content, headers=headers)


# ---------------------------------------------------------------- nesting and malformed JSON


NESTED = [
    b"[" * 1000 + b"]" * 1000,  # valid JSON, about 2 KB
    b"[" * 1000,
    b"{" + b'"a":{' * 5000,
    b'{"title": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    b'{"tags": [' + b"[" * 5000 + b"]" * 5000 + b"]}",
    b'{"no_such_field": ' + b"[" * 5000 + b"]" * 5000 + b"}",
]


async def test_deeply_nested_json_is_a_400_on_every_json_route(client, sign_up, logged):
    account = await sign_up()
    routes = json_routes(client, await _video_id(client, account))
    assert ("POST", REGISTER) in routes
    assert ("POST", VIDEOS) in routes
    assert ("DELETE", ME) in routes

    for method, path in routes:
        for content in NESTED:
            body = assert_body_problem(await _send(client, method, path, content, account))
            assert_readable(body)

    assert [record.getMessage() for record in logged.records if record.levelno >= logging.ERROR] == []
    assert (await client.get(ME, headers=account.headers)).status_code == 200  # nothing was deleted


MALFORMED = {
    "invalid UTF-8 at the start": b"\xff\xfe{}",
    "invalid UTF-8 in a string": b'{"login": "a\xc3\x28", "password": "correct-horse-battery"}',
    "a lone surrogate": b'{"login": "a\\ud800", "password": "correct-horse-battery"}',
    "truncated": b'{"login": "ada',
    "only an opening brace": b"{",
    "trailing text": b'{"login": "ada", "password": "correct-horse-battery"} and more',
    "two documents": b'{"login": "a", "password": "b"}{"login": "a", "password": "b"}',
    "NaN": b'{"login": NaN, "password": "b"}',
    "single quotes": b"{'login': 'ada', 'password': 'b'}",
    "a comment": b'{"login": "ada", /* hi */ "password": "b"}',
    "a byte order mark": b'\xef\xbb\xbf{"login": "ada", "password": "b"}',
    "a string": b'"ada"',
    "a number": b"42",
    "true": b"true",
    "null": b"null",
    "an array": b'["ada", "correct-horse-battery"]',
    "a huge integer": b'{"login": ' + b"9" * 10_000 + b', "password": "b"}',
    "a huge exponent": b'{"login": 1e999999, "password": "b"}',
    "a string where the login is": b'{"login": 12, "password": "correct-horse-battery"}',
}


@pytest.mark.parametrize("content", list(MALFORMED.values()), ids=list(MALFORMED))
async def test_malformed_bodies_are_400s_that_read_well(client, logged, content):
    response = await client.post(LOGIN, content=content, headers={"content-type": "application/json"})

    body = assert_body_problem(response)
    assert_readable(body)
    assert [record for record in logged.records if record.levelno >= logging.ERROR] == []


async def test_duplicate_keys_are_refused_naming_the_field(client, sign_up):
    account = await sign_up()
    content = (
        b'{"title": "Shown to a proxy", "url": "https://media.example.com/a.mp4",'
        b' "duration_seconds": 60, "title": "Stored instead"}'
    )

    body = assert_body_problem(await _send(client, "POST", VIDEOS, content, account))

    assert body["errors"][0]["field"] == "title", body
    assert_readable(body)
    listed = await client.get(VIDEOS, headers=account.headers)
    assert listed.json()["items"] == []


async def test_an_empty_body_says_the_body_is_missing(client, sign_up):
    account = await sign_up()

    for method, path in (("POST", REGISTER), ("POST", LOGIN), ("DELETE", ME), ("POST", VIDEOS)):
        response = await _send(client, method, path, b"", account)

        body = assert_body_problem(response)
        assert body["detail"] == "The request body is missing: send a JSON object.", body
        assert body["errors"][0]["field"] == "body", body
        assert_readable(body)


# ---------------------------------------------------------------- strict JSON types


WRONG_TYPES = [
    ("duration_seconds", {"duration_seconds": "540"}),
    ("duration_seconds", {"duration_seconds": True}),
    ("duration_seconds", {"duration_seconds": 60.0001}),
    ("title", {"title": 5}),
    ("title", {"title": ["a"]}),
    ("tags", {"tags": "cooking"}),
    ("tags[0]", {"tags": [1]}),
    ("visibility", {"visibility": 1}),
    ("description", {"description": None}),
]


async def test_a_value_of_the_wrong_json_type_is_a_400_naming_the_field(client, sign_up):
    account = await sign_up()
    base = {"title": "Typed", "url": "https://media.example.com/typed.mp4", "duration_seconds": 60}

    for field, change in WRONG_TYPES:
        response = await client.post(VIDEOS, json={**base, **change}, headers=account.headers)

        body = assert_body_problem(response)
        assert body["errors"][0]["field"] == field, body
        assert_readable(body)
    assert (await client.get(VIDEOS, headers=account.headers)).json()["items"] == []
    for field, change in (("bio", {"bio": 5}), ("username", {"username": 12345}), ("bio", {"bio": False})):
        body = assert_body_problem(await client.patch(ME, json=change, headers=account.headers))
        assert body["errors"][0]["field"] == field, body
        assert_readable(body)


async def test_query_strings_stay_text_and_convert(client):
    response = await client.get(VIDEOS, params={"limit": "20", "min_duration": "1"})

    assert response.status_code == 200, response.text
    wrong = await client.get(VIDEOS, params={"limit": "twenty"})
    body = assert_body_problem(wrong)
    assert body["errors"] == [{"field": "limit", "message": "must be an integer", "source": "query"}]


async def test_validation_messages_use_the_clients_terms(client, sign_up):
    account = await sign_up()
    video = {"title": "t", "url": "https://media.example.com/a.mp4", "duration_seconds": 9}
    cases = [
        ("POST", REGISTER, {"email": "a@example.com", "username": "ada_l"}, "password"),
        ("POST", REGISTER, {"email": "a@example.com", "username": "x", "password": "p" * 9}, "username"),
        ("PATCH", ME, {"display_name": "x" * 51}, "display_name"),
        ("PATCH", ME, {"favourite": "x"}, "favourite"),
        ("POST", VIDEOS, {**video, "duration_seconds": 0}, "duration_seconds"),
        ("POST", VIDEOS, {**video, "visibility": "secret"}, "visibility"),
        ("POST", VIDEOS, {**video, "tags": ["a"] * 21}, "tags"),
        ("POST", LOGIN, ["ada"], "body"),
    ]
    for method, path, json, field in cases:
        response = await client.request(method, path, json=json, headers=account.headers)
        body = assert_body_problem(response)
        assert body["errors"][0]["field"] == field, body
        assert_readable(body)
    for path, params, field in (
        (VIDEOS, {"sort": "best"}, "sort"),
        (SEARCH, {"q": "a", "limit": "0"}, "limit"),
    ):
        body = assert_body_problem(await client.get(path, params=params))
        assert body["errors"][0]["field"] == field, body
        assert_readable(body)


async def test_every_400_words_its_detail_the_same_way(client):
    """Errors the schema finds and errors a rule finds read alike: `field: message`, in good grammar."""
    cases = [
        ("/api/v1/search/suggest", {"q": ""}, "q: must be at least 1 character"),
        (VIDEOS, {"cursor": "zzzz"}, "cursor: is not a cursor this API issued"),
        (VIDEOS, {"min_duration": "5", "max_duration": "1"}, "min_duration: must not exceed max_duration"),
    ]
    for path, params, detail in cases:
        body = assert_body_problem(await client.get(path, params=params))
        assert body["detail"] == detail, body


# ---------------------------------------------------------------- control characters in query strings


async def test_control_characters_in_query_strings_are_400s_naming_the_parameter(client):
    for params, field in (
        ({"q": "bread\x00"}, "q"),
        ({"q": "bread\x1b[31m"}, "q"),
        ({"q": "bread", "tag": "baking\x00"}, "tag"),
        ({"q": "bread", "cursor": "eyJvZmZzZXQiOjEwfQ\x00"}, "cursor"),
    ):
        body = assert_body_problem(await client.get(SEARCH, params=params))
        assert body["errors"][0] == {
            "field": field,
            "message": body["errors"][0]["message"],
            "source": "query",
        }
        if field != "cursor":  # a cursor is only ever "not a cursor this API issued"
            assert "control character" in body["errors"][0]["message"], body
    for params, field in (({"tag": "a\x00"}, "tag"), ({"cursor": "\x7f"}, "cursor")):
        body = assert_body_problem(await client.get(VIDEOS, params=params))
        assert body["errors"][0]["field"] == field, body


# ---------------------------------------------------------------- the access log


FORGED_PATH = "/api/v1/videos/x%0a12:00:00 INFO    clipdex.access: GET /admin 200 0.1ms%0d%1b[2J"


@pytest.mark.parametrize("log_format", ["text", "json"])
async def test_the_access_log_cannot_be_forged(make_settings, log_format):
    app = create_app(make_settings(log_format=log_format, log_level="INFO"))
    formatter = logging.getLogger("clipdex").handlers[0].formatter
    assert formatter is not None
    captured = _Records()
    access_log = logging.getLogger("clipdex.access")
    access_log.addHandler(captured)
    try:
        async with AsyncTestClient(app=app) as client:
            forged = await client.get(FORGED_PATH, headers={"X-Request-ID": "forge-1"})
            odd_method = await client.request("GET\nFAKE", "/health")
    finally:
        access_log.removeHandler(captured)

    assert forged.status_code == 404
    assert odd_method.status_code in {400, 404, 405}
    lines = [formatter.format(record) for record in captured.records]
    assert len(lines) == 2
    for line in lines:
        assert not re.search(r"[\x00-\x1f\x7f]", line), line
        if log_format == "json":
            entry = msgspec.json.decode(line)
            for value in (entry["path"], entry["method"], entry["request_id"], entry["message"]):
                assert not re.search(r"[\x00-\x1f\x7f]", value), entry
    shown = [msgspec.json.decode(line)["message"] if log_format == "json" else line for line in lines]
    assert "x\\x0a12:00:00 INFO" in shown[0], shown  # escaped, still readable
    assert "GET\\x0aFAKE" in shown[1], shown
