"""One error format for the whole API: RFC 9457 problem details, rendered in one place.

Feature code raises `Problem` (or one of its named kinds); Litestar's own exceptions (validation,
routing, auth, body size) and anything unexpected are translated here too.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi import ResponseSpec
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

from core.database import is_database_busy
from core.observability import request_id_of

PROBLEM_JSON = "application/problem+json"
# Past the busy timeout (5 s by default) another try a second later usually finds the lock free.
DATABASE_BUSY_RETRY_SECONDS = 1
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
            f"Invalid {field}: {message}",
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


def _field_errors(exc: ValidationException) -> list[FieldError]:
    # Litestar describes each failure as {"message", "key", "source"}; msgspec adds "- at `$.field`".
    errors = []
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
        if named := _NAMED_FIELD.match(message):
            key = f"{key}.{named.group(1)}" if key else named.group(1)
        source = item.get("source", "body")
        source = getattr(source, "value", source)  # Litestar passes its ParamType enum here
        errors.append(FieldError(field=str(key or "body"), message=message, source=str(source)))
    if not errors and (missing := _MISSING_PARAMETER.match(exc.detail)):
        # Litestar names a missing query/header/path parameter only in its message.
        errors.append(FieldError(field=missing["name"], message="is required", source=missing["source"]))
    return errors


def problem_response(request: Request[Any, Any, Any], exc: Exception) -> Response[ProblemDetails]:
    """The one exception handler: every error leaves the API through here."""
    request_id = request_id_of(request.scope)
    kind: str | None
    if isinstance(exc, Problem):
        status, detail, kind, errors, headers = exc.status_code, exc.detail, exc.kind, exc.errors, exc.headers
    elif isinstance(exc, ValidationException):
        errors = _field_errors(exc)
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
        detail = "The database is busy with other writes; nothing was changed. Try again shortly."
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
    return Response(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


EXCEPTION_HANDLERS = {Exception: problem_response, HTTPException: problem_response}


def problem_responses(*statuses: int) -> dict[int, ResponseSpec]:
    """OpenAPI entries for the error statuses an operation can answer with."""
    return {
        status: ResponseSpec(
            data_container=ProblemDetails, media_type=PROBLEM_JSON, description=_TITLES.get(status, "Error")
        )
        for status in statuses
    }


_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


async def reject_non_json_bodies(request: Request[Any, Any, Any]) -> None:
    """415 for a request body that is not JSON: the API speaks nothing else."""
    if request.method not in _BODY_METHODS:
        return
    has_body = request.headers.get("content-length", "0") != "0" or "transfer-encoding" in request.headers
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if has_body and media_type != "application/json" and not media_type.endswith("+json"):
        raise Problem(415, "Send the request body as application/json.", kind="unsupported-media-type")
