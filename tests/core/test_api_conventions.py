"""What every endpoint shares: problem details, request ids, health and readiness, OpenAPI, CORS, and
the migrations that give the database its shape."""

from __future__ import annotations

import asyncio
import logging
import re
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
from litestar import get
from litestar.routes import HTTPRoute
from litestar.testing import AsyncTestClient

from app import create_app
from core.settings import load_settings
from tests.conftest import ALL_TABLES, ROOT, clipdex_environ, migrate

PROBLEM_JSON = "application/problem+json"
USERS_PATHS = {
    "/api/v1/auth/register": {"post"},
    "/api/v1/auth/login": {"post"},
    "/api/v1/auth/logout": {"post"},
    "/api/v1/users/me": {"get", "patch", "delete"},
    "/api/v1/users/{user_id}": {"get"},
}
PUBLIC_OPERATIONS = {
    ("post", "/api/v1/auth/register"),
    ("post", "/api/v1/auth/login"),
    ("get", "/api/v1/users/{user_id}"),
    ("get", "/health"),
    ("get", "/ready"),
}
GENERATED_REQUEST_ID = re.compile(r"^[0-9a-f]{32}$")


def assert_problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    body = response.json()
    assert body["status"] == status
    assert body["title"]
    assert body["type"]
    assert body["request_id"] == response.headers["x-request-id"]
    return body


# ---------------------------------------------------------------- health and readiness


async def test_health(client):
    response = await client.get("/health")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_ready_lists_every_dependency(client):
    response = await client.get("/ready")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready"
    statuses = {name: dependency["status"] for name, dependency in body["dependencies"].items()}
    assert {"database": "ok", "cache": "ok"}.items() <= statuses.items()


async def _admin(database_url: str) -> asyncpg.Connection:
    return await asyncpg.connect(database_url, timeout=10)


async def test_ready_names_the_failing_database_while_health_stays_up(make_settings, tmp_path):
    backend_settings = make_settings()
    if backend_settings.is_sqlite:
        # A database file that turns into a directory cannot be opened any more.
        database_file = tmp_path / "ready.sqlite3"
        settings = make_settings(DATABASE_URL=f"sqlite:///{database_file}")

        async def break_database() -> None:
            for path in tmp_path.glob("ready.sqlite3*"):
                path.unlink()
            database_file.mkdir()

        async def repair_database() -> None:
            """Nothing to undo: tmp_path goes away by itself."""
    else:
        # A database of its own, dropped under the running app's pool.
        name = f"clipdex_ready_{uuid.uuid4().hex[:8]}"
        admin = await _admin(backend_settings.database_url)
        await admin.execute(f'CREATE DATABASE "{name}"')
        settings = make_settings(DATABASE_URL=backend_settings.database_url.rsplit("/", 1)[0] + f"/{name}")

        async def break_database() -> None:
            await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')

        async def repair_database() -> None:
            try:
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            finally:
                await admin.close()

    try:
        # Migrated, so that every other readiness check (the search index lag reads the outbox) passes.
        await asyncio.to_thread(migrate, settings.database_url)
        async with AsyncTestClient(app=create_app(settings)) as client:
            assert (await client.get("/ready")).status_code == 200

            await break_database()
            ready = await client.get("/ready")
            health = await client.get("/health")
    finally:
        await repair_database()

    assert ready.status_code == 503, ready.text
    body = ready.json()
    assert body["status"] == "unavailable"
    assert body["dependencies"]["database"]["status"] == "failing"
    assert body["dependencies"]["database"]["error"]
    assert body["dependencies"]["cache"]["status"] == "ok"
    # Liveness does no I/O, so a dead database does not get the process restarted.
    assert health.status_code == 200


# ---------------------------------------------------------------- problem details and request ids


async def test_unknown_path_is_a_problem_404(client):
    body = assert_problem(await client.get("/api/v1/no-such-thing"), 404)

    assert body["instance"] == "/api/v1/no-such-thing"


async def test_wrong_method_is_a_problem_405(client):
    response = await client.put("/health")

    assert_problem(response, 405)
    assert "GET" in response.headers["allow"]


async def test_request_id_is_echoed_when_sent(client):
    response = await client.get("/api/v1/no-such-thing", headers={"X-Request-ID": "trace-42.a:b_c"})

    assert response.headers["x-request-id"] == "trace-42.a:b_c"
    assert response.json()["request_id"] == "trace-42.a:b_c"


async def test_request_id_is_generated_when_not_sent_or_unusable(client):
    plain = [await client.get("/health") for _ in range(2)]
    unusable = [
        await client.get("/health", headers={"X-Request-ID": sent})
        for sent in ("has spaces in it", "x" * 200, "line\tbreak", "")
    ]

    ids = [response.headers["x-request-id"] for response in plain + unusable]
    assert all(GENERATED_REQUEST_ID.match(request_id) for request_id in ids), ids
    assert len(set(ids)) == len(ids)


async def test_an_unexpected_error_is_a_500_without_internals(make_settings):
    @get("/test-only/boom", opt={"exclude_from_auth": True})
    async def boom() -> None:
        raise RuntimeError("secret internal detail: password=hunter2 at /srv/clipdex/app.py")

    app = create_app(make_settings())
    app.register(boom)

    async with AsyncTestClient(app=app) as client:
        response = await client.get("/test-only/boom", headers={"X-Request-ID": "req-500"})

    body = assert_problem(response, 500)
    assert body["request_id"] == "req-500"
    assert "req-500" in body["detail"]  # quotable when reporting the problem
    for leak in ("Traceback", "RuntimeError", "hunter2", "secret internal", "app.py", 'File "'):
        assert leak not in response.text


async def test_a_database_locked_by_another_writer_is_a_503_and_nothing_is_written(tmp_path):
    # SQLite's database-wide write lock, on a file of its own (whatever backend the suite runs).
    database = tmp_path / "busy.sqlite3"
    environ = clipdex_environ(f"sqlite:///{database}", SQLITE_BUSY_TIMEOUT_SECONDS="0.2")
    settings = load_settings(environ, env_dir=ROOT)
    await asyncio.to_thread(migrate, settings.database_url)
    account = {"email": "busy@example.com", "username": "busy_user", "password": "correct-horse-battery"}
    async with AsyncTestClient(app=create_app(settings)) as client:
        other_writer = sqlite3.connect(database, isolation_level=None)
        other_writer.execute("BEGIN IMMEDIATE")  # another process holding the write lock
        try:
            busy = await client.post("/api/v1/auth/register", json=account)
        finally:
            other_writer.execute("ROLLBACK")
            other_writer.close()
        after = await client.post(
            "/api/v1/auth/login", json={"login": "busy_user", "password": account["password"]}
        )
        retried = await client.post("/api/v1/auth/register", json=account)

    body = assert_problem(busy, 503)
    assert body["type"] == "urn:clipdex:problem:database-busy"
    assert busy.headers["retry-after"] == "1"
    assert after.status_code == 401  # the refused registration left no account behind
    assert retried.status_code == 201


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def test_one_json_access_log_line_per_request(make_settings):
    app = create_app(make_settings(log_format="json", log_level="INFO"))
    # The formatter start-up installed for the clipdex loggers, applied to what the access log emits.
    formatter = logging.getLogger("clipdex").handlers[0].formatter
    captured = _Records()
    access_log = logging.getLogger("clipdex.access")
    access_log.addHandler(captured)
    try:
        async with AsyncTestClient(app=app) as client:
            await client.get("/health", headers={"X-Request-ID": "log-1"})
            await client.get("/no-such-page", headers={"X-Request-ID": "log-2"})
    finally:
        access_log.removeHandler(captured)

    assert formatter is not None
    lines = [msgspec.json.decode(formatter.format(record)) for record in captured.records]
    assert [(line["request_id"], line["method"], line["path"], line["status"]) for line in lines] == [
        ("log-1", "GET", "/health", 200),
        ("log-2", "GET", "/no-such-page", 404),
    ]
    assert all(isinstance(line["duration_ms"], float | int) for line in lines)


def _metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus's text format (0 when absent)."""
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{key}="{value}"' in line for key, value in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_metrics_count_requests_per_route_template_status_and_errors(make_settings):
    @get("/test-only/metrics-boom", opt={"exclude_from_auth": True})
    async def boom() -> None:
        raise RuntimeError("counted")

    app = create_app(make_settings())
    app.register(boom)
    async with AsyncTestClient(app=app) as client:
        before = (await client.get("/metrics")).text
        video_ids = [str(uuid.uuid4()) for _ in range(3)]
        for video_id in video_ids:
            await client.get(f"/api/v1/videos/{video_id}")  # three ids, one route template
        await client.get("/test-only/metrics-boom")
        await client.get("/health")
        after = (await client.get("/metrics")).text

    def grew(name: str, **labels: str) -> float:
        return _metric(after, name, **labels) - _metric(before, name, **labels)

    video = {"method": "GET", "path": "/api/v1/videos/{video_id}", "app_name": "clipdex"}
    assert grew("clipdex_requests_total", status_code="404", **video) == 3
    assert grew("clipdex_request_duration_seconds_count", status_code="404", **video) == 3
    assert grew("clipdex_requests_error_total", path="/test-only/metrics-boom", status_code="500") == 1
    assert grew("clipdex_requests_total", path="/test-only/metrics-boom", status_code="500") == 1
    assert grew("clipdex_requests_total", path="/health", status_code="200") == 1
    assert grew("clipdex_requests_error_total", path="/health") == 0
    assert not [video_id for video_id in video_ids if video_id in after]  # ids never become label values
    assert _metric(after, "clipdex_requests_in_progress", path="/health", method="GET") == 0


# ---------------------------------------------------------------- OpenAPI


def _openapi_path(route_path: str) -> str:
    return re.sub(r"\{(\w+):[^}]+\}", r"{\1}", route_path)


async def test_openapi_documents_every_api_path(client):
    response = await client.get("/schema/openapi.json")

    assert response.status_code == 200
    documented = response.json()["paths"]
    routed = {
        _openapi_path(route.path): {method.lower() for method in route.methods} - {"options", "head"}
        for route in client.app.routes
        if isinstance(route, HTTPRoute) and route.path.startswith("/api/v1")
    }
    assert set(USERS_PATHS) <= set(routed)
    for path, methods in routed.items():
        assert path in documented, path
        assert methods <= set(documented[path]), (path, methods)


async def test_openapi_documents_the_bearer_scheme_and_who_needs_it(client):
    spec = (await client.get("/schema/openapi.json")).json()
    schemes = spec["components"]["securitySchemes"]
    bearer = [name for name, scheme in schemes.items() if scheme.get("scheme", "").lower() == "bearer"]
    assert len(bearer) == 1, schemes
    assert schemes[bearer[0]]["type"] == "http"

    def required(method: str, path: str) -> list[dict[str, list[str]]]:
        operation = spec["paths"][path][method]
        return operation.get("security", spec.get("security", []))

    for path, methods in USERS_PATHS.items():
        for method in methods:
            needs = required(method, path)
            if (method, path) in PUBLIC_OPERATIONS:
                assert not any(needs), (method, path, needs)
            else:
                assert {bearer[0]: []} in needs, (method, path, needs)
    for method, path in PUBLIC_OPERATIONS:
        assert not any(required(method, path)), (method, path)


async def test_openapi_documents_error_responses_as_problem_details(client):
    spec = (await client.get("/schema/openapi.json")).json()

    me = spec["paths"]["/api/v1/users/me"]["get"]["responses"]
    register = spec["paths"]["/api/v1/auth/register"]["post"]["responses"]
    assert PROBLEM_JSON in me["401"]["content"]
    assert {"400", "409"} <= set(register)
    assert PROBLEM_JSON in register["409"]["content"]
    assert "503" in spec["paths"]["/ready"]["get"]["responses"]


async def test_the_interactive_docs_are_served(client):
    # tests/core/test_docs_page.py shows them working in a browser; here, what the server sends.
    for path in ("/schema", "/schema/swagger"):
        response = await client.get(path)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/html")
        assert "/api/v1/auth/register" in response.text  # Swagger UI embeds the document
        assets = re.findall(r"""(?:src|href)=["']([^"']+)""", response.text)
        assert len(assets) >= 4  # script, preset, stylesheet, favicon
        for asset in assets:
            assert asset.startswith("/schema/assets/"), asset
            fetched = await client.get(asset)
            assert fetched.status_code == 200, asset
            assert "immutable" in fetched.headers["cache-control"]


# ---------------------------------------------------------------- OpenAPI: request rules as enforced


def _request_bodies(spec: dict[str, Any]) -> dict[tuple[str, str], str]:
    """(method, path) -> the component name of its JSON request body."""
    bodies = {}
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            schema = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
            if ref := schema.get("schema", {}).get("$ref"):
                bodies[(method, path)] = ref.rsplit("/", 1)[1]
    return bodies


async def test_openapi_request_bodies_say_they_refuse_unknown_fields(client):
    spec = (await client.get("/schema/openapi.json")).json()

    bodies = _request_bodies(spec)
    assert {
        "UserRegister",
        "UserLogin",
        "UserUpdate",
        "AccountDeletion",
        "VideoCreate",
        "VideoUpdate",
    } <= set(bodies.values()), bodies
    for name in bodies.values():
        assert spec["components"]["schemas"][name]["additionalProperties"] is False, name


def _alternatives(schema: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """The non-null form of a property (its constraints merged in) and whether null is allowed."""
    branches = schema.get("anyOf") or schema.get("oneOf")
    if not branches:
        return schema, schema.get("type") == "null"
    outer = {key: value for key, value in schema.items() if key not in {"anyOf", "oneOf"}}
    forms = [branch for branch in branches if branch.get("type") != "null"]
    assert len(forms) == 1, schema
    return {**forms[0], **outer}, len(forms) < len(branches)  # Litestar puts the constraints outside


_PATTERN_BREAKERS = ["a\x00b", "a\nb", "a\x7fb", "!", " "]


def _refused(schema: dict[str, Any], *, in_query: bool) -> list[Any]:
    """One value per documented rule of this schema, each just past that rule."""
    form, nullable = _alternatives(schema)
    kind = form.get("type") or ("string" if "enum" in form else None)
    refused: list[Any] = []
    if not nullable and not in_query:
        refused.append(None)
    if kind == "string":
        if not in_query:
            refused.append(5)
        if "maxLength" in form:
            refused.append("x" * (form["maxLength"] + 1))
        if form.get("minLength", 0) > 0:
            refused.append("x" * (form["minLength"] - 1))
        if "pattern" in form:
            refused.append(next(text for text in _PATTERN_BREAKERS if not re.search(form["pattern"], text)))
        if "enum" in form:
            refused.append("not-" + form["enum"][0])
        if form.get("format") == "uuid":
            refused.append("not-a-uuid")
    elif kind == "boolean":
        refused.append("maybe" if in_query else "true")
    elif kind == "number":
        refused.append("many" if in_query else "1")
        if "minimum" in form:
            refused.append(form["minimum"] - 1)
        if "maximum" in form:
            refused.append(form["maximum"] + 1)
    elif kind == "integer":
        refused.append("ten" if in_query else "10")
        if not in_query:
            refused.append(1.5)
        if "minimum" in form:
            refused.append(int(form["minimum"]) - 1)
        if "maximum" in form:
            refused.append(int(form["maximum"]) + 1)
    elif kind == "array":
        if not in_query:  # in a query string, one value is a list of one
            refused.append("x")
        if "maxItems" in form:
            refused.append([f"item{i}" for i in range(form["maxItems"] + 1)])
        refused.extend([item] for item in _refused(form["items"], in_query=in_query))
    else:
        raise AssertionError(f"no refusals known for {schema}")
    return refused


def _accepted(name: str, schema: dict[str, Any]) -> list[Any]:
    """Values exactly at each documented bound (which the server must take as far as form goes)."""
    form, _ = _alternatives(schema)
    kind = form.get("type") or ("string" if "enum" in form else None)
    accepted: list[Any] = []
    if kind == "string" and "enum" in form:
        accepted.extend(form["enum"])
    elif kind == "string" and form.get("format") == "uuid":
        accepted.append(str(uuid.uuid4()))
    elif kind == "string":
        for length in {form.get("minLength", 1) or 1, form.get("maxLength", 1)}:
            value = f"https://media.example.com/{'a' * (length - 26)}" if "url" in name else "x" * length
            if re.search(form.get("pattern", ""), value):  # a pattern of its own needs values of its own
                accepted.append(value)
    elif kind in {"integer", "number"}:
        accepted.extend(form[bound] for bound in ("minimum", "maximum") if bound in form)
    elif kind == "array":
        items = _accepted(name, form["items"])
        accepted.extend([item] for item in items)
        if "maxItems" in form and items:
            accepted.append([items[-1]] * form["maxItems"])
    return accepted


# Where a value's form can be right and the request still a 400 naming it, for reasons no schema can
# state: a password must match the account's, an email must be deliverable-looking, a cursor issued.
_NOT_FORM_ALONE = {("AccountDeletion", "password"), ("UserRegister", "email"), ("*", "cursor")}


def _names_field(response: Any, field: str) -> bool:
    if response.status_code != 400:
        return False
    errors = response.json().get("errors", [])
    return bool(errors) and (errors[0]["field"] == field or errors[0]["field"].startswith(field + "["))


async def test_every_documented_request_rule_is_the_enforced_one(client, sign_up):
    """Each documented limit, pattern, enum and type of every request body field and query parameter:
    a value just past it is a 400 naming the field, a value at it is not refused for that field."""
    spec = (await client.get("/schema/openapi.json")).json()
    account = await sign_up()
    video = await client.post(
        "/api/v1/videos",
        json={"title": "Probe", "url": "https://media.example.com/p.mp4", "duration_seconds": 9},
        headers=account.headers,
    )
    ids = {"video_id": video.json()["id"], "user_id": account.id}
    valid_bodies = {
        "UserRegister": lambda: {
            "email": f"{uuid.uuid4().hex[:12]}@example.com",
            "username": f"u_{uuid.uuid4().hex[:10]}",
            "password": "correct-horse-battery",
        },
        "UserLogin": lambda: {"login": account.username, "password": "not-the-password"},
        "UserUpdate": dict,
        "AccountDeletion": lambda: {"password": "not-the-password"},
        "VideoCreate": lambda: {
            "title": "t",
            "url": "https://media.example.com/v.mp4",
            "duration_seconds": 9,
        },
        "VideoUpdate": dict,
    }
    checked = 0

    async def send(method: str, path: str, **kwargs: Any) -> Any:
        url = re.sub(r"\{(\w+)\}", lambda m: ids[m.group(1)], path)
        return await client.request(method.upper(), url, headers=account.headers, **kwargs)

    for (method, path), name in _request_bodies(spec).items():
        component = spec["components"]["schemas"][name]
        for field, schema in component["properties"].items():
            for value in _refused(schema, in_query=False):
                response = await send(method, path, json={**valid_bodies[name](), field: value})
                assert _names_field(response, field), (name, field, value, response.text)
                checked += 1
            if (name, field) in _NOT_FORM_ALONE:
                continue
            for value in _accepted(field, schema):
                response = await send(method, path, json={**valid_bodies[name](), field: value})
                assert not _names_field(response, field), (name, field, value, response.text)
                checked += 1
        response = await send(method, path, json={**valid_bodies[name](), "no_such_field": 1})
        assert _names_field(response, "no_such_field"), (name, response.text)

    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            query = [p for p in operation.get("parameters", []) if p["in"] == "query"]
            base = {p["name"]: "bread" for p in query if p["required"]}
            for parameter in query:
                field = parameter["name"]
                for value in _refused(parameter["schema"], in_query=True):
                    response = await send(method, path, params={**base, field: value})
                    assert _names_field(response, field), (path, field, value, response.text)
                    checked += 1
                if ("*", field) in _NOT_FORM_ALONE:
                    continue
                for value in _accepted(field, parameter["schema"]):
                    response = await send(method, path, params={**base, field: value})
                    assert not _names_field(response, field), (path, field, value, response.text)
                    checked += 1
    assert checked > 100


# ---------------------------------------------------------------- CORS


async def test_cors_preflight_is_allowed_for_a_configured_origin(serve):
    preflight = {
        "Access-Control-Request-Method": "PATCH",
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    async with serve(cors_allow_origins="https://app.example, https://admin.example") as client:
        allowed = await client.options(
            "/api/v1/users/me", headers={"Origin": "https://app.example", **preflight}
        )
        other = await client.options(
            "/api/v1/users/me", headers={"Origin": "https://evil.example", **preflight}
        )
        simple = await client.get("/health", headers={"Origin": "https://admin.example"})

    assert allowed.status_code in {200, 204}, allowed.text
    assert allowed.headers["access-control-allow-origin"] == "https://app.example"
    assert "access-control-allow-origin" not in other.headers
    assert simple.headers["access-control-allow-origin"] == "https://admin.example"
    # What a browser client may read: the request id, a retry delay, the cache status, the ETag.
    exposed = {name.strip().lower() for name in simple.headers["access-control-expose-headers"].split(",")}
    assert {"x-request-id", "retry-after", "x-cache", "etag"} <= exposed


async def test_no_cors_headers_without_configured_origins(serve):
    async with serve(cors_allow_origins="") as client:
        response = await client.get("/health", headers={"Origin": "https://app.example"})

    assert "access-control-allow-origin" not in response.headers


# ---------------------------------------------------------------- request bodies


async def test_a_non_json_body_is_a_problem_415(client):
    response = await client.post(
        "/api/v1/auth/login", content=b"<login/>", headers={"content-type": "application/xml"}
    )

    assert_problem(response, 415)


async def test_malformed_json_is_a_problem_400(client):
    response = await client.post(
        "/api/v1/auth/login", content=b'{"login": ', headers={"content-type": "application/json"}
    )

    assert_problem(response, 400)


async def test_an_oversized_body_is_a_problem_413(serve):
    async with serve(max_request_body_bytes=1024) as client:
        response = await client.post(
            "/api/v1/auth/login", json={"login": "x" * 2000, "password": "correct-horse-battery"}
        )

    assert_problem(response, 413)


# ---------------------------------------------------------------- migrations


def _sqlite_columns(path: Path) -> dict[str, set[str]]:
    connection = sqlite3.connect(path)
    try:
        tables = [row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {
            table: {row[1] for row in connection.execute(f'PRAGMA table_info("{table}")')} for table in tables
        }
    finally:
        connection.close()


def _model_columns() -> dict[str, set[str]]:
    return {
        table._meta.tablename: {column._meta.db_column_name for column in table._meta.columns}
        for table in ALL_TABLES
    }


def test_migrations_apply_to_an_empty_database(tmp_path):
    database = tmp_path / "fresh.sqlite3"
    url = f"sqlite:///{database}"

    migrate(url)
    applied = _sqlite_columns(database)
    with sqlite3.connect(database) as connection:
        migrations_run = connection.execute("SELECT count(*) FROM migration").fetchone()[0]
    migrate(url)  # a second run has nothing left to do

    for table, columns in _model_columns().items():
        assert table in applied, f"no migration creates {table}"
        assert columns == applied[table], table
    assert migrations_run > 0
    with sqlite3.connect(database) as connection:
        assert connection.execute("SELECT count(*) FROM migration").fetchone()[0] == migrations_run


async def test_the_test_database_was_migrated_to_the_models(make_settings):
    """The session database (SQLite or PostgreSQL) was built from empty by the migrations alone."""
    settings = make_settings()
    if settings.is_sqlite:
        applied = _sqlite_columns(settings.sqlite_path)
    else:
        connection = await asyncpg.connect(settings.database_url, timeout=10)
        try:
            rows = await connection.fetch(
                "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'public'"
            )
        finally:
            await connection.close()
        applied = {}
        for row in rows:
            applied.setdefault(row["table_name"], set()).add(row["column_name"])

    for table, columns in _model_columns().items():
        assert applied.get(table) == columns, table
