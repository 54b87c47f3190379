"""The OpenAPI operations of clipdex's endpoints: what the document says beyond what Litestar infers.

Every handler passes one of these as its `operation_class`: `BearerOperation` (a token is required),
or `PublicOperation` / `OptionalAuthOperation` from core.auth.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from litestar.datastructures import ResponseHeader
from litestar.openapi.spec import Example, OpenAPIHeader, OpenAPIResponse, Operation, Schema
from litestar.openapi.spec.enums import OpenAPIType

from core.errors import PROBLEM_JSON

# The name of the bearer security scheme in the document (users.build_user_auth gives it to JWTAuth).
BEARER_SCHEME = "BearerToken"

_REQUEST_ID = OpenAPIHeader(
    schema=Schema(type=OpenAPIType.STRING),
    required=True,
    description="The request's id: the `X-Request-ID` the client sent if it was sane, else a new one.",
)
_RETRY_AFTER = OpenAPIHeader(
    schema=Schema(type=OpenAPIType.INTEGER, minimum=1), required=True, description="Seconds to wait."
)
_WWW_AUTHENTICATE = OpenAPIHeader(schema=Schema(type=OpenAPIType.STRING, const="Bearer"), required=True)
# The properties of the error body Litestar documents for handlers with parameters.
_LITESTAR_ERROR_PROPERTIES = {"status_code", "detail", "extra"}


def _is_litestar_error(response: OpenAPIResponse) -> bool:
    schema = response.content and getattr(response.content.get("application/json"), "schema", None)
    return isinstance(schema, Schema) and set(schema.properties or ()) == _LITESTAR_ERROR_PROPERTIES


def _is_problem(response: OpenAPIResponse) -> bool:
    return bool(response.content and PROBLEM_JSON in response.content)


@dataclass
class BearerOperation(Operation):
    """The OpenAPI operation of an endpoint that needs a bearer token (the API-wide requirement).

    Litestar documents a `{status_code, detail, extra}` 400 for every handler with parameters, a body
    this API never sends (its errors are problem details, core.errors), so that entry goes: a handler
    that can answer 400 documents it with `problem_responses`. Every response is documented with the
    headers the API sends on it: `X-Request-ID` always, `Retry-After` on 429 and 503 problems,
    `WWW-Authenticate` on 401, and on a 304 the headers of the 200 it stands for.
    """

    def __post_init__(self) -> None:
        self.security = self.security or [{BEARER_SCHEME: []}]
        responses = {
            status: response
            for status, response in (self.responses or {}).items()
            if not (isinstance(response, OpenAPIResponse) and _is_litestar_error(response))
        }
        success = responses.get("200")
        for status, response in responses.items():
            if not isinstance(response, OpenAPIResponse):
                continue
            headers = dict(response.headers or {})
            if status == "304" and isinstance(success, OpenAPIResponse):
                headers = {**(success.headers or {}), **headers}
            if status == "401":
                headers["WWW-Authenticate"] = _WWW_AUTHENTICATE
            if status in {"429", "503"} and _is_problem(response):
                headers["Retry-After"] = _RETRY_AFTER
            headers["X-Request-ID"] = _REQUEST_ID
            response.headers = headers
            for media_type in (response.content or {}).values():
                if media_type.examples:
                    # Litestar writes an Example's `id` (its key) into it too; OpenAPI has no such field.
                    media_type.examples = {
                        name: replace(example, id=None) if isinstance(example, Example) else example
                        for name, example in media_type.examples.items()
                    }
        self.responses = responses


CACHE_STATUS_HEADER = ResponseHeader(
    name="X-Cache",
    value="miss",
    documentation_only=True,
    required=True,
    description="`hit` (served from the cache), `miss` (computed for this request) or `shared` (computed"
    " once for several identical requests arriving together).",
)
