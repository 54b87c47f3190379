"""Request bodies: read as strict JSON straight into the type the handler declares, and documented in
OpenAPI from that same type, so what the schema says is what the server checks.

Litestar by itself decodes a body into plain Python values first (a deep enough nesting of `[`
exhausts the recursion limit there: a 500) and then converts them laxly (`"540"` passes as an int).
Here the handler's `data` type is decoded directly with msgspec in strict mode, once, before any
dependency or handler runs; every way a body can be wrong becomes a 400 problem naming what is wrong.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
from litestar import Request
from litestar.enums import RequestEncodingType
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.spec import OpenAPIType, Reference, Schema
from litestar.plugins import OpenAPISchemaPlugin
from litestar.typing import FieldDefinition

from core.errors import FieldError, Problem, field_error_from_msgspec, reject_non_json_bodies

MISSING_BODY = "The request body is missing: send a JSON object."


def _json_body_type(handler: HTTPRouteHandler) -> tuple[Any, bool] | None:
    """The type a handler reads its JSON body into, and whether the body is required; None without one."""
    data = handler.parsed_fn_signature.parameters.get("data")
    if data is None:
        return None
    media_type = getattr(data.kwarg_definition, "media_type", RequestEncodingType.JSON)
    if media_type != RequestEncodingType.JSON or handler.resolve_data_dto() is not None:
        return None  # forms, msgpack and DTOs are Litestar's to read; this API has none
    return data.annotation, not (data.is_optional or data.has_default)


def _malformed(reason: str) -> Problem:
    return Problem(
        400,
        f"The request body is not valid JSON: {reason}.",
        kind="malformed-body",
        errors=[FieldError(field="body", message=f"is not valid JSON: {reason}")],
    )


def _decode_error_reason(exc: msgspec.DecodeError) -> str:
    message = str(exc)
    if message == "Input data was truncated":
        return "it ends before the JSON value does"
    return message.removeprefix("JSON is malformed: ")


def _repeated_key(body: bytes) -> str | None:
    """The first object key that appears twice in one object, if any.

    msgspec keeps the last of repeated keys silently; another reader (a proxy, an audit log) may keep
    the first, so one body would mean two things. JSON does not forbid it, so it takes a second parse:
    run only on bodies msgspec has already accepted, whose nesting their types bound.
    """
    repeated: list[str] = []

    def check(pairs: list[tuple[str, Any]]) -> None:
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen and not repeated:
                repeated.append(key)
            seen.add(key)

    try:
        json.loads(body, object_pairs_hook=check)
    except (ValueError, RecursionError):
        return None  # msgspec read it; whatever the standard library trips on, it is not a repeat
    return repeated[0] if repeated else None


async def decode_json_body(request: Request[Any, Any, Any], body_type: Any, required: bool) -> Any:
    body = await request.body()
    if not body.strip():
        if required:
            raise Problem(
                400,
                MISSING_BODY,
                kind="validation-error",
                errors=[FieldError(field="body", message="is missing: send a JSON object")],
            )
        return None
    try:
        value = msgspec.json.decode(body, type=body_type, strict=True)
    except msgspec.ValidationError as exc:
        error = field_error_from_msgspec(str(exc), source="body", root_type=body_type)
        detail = (
            f"The request body {error.message}."
            if error.field == "body"
            else f"{error.field}: {error.message}"
        )
        raise Problem(400, detail, kind="validation-error", errors=[error]) from None
    except msgspec.DecodeError as exc:
        raise _malformed(_decode_error_reason(exc)) from None
    except RecursionError:
        raise _malformed("it is nested too deeply") from None
    if (key := _repeated_key(body)) is not None:
        raise Problem(
            400,
            f"The request body gives {key} more than once; send each field once.",
            kind="malformed-body",
            errors=[FieldError(field=key, message="appears more than once")],
        )
    return value


class JSONBodyRequest(Request[Any, Any, Any]):
    """Litestar's request, whose `json()` is the handler's body type, decoded strictly (see module)."""

    __slots__ = ("_typed_json",)

    async def json(self) -> Any:
        try:
            return self._typed_json
        except AttributeError:
            pass
        expected = _json_body_type(self.route_handler)
        if expected is None:
            value = await super().json()
        else:
            value = await decode_json_body(self, *expected)
        self._typed_json = value
        return value


async def read_request_body(request: Request[Any, Any, Any]) -> None:
    """Before any handler: 415 for a body that is not JSON, and the JSON body read (400 if it is wrong)."""
    await reject_non_json_bodies(request)
    if _json_body_type(request.route_handler) is not None:
        # Now rather than when Litestar extracts `data`: it skips empty bodies, which would reach the
        # handler's signature as a missing parameter instead of a missing body.
        await request.json()


# ---------------------------------------------------------------- OpenAPI

_SCHEMA_FIELDS = Schema.field_aliases()
_NESTED = {"items", "additionalProperties", "not", "contains", "propertyNames"}
_NESTED_LISTS = {"anyOf", "oneOf", "allOf", "prefixItems"}


def _openapi_schema(value: dict[str, Any]) -> Schema | Reference:
    """msgspec's JSON Schema (a dict) as Litestar's Schema objects."""
    if "$ref" in value:
        return Reference(ref=value["$ref"])
    fields: dict[str, Any] = {}
    for key, item in value.items():
        if key == "properties":
            item = {name: _openapi_schema(schema) for name, schema in item.items()}
        elif key in _NESTED and isinstance(item, dict):
            item = _openapi_schema(item)
        elif key in _NESTED_LISTS:
            item = [_openapi_schema(schema) for schema in item]
        elif key == "type":
            item = [OpenAPIType(kind) for kind in item] if isinstance(item, list) else OpenAPIType(item)
        fields[_SCHEMA_FIELDS.get(key, key)] = item
    return Schema(**fields)


class RequestBodySchemas(OpenAPISchemaPlugin):
    """Documents request body types (msgspec Structs that refuse unknown fields) with msgspec's own
    JSON Schema of them: the constraints msgspec enforces, exactly, including `additionalProperties:
    false`, the limits of list items and every default. Litestar's generic Struct schemas drop these.
    """

    @staticmethod
    def is_request_body(annotation: Any) -> bool:
        config = getattr(annotation, "__struct_config__", None)
        return config is not None and config.forbid_unknown_fields

    def is_plugin_supported_field(self, field_definition: FieldDefinition) -> bool:
        return not field_definition.is_union and self.is_request_body(field_definition.annotation)

    def to_openapi_schema(self, field_definition: FieldDefinition, schema_creator: Any) -> Schema:
        body_type = field_definition.annotation
        _, components = msgspec.json.schema_components(
            [body_type], ref_template="#/components/schemas/{name}"
        )
        own = components.pop(body_type.__name__)
        if components:
            raise TypeError(f"{body_type.__name__} nests {sorted(components)}: request bodies here are flat")
        converted = _openapi_schema(own)
        assert isinstance(converted, Schema)
        # The registry's entry for this type is what becomes components/schemas/<name> and the $ref to it.
        schema = schema_creator.schema_registry.get_schema_for_field_definition(field_definition)
        for name, value in vars(converted).items():
            if value is not None:
                setattr(schema, name, value)
        return schema
