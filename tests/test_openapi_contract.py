"""The OpenAPI document against the server: what /schema/openapi.json promises is what the API does.

Generated clients and search UIs are built from the document, so it is checked two ways: its own
rules (every error a problem detail with a real example, security as the handlers enforce it,
`Allow` as the paths have it), and schemathesis generating requests from it, anonymous and signed in.
"""

from __future__ import annotations

import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from litestar import Litestar
from litestar.routes import HTTPRoute
from schemathesis.engine import Status, events
from schemathesis.python.asgi import shutdown_lifespans

from app import create_app
from core.settings import load_settings
from tests.conftest import ROOT, clipdex_environ, migrate

PROBLEM_JSON = "application/problem+json"
PROBLEM_TYPE = re.compile(r"^urn:clipdex:problem:[a-z]+(-[a-z]+)*$")
HTTP_METHODS = {"get", "put", "post", "delete", "patch"}
BODY_METHODS = {"post", "put", "patch", "delete"}
# Operations that touch no database: everything else can answer 503 database-busy.
NO_DATABASE = {("get", "/health"), ("get", "/ready"), ("get", "/metrics")}


def bearer_scheme(document: dict[str, Any]) -> str:
    """The name the document gives its bearer token scheme."""
    (name,) = (
        name
        for name, scheme in document["components"]["securitySchemes"].items()
        if scheme.get("scheme", "").lower() == "bearer"
    )
    return name


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in HTTP_METHODS:
                yield method, path, operation


@pytest.fixture
async def document(client) -> dict[str, Any]:
    response = await client.get("/schema/openapi.json")
    assert response.status_code == 200
    return response.json()


# ---------------------------------------------------------------- the document's own rules


async def test_every_documented_error_is_a_problem_with_a_real_example(document):
    documented = 0
    for method, path, operation in operations(document):
        for status, response in operation["responses"].items():
            if int(status) < 400 or (method, path, status) == ("get", "/ready", "503"):
                continue  # /ready's 503 is its readiness report, documented as such
            where = f"{method.upper()} {path} {status}"
            # Only problem details: no Litestar default `{status_code, detail, extra}` entry is left.
            assert set(response["content"]) == {PROBLEM_JSON}, where
            media = response["content"][PROBLEM_JSON]
            assert media["schema"] == {"$ref": "#/components/schemas/ProblemDetails"}, where
            assert media.get("examples"), where
            for name, example in media["examples"].items():
                body = example["value"]
                assert body["status"] == int(status), (where, name)
                assert PROBLEM_TYPE.match(body["type"]), (where, name)
                assert body["title"], (where, name)
                assert body["detail"], (where, name)
                assert "id" not in example, (where, name)  # not an OpenAPI Example field
                documented += 1
    assert documented > 50


async def test_a_malformed_id_in_the_path_is_the_documented_404(document, client):
    """A path parameter that is not a UUID does not reach the handler: routing answers 404, never
    the 400 Litestar documents for handlers with parameters."""
    for method, template in (
        ("get", "/api/v1/videos/{video_id}"),
        ("delete", "/api/v1/videos/{video_id}"),
        ("post", "/api/v1/videos/{video_id}/like"),
        ("get", "/api/v1/users/{user_id}"),
    ):
        responses = document["paths"][template][method]["responses"]
        url = template.replace("{video_id}", "not-a-uuid").replace("{user_id}", "not-a-uuid")

        response = await client.request(method.upper(), url)

        assert response.status_code == 404, url
        assert response.headers["content-type"].startswith(PROBLEM_JSON)
        assert "404" in responses, url
        assert "400" not in responses, url


async def test_each_operation_documents_the_errors_every_operation_of_its_kind_can_answer(document):
    bearer = {bearer_scheme(document): []}
    for method, path, operation in operations(document):
        where = f"{method.upper()} {path}"
        responses = operation["responses"]
        if "requestBody" in operation:
            assert {"413", "415"} <= responses.keys(), where
        if method in BODY_METHODS:  # a body that is not JSON is refused on these, whatever the route
            assert "415" in responses, where
        if (method, path) not in NO_DATABASE:
            kinds = {
                example["value"]["type"]
                for example in responses["503"]["content"][PROBLEM_JSON]["examples"].values()
            }
            assert "urn:clipdex:problem:database-busy" in kinds, where
        if bearer in operation.get("security", [bearer]):
            assert "WWW-Authenticate" in responses["401"].get("headers", {}), where
        for status, response in responses.items():
            headers = response.get("headers", {})
            assert headers.get("X-Request-ID", {}).get("required"), (where, status)
            if status in {"429", "503"} and PROBLEM_JSON in response.get("content", {}):
                assert headers.get("Retry-After", {}).get("required"), (where, status)


def _route_handlers(app: Litestar) -> Iterator[tuple[str, str, Any]]:
    for route in app.routes:
        if isinstance(route, HTTPRoute):
            for method, (handler, _) in route.route_handler_map.items():
                if handler.resolve_include_in_schema():
                    yield method.lower(), route.path_format, handler


async def test_security_is_documented_as_the_handlers_enforce_it(document, client):
    """Public handlers (no auth middleware) need nothing, `auth_optional` ones take a token or none,
    the rest need one; nothing is documented as needing a token it does not need."""
    app = client.app
    bearer = {bearer_scheme(document): []}
    checked = 0
    for method, path, handler in _route_handlers(app):
        # Written out on each operation: an inherited top-level requirement is what hid the mistakes.
        security = document["paths"][path][method].get("security")
        if handler.opt.get("exclude_from_auth") or path in {"/health", "/ready", "/metrics"}:
            assert security == [], (method, path)
        elif handler.opt.get("auth_optional"):
            assert security == [{}, bearer], (method, path)
        else:
            assert security == [bearer], (method, path)
        checked += 1
    assert checked == sum(1 for _ in operations(document))


async def test_metrics_are_documented_as_the_public_prometheus_text_they_are(document, client):
    metrics = document["paths"]["/metrics"]["get"]
    assert metrics["security"] == []
    assert set(metrics["responses"]["200"]["content"]) == {"text/plain"}

    response = await client.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "# TYPE clipdex_requests_total counter" in response.text


async def test_options_lists_every_method_of_the_path(document, client, sign_up):
    account = await sign_up()
    video = await client.post(
        "/api/v1/videos",
        json={"title": "Allow", "url": "https://media.example.com/allow.mp4", "duration_seconds": 60},
        headers=account.headers,
    )
    video_id = video.json()["id"]
    paths = {
        "/api/v1/users/me": "/api/v1/users/me",
        "/api/v1/videos": "/api/v1/videos",
        f"/api/v1/videos/{video_id}": "/api/v1/videos/{video_id}",
        f"/api/v1/videos/{video_id}/like": "/api/v1/videos/{video_id}/like",
        "/api/v1/auth/login": "/api/v1/auth/login",
        "/health": "/health",
    }
    for url, template in paths.items():
        response = await client.options(url)

        assert response.status_code == 204, url
        documented = {method.upper() for method in document["paths"][template] if method in HTTP_METHODS}
        allowed = {method.strip() for method in response.headers["allow"].split(",")}
        assert allowed == documented | {"OPTIONS"}, url


async def test_a_current_etag_gets_the_documented_304(document, client, sign_up):
    account = await sign_up()
    created = await client.post(
        "/api/v1/videos",
        json={"title": "ETag", "url": "https://media.example.com/etag.mp4", "duration_seconds": 60},
        headers=account.headers,
    )
    url = f"/api/v1/videos/{created.json()['id']}"
    first = await client.get(url)

    again = await client.get(url, headers={"If-None-Match": first.headers["etag"]})

    assert again.status_code == 304
    not_modified = document["paths"]["/api/v1/videos/{video_id}"]["get"]["responses"].get("304")
    assert not_modified, "the 304 is not documented"
    documented = not_modified["headers"]
    for name, header in documented.items():
        assert not header["required"] or name.lower() in again.headers, name
    assert again.headers["etag"] == first.headers["etag"]


# ---------------------------------------------------------------- schemathesis

PASSWORD = "contract-test-secret-4817"
# Fuzzing examples per operation and data mode. schemathesis spends most of a run generating data
# for the schema's patterns, not waiting for the app (1 ms a request): the two runs take about 25 s
# on two cores, most of it the signed-in run's coverage phase. (A lookahead in a pattern made that
# phase fifty times slower: core/text.py writes its patterns without.)
MAX_EXAMPLES = 5
# Every check this schemathesis has, but max_response_time: timing targets belong in bench/.
# object_level_authorization acts only with two identities configured; it is on for when they are.
CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
    "positive_data_acceptance",
    "missing_required_header",
    "unsupported_method",
    "allow_header_conformance",
    "ignored_auth",
    "use_after_free",
    "ensure_resource_availability",
    "object_level_authorization",
]
# Rules no JSON schema can state, so a request can fit the document and still be refused with a
# 400 naming the field: a positive_data_acceptance finding whose 400 names only these is expected.
UNSTATABLE_RULES = {
    # An opaque token: only the server knows which strings it issued, and for which query.
    ("cursor", "is not a cursor this API issued"),
    ("cursor", "belongs to a different sort or filter; start again without it"),
    # Comparisons between fields or with stored data.
    ("min_duration", "must not exceed max_duration"),
    ("password", "must not be the username"),
    ("password", "does not match the current password"),
    ("current_password", "does not match the current password"),
    ("current_password", "is required to change the password"),
}
# An address's validity (email-validator: syntax, special-use and unresolvable domain names) goes
# beyond JSON Schema's `email` format; any message about this field counts.
UNSTATABLE_FIELDS = {"email"}
# JSON Schema's `integer` is a value (144.0 is one); the API reads JSON strictly and wants 144.
UNSTATABLE_MESSAGES = {"must be an integer, not a number"}


@pytest.fixture(scope="module")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("contract") / "migrated.sqlite3"
    migrate(f"sqlite:///{path}")
    return path


@pytest.fixture
def fresh_app(migrated_sqlite: Path, tmp_path: Path) -> Iterator[Litestar]:
    """The app on a SQLite file of its own (a copy of the migrated one), in-process cache and index.

    schemathesis runs the app's lifespan on a thread of its own and keeps it until told to stop.
    """
    database = tmp_path / "clipdex.sqlite3"
    shutil.copy(migrated_sqlite, database)
    yield create_app(load_settings(clipdex_environ(f"sqlite:///{database}"), env_dir=ROOT))
    shutdown_lifespans()


def contract_schema(app: Litestar, phases: tuple[str, ...], **config: Any) -> Any:
    """The document as the app serves it, every check on, these phases, valid and invalid data."""
    settings = {
        "checks": {"enabled": False, **{name: {"enabled": True} for name in CHECKS}},
        "phases": {
            name: {"enabled": name in phases} for name in ("examples", "coverage", "fuzzing", "stateful")
        },
        "generation": {"mode": "all", "max-examples": MAX_EXAMPLES},
        # The same requests every run: a failure reproduces, and CI does not flicker.
        "seed": 20261201,
        **config,
    }
    return schemathesis.openapi.from_asgi(
        "/schema/openapi.json", app, config=schemathesis.Config.from_dict(settings)
    )


def _breaks_only_unstatable_rules(response: Any) -> bool:
    if response is None or response.status_code != 400:
        return False
    errors = response.json().get("errors") or [{}]
    return all(
        (error.get("field"), error.get("message")) in UNSTATABLE_RULES
        or error.get("field") in UNSTATABLE_FIELDS
        or error.get("message") in UNSTATABLE_MESSAGES
        for error in errors
    )


def run(schema: Any) -> tuple[list[str], dict[str, set[int]]]:
    """Every failure schemathesis found (described), and the statuses each operation answered."""
    failures: list[str] = []
    answered: dict[str, set[int]] = {}
    for event in schemathesis.engine.from_schema(schema).execute():
        if isinstance(event, events.FatalError):
            raise AssertionError(f"schemathesis could not run: {event.exception!r}") from event.exception
        if isinstance(event, events.NonFatalError):
            failures.append(f"{event.label}: error {event.info.title}: {event.info.message}")
        if isinstance(event, (events.ScenarioFinished, events.FuzzScenarioFinished)):
            recorder = event.recorder
            for case_id, node in recorder.cases.items():
                interaction = recorder.interactions.get(case_id)
                if interaction is not None and interaction.response is not None:
                    label = node.value.operation.label
                    answered.setdefault(label, set()).add(interaction.response.status_code)
            for case_id, checks in recorder.checks.items():
                for check in checks:
                    if check.status != Status.FAILURE or check.failure_info is None:
                        continue
                    interaction = recorder.interactions.get(case_id)
                    response = interaction.response if interaction is not None else None
                    if check.name == "positive_data_acceptance" and _breaks_only_unstatable_rules(response):
                        continue
                    failure = check.failure_info.failure
                    answer = (
                        f"{response.status_code} {response.content[:300]!r}" if response else "no response"
                    )
                    failures.append(
                        f"{failure.operation} [{check.name}] {failure.title}: {failure.message}\n"
                        f"    answer: {answer}\n    {check.failure_info.code_sample}"
                    )
        if isinstance(event, events.EngineFinished):
            failures += [
                f"{failure.operation}: {failure.title}: {failure.message}" for failure in event.failures
            ]
    return sorted(set(failures)), answered


def documented_operations(schema: Any) -> set[str]:
    return {result.ok().label for result in schema.get_all_operations()}


def summary(failures: list[str]) -> str:
    return f"{len(failures)} findings:\n" + "\n".join(failures)


def test_anonymous_requests_get_what_the_document_promises(fresh_app):
    """schemathesis without a token over every operation: the examples, fuzzing (valid and invalid
    data) and stateful sequences following links it infers. Checks: not_a_server_error,
    status_code_conformance, content_type_conformance, response_headers_conformance,
    response_schema_conformance, negative_data_rejection, positive_data_acceptance,
    missing_required_header, unsupported_method, allow_header_conformance, ignored_auth,
    use_after_free, ensure_resource_availability, object_level_authorization."""
    schema = contract_schema(fresh_app, ("examples", "fuzzing", "stateful"))

    failures, answered = run(schema)

    assert not failures, summary(failures)
    assert answered.keys() == documented_operations(schema)
    assert answered["GET /api/v1/users/me"] == {401}
    assert 200 in answered["GET /api/v1/videos"]


def test_signed_in_requests_get_what_the_document_promises(fresh_app):
    """The same with a bearer token (schemathesis logs in again after a logout revoked it), plus the
    coverage phase: boundary values, missing and malformed parameters, a missing Authorization header
    and undocumented methods, for every operation, protected ones past their 401. ignored_auth sends
    each protected request again without the token and with a bad one; the stateful phase follows
    the ids it creates (a video, then its reads, changes, likes, views and deletion), which is where
    use_after_free and ensure_resource_availability look."""
    anonymous = contract_schema(fresh_app, ())
    name = f"contract_{uuid.uuid4().hex[:8]}"
    email = f"{name}@example.com"
    account = {"email": email, "username": name, "password": PASSWORD}
    created = (
        anonymous["/api/v1/auth/register"]["POST"].Case(body=account, media_type="application/json").call()
    )
    assert created.status_code == 201, created.text
    login = {"path": "/api/v1/auth/login", "payload": {"login": email, "password": PASSWORD}}
    token = {**login, "extract_selector": "/access_token"}
    schema = contract_schema(
        fresh_app,
        ("examples", "coverage", "fuzzing", "stateful"),
        auth={"dynamic": {"openapi": {bearer_scheme(anonymous.raw_schema): token}}},
    )

    failures, answered = run(schema)

    assert not failures, summary(failures)
    assert answered.keys() == documented_operations(schema)
    # The token worked, and real ids were followed: protected operations did more than refuse.
    for operation, status in (
        ("GET /api/v1/users/me", 200),
        ("POST /api/v1/videos", 201),
        ("GET /api/v1/videos/{video_id}", 200),
        ("POST /api/v1/videos/{video_id}/like", 200),
    ):
        assert status in answered[operation], (operation, answered[operation])
