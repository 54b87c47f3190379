"""One error format for the whole API: RFC 9457 problem details, rendered in one place.

Feature code raises `Problem` (or one of its named kinds); Litestar's own exceptions (validation,
routing, auth, body size) and anything unexpected are translated here too.
"""

from __future__ import annotations

import ast
import logging
import re
from collections.abc import Callable
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import Example
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

from core.database import is_database_busy, is_database_unavailable
from core.observability import request_id_of
from core.text import pattern_message

PROBLEM_JSON = "application/problem+json"
# Past the busy timeout (5 s by default) another try a second later usually finds the lock free.
DATABASE_BUSY_RETRY_SECONDS = 1
DATABASE_BUSY_DETAIL = "The database is busy with other writes; nothing was changed. Try again shortly."
NON_JSON_BODY_DETAIL = "Send the request body as application/json."
# A restarting PostgreSQL takes a few seconds; clients retrying sooner only add load to the recovery.
DATABASE_UNAVAILABLE_RETRY_SECONDS = 2
DATABASE_UNAVAILABLE_DETAIL = (
    "The database is not reachable right now; try again shortly. A change this request made"
    " is saved only if a later read shows it."
)
logger = logging.getLogger("clipdex.errors")

_TITLES = {
    400: "Bad request",
    401: "Authentication required",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Request body too large",
    415: "Unsupported media type",
    422: "Unprocessable content",
    429: "Too many requests",
    500: "Internal server error",
    503: "Service unavailable",
}


class FieldError(msgspec.Struct):
    field: str
    message: str
    source: str = "body"


class ProblemDetails(msgspec.Struct, omit_defaults=True):
    """The body of every error response (RFC 9457), plus `request_id` and, for invalid input, `errors`."""

    type: str
    title: str
    status: int
    detail: str = ""
    instance: str = ""
    request_id: str = ""
    errors: list[FieldError] = msgspec.field(default_factory=list)


class Problem(HTTPException):
    """An error a client should see, with a stable machine-readable `type`."""

    def __init__(
        self,
        status_code: int,
        detail: str,
        *,
        kind: str | None = None,
        errors: list[FieldError] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail=detail, status_code=status_code, headers=headers)
        self.kind = kind
        self.errors = errors or []


class InvalidInput(Problem):
    """400 naming the offending field."""

    def __init__(self, field: str, message: str, *, source: str = "body") -> None:
        super().__init__(
            400,
            f"{field}: {message}",  # worded as the schema-found errors are
            kind="validation-error",
            errors=[FieldError(field=field, message=message, source=source)],
        )


class InvalidValue(Problem):
    """400 for a value the request schema itself refuses, as the API words it ("limit: must be at
    most 100"); for OpenAPI examples. Rules the code checks raise InvalidInput instead."""

    def __init__(self, field: str, message: str, *, source: str = "body") -> None:
        super().__init__(
            400,
            f"{field}: {message}",
            kind="validation-error",
            errors=[FieldError(field=field, message=message, source=source)],
        )


class Conflict(Problem):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(409, message, kind="conflict", errors=[FieldError(field=field, message=message)])


class NotFound(Problem):
    def __init__(self, detail: str = "No such resource.") -> None:
        super().__init__(404, detail, kind="not-found")


class Unauthorized(Problem):
    def __init__(self, detail: str = "A valid bearer token is required.") -> None:
        super().__init__(401, detail, kind="unauthorized", headers={"WWW-Authenticate": "Bearer"})


class Forbidden(Problem):
    def __init__(self, detail: str) -> None:
        super().__init__(403, detail, kind="forbidden")


class TooManyRequests(Problem):
    def __init__(self, retry_after: int, detail: str = "Too many attempts; try again later.") -> None:
        super().__init__(429, detail, kind="rate-limited", headers={"Retry-After": str(max(1, retry_after))})


# The `type` of errors Litestar raises itself, by status.
_KINDS = {
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    413: "body-too-large",
    429: "rate-limited",
    503: "unavailable",
}


def problem_type(kind: str | None) -> str:
    return f"urn:clipdex:problem:{kind}" if kind else "about:blank"


# msgspec names a missing or unknown field only in the message, located at the object that holds it.
_NAMED_FIELD = re.compile(r"^Object (?:missing required|contains unknown) field `([^`]+)`")


_MISSING_PARAMETER = re.compile(r"^Missing required (?P<source>\w+) parameter '(?P<name>[^']+)'")

# msgspec's validation messages speak of its own type names and JSON paths; these say the same in the
# client's terms.
_TYPE_NAMES = {
    "int": "an integer",
    "float": "a number",
    "str": "a string",
    "bool": "true or false",
    "null": "null",
    "array": "an array",
    "object": "a JSON object",
    "uuid": "a UUID",
}
_EXPECTED_TYPE = re.compile(r"^Expected `(?P<expected>[^`]+)`, got `(?P<got>[^`]+)`$")
_EXPECTED_LENGTH = re.compile(r"^Expected `(?P<kind>[^`]+)` of length (?P<op>[<>]=) (?P<n>\d+)$")
_EXPECTED_BOUND = re.compile(r"^Expected `[^`]+` (?P<op>>=|<=|>|<) (?P<n>\S+)$")
_EXPECTED_PATTERN = re.compile(r"^Expected `str` matching regex (?P<pattern>'.*'|\".*\")$", re.DOTALL)
_INVALID_ENUM = re.compile(r"^Invalid enum value ")
_BOUND_WORDS = {">=": "at least", "<=": "at most", ">": "greater than", "<": "less than"}
_FIXED_MESSAGES = {
    "Integer value out of range": "is out of range",
    "Number out of range": "is out of range",
    "Invalid UUID": "must be a UUID",
}


def _type_phrase(names: str) -> str:
    return " or ".join(_TYPE_NAMES.get(name.strip(), name.strip()) for name in names.split("|"))


def readable_message(message: str, *, source: str, allowed: list[Any] | None = None) -> str:
    """A msgspec validation message (without its location) as the client is told it."""
    if match := _EXPECTED_TYPE.match(message):
        expected = f"must be {_type_phrase(match['expected'])}"
        # Query strings and headers are always text: "got a string" would say nothing.
        return f"{expected}, not {_type_phrase(match['got'])}" if source == "body" else expected
    if match := _EXPECTED_LENGTH.match(message):
        unit = "character" if match["kind"] == "str" else "item"
        unit += "" if match["n"] == "1" else "s"
        return f"must be {_BOUND_WORDS[match['op']]} {match['n']} {unit}"
    if match := _EXPECTED_BOUND.match(message):
        return f"must be {_BOUND_WORDS[match['op']]} {match['n']}"
    if match := _EXPECTED_PATTERN.match(message):
        try:
            pattern = ast.literal_eval(match["pattern"])
        except (ValueError, SyntaxError):
            pattern = ""
        return pattern_message(pattern) or "is not in the expected format"
    if _INVALID_ENUM.match(message):
        return f"must be one of {', '.join(map(str, allowed))}" if allowed else "is not an allowed value"
    return _FIXED_MESSAGES.get(message, message.replace("`", ""))


def _concrete(info: Any) -> Any:
    """The type under its constraints and beside null, as msgspec.inspect describes it (without UNSET)."""
    while isinstance(info, msgspec.inspect.Metadata):
        info = info.type
    if isinstance(info, msgspec.inspect.UnionType):
        kinds = [t for t in info.types if not isinstance(t, msgspec.inspect.NoneType)]
        if len(kinds) == 1:
            return _concrete(kinds[0])
    return info


def _allowed_values(root: Any, path: str) -> list[Any] | None:
    """The values a Literal-typed field at `path` (e.g. "visibility", "tags[0]") of `root` may take."""
    try:
        info = msgspec.inspect.type_info(root)
    except Exception:  # not a type msgspec knows: there is nothing to list
        return None
    for part in re.findall(r"\[\d+\]|[^.\[\]]+", path):
        info = _concrete(info)
        if part.startswith("["):
            info = getattr(info, "item_type", None)
        elif isinstance(info, msgspec.inspect.StructType):
            info = next((field.type for field in info.fields if field.encode_name == part), None)
        else:
            return None
    info = _concrete(info)
    return list(info.values) if isinstance(info, msgspec.inspect.LiteralType) else None


def field_error_from_msgspec(message: str, *, source: str, root_type: Any = None) -> FieldError:
    """A msgspec ValidationError's message ("Expected `int`, got `str` - at `$.tags[0]`") as a FieldError.

    `root_type` is the type that was being decoded, to list the allowed values of an enum field.
    """
    message, _, where = message.partition(" - at `$")
    path = where.rstrip("`").lstrip(".")
    if named := _NAMED_FIELD.match(message):
        path = f"{path}.{named.group(1)}" if path else named.group(1)
        text = "is required" if "missing" in message else "is not a field of this request"
    else:
        allowed = _allowed_values(root_type, path) if root_type is not None else None
        text = readable_message(message, source=source, allowed=allowed)
    return FieldError(field=path or "body", message=text, source=source)


def _field_errors(exc: ValidationException, request: Request[Any, Any, Any]) -> list[FieldError]:
    # Litestar describes each failure as {"message", "key", "source"}; msgspec adds "- at `$.field`".
    errors = []
    handler = request.scope.get("route_handler")
    parameters = handler.parsed_fn_signature.parameters if handler is not None else {}
    for item in exc.extra if isinstance(exc.extra, list) else []:
        if not isinstance(item, dict):
            continue
        message = str(item.get("message", "invalid value"))
        key = item.get("key")
        if not key and " - at `$." in message:
            message, _, where = message.rpartition(" - at `$.")
            key = where.rstrip("`")
        if key == "data" and item.get("source") == "body":
            # Litestar keys errors at the body's root by the handler parameter's name, not a field.
            key = ""
        source = item.get("source", "body")
        source = str(getattr(source, "value", source))  # Litestar passes its ParamType enum here
        parameter = parameters.get(str(key)) if key else None
        error = field_error_from_msgspec(
            message, source=source, root_type=parameter.annotation if parameter else None
        )
        # Litestar took the location off the message and gave it as `key`.
        if error.field != "body":
            key = f"{key}.{error.field}" if key else error.field
        errors.append(FieldError(field=str(key or "body"), message=error.message, source=source))
    if not errors and (missing := _MISSING_PARAMETER.match(exc.detail)):
        # Litestar names a missing query/header/path parameter only in its message.
        errors.append(FieldError(field=missing["name"], message="is required", source=missing["source"]))
    return errors


def problem_response(request: Request[Any, Any, Any], exc: Exception) -> Response[ProblemDetails]:
    """The one exception handler: every error leaves the API through here."""
    body, headers = problem_details(request, exc)
    return Response(body, status_code=body.status, media_type=PROBLEM_JSON, headers=headers)


def problem_details(
    request: Request[Any, Any, Any], exc: Exception
) -> tuple[ProblemDetails, dict[str, str] | None]:
    """What a client is told of an exception, and the headers that go with it; an unexpected one is
    logged here and told only as a request id (GraphQL errors are told the same way)."""
    request_id = request_id_of(request.scope)
    kind: str | None
    if isinstance(exc, Problem):
        status, detail, kind, errors, headers = exc.status_code, exc.detail, exc.kind, exc.errors, exc.headers
    elif isinstance(exc, ValidationException):
        errors = _field_errors(exc, request)
        status, kind, headers = 400, "validation-error", exc.headers
        detail = "; ".join(f"{e.field}: {e.message}" for e in errors) or exc.detail
    elif isinstance(exc, HTTPException) and (
        exc.status_code < HTTP_500_INTERNAL_SERVER_ERROR or exc.status_code == 503
    ):
        status, detail, errors, headers = exc.status_code, exc.detail, [], exc.headers
        kind = _KINDS.get(status)
        if status == 401:
            headers = {"WWW-Authenticate": "Bearer", **(headers or {})}
    elif is_database_busy(exc):
        logger.warning("database busy: %s", exc, extra={"request_id": request_id, "path": request.url.path})
        status, kind, errors, headers = (
            503,
            "database-busy",
            [],
            {"Retry-After": str(DATABASE_BUSY_RETRY_SECONDS)},
        )
        detail = DATABASE_BUSY_DETAIL
    elif is_database_unavailable(exc):
        # Logged without a traceback: during an outage every request fails the same way.
        logger.warning(
            "database unavailable: %s", exc, extra={"request_id": request_id, "path": request.url.path}
        )
        status, kind, errors, headers = (
            503,
            "database-unavailable",
            [],
            {"Retry-After": str(DATABASE_UNAVAILABLE_RETRY_SECONDS)},
        )
        detail = DATABASE_UNAVAILABLE_DETAIL
    else:
        logger.exception(
            "unhandled error", extra={"request_id": request_id, "path": request.url.path}, exc_info=exc
        )
        status, kind, errors, headers = 500, "internal-error", [], None
        detail = f"Something went wrong on our side. Quote request id {request_id} when reporting it."
    body = ProblemDetails(
        type=problem_type(kind),
        title=_TITLES.get(status, "Error"),
        status=status,
        detail=detail,
        instance=request.url.path,
        request_id=request_id,
        errors=errors,
    )
    return body, headers


EXCEPTION_HANDLERS = {Exception: problem_response, HTTPException: problem_response}


# The problems an operation answers with each status unless it names its own (see problem_responses).
_TYPICAL_PROBLEMS: dict[int, Callable[[], list[Problem]]] = {
    400: lambda: [
        Problem(
            400,
            "The request body must be a JSON object, not an array.",
            kind="validation-error",
            errors=[FieldError(field="body", message="must be a JSON object, not an array")],
        )
    ],
    401: lambda: [Unauthorized()],
    403: lambda: [Forbidden("This account may not do that.")],
    404: lambda: [NotFound()],
    409: lambda: [Conflict("username", "That username is already taken.")],
    413: lambda: [Problem(413, "Request Entity Too Large", kind="body-too-large")],
    415: lambda: [Problem(415, NON_JSON_BODY_DETAIL, kind="unsupported-media-type")],
    429: lambda: [TooManyRequests(60)],
    # Whatever reads or writes the database (every /api/v1 operation: tokens are checked against it).
    503: lambda: [
        Problem(503, DATABASE_BUSY_DETAIL, kind="database-busy"),
        Problem(503, DATABASE_UNAVAILABLE_DETAIL, kind="database-unavailable"),
    ],
}
# Stands for the id of the request an example answers.
_EXAMPLE_REQUEST_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


def problem_example(problem: Problem) -> dict[str, Any]:
    """The body `problem_response` sends for `problem`, but for `instance` (the request's path)."""
    body = ProblemDetails(
        type=problem_type(problem.kind),
        title=_TITLES.get(problem.status_code, "Error"),
        status=problem.status_code,
        detail=problem.detail,
        request_id=_EXAMPLE_REQUEST_ID,
        errors=problem.errors,
    )
    return msgspec.to_builtins(body)


def problem_responses(*answers: int | Problem) -> dict[int, ResponseSpec]:
    """OpenAPI entries for the errors an operation can answer with, each with an example body.

    An answer is a status (its typical problems are the examples) or a Problem the operation raises;
    problems of one status share its entry, one example each.
    """
    problems: dict[int, list[Problem]] = {}
    for answer in answers:
        for problem in [answer] if isinstance(answer, Problem) else _TYPICAL_PROBLEMS[answer]():
            problems.setdefault(problem.status_code, []).append(problem)
    responses = {}
    for status, listed in problems.items():
        examples: list[Example] = []
        seen: dict[str, int] = {}
        for problem in listed:
            # Example names are unique per response: the kind, numbered from its second example on.
            name = problem.kind or "problem"
            seen[name] = seen.get(name, 0) + 1
            example_id = f"{name}-{seen[name]}" if seen[name] > 1 else name
            examples.append(Example(id=example_id, summary=problem.detail, value=problem_example(problem)))
        responses[status] = ResponseSpec(
            data_container=ProblemDetails,
            media_type=PROBLEM_JSON,
            description=_TITLES.get(status, "Error"),
            generate_examples=False,
            examples=examples,
        )
    return responses


_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


async def reject_non_json_bodies(request: Request[Any, Any, Any]) -> None:
    """415 for a request body that is not JSON: the API speaks nothing else."""
    if request.method not in _BODY_METHODS:
        return
    has_body = request.headers.get("content-length", "0") != "0" or "transfer-encoding" in request.headers
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if has_body and media_type != "application/json" and not media_type.endswith("+json"):
        raise Problem(415, NON_JSON_BODY_DETAIL, kind="unsupported-media-type")
