"""GraphQL at /graphql: one schema composed of the types the features define, run on the REST API's rules.

The features write their GraphQL types and resolvers beside their REST handlers, calling the same
feature functions; this module holds what they share: the request context (the viewer of the same
bearer token, the app's objects, per-request DataLoaders), Relay-style connections, the limits that
refuse a hostile query before any resolver runs, the error format (a Problem's type as
`extensions.code`), and the two routes. It imports no feature: app.py hands the types and objects in.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, Generic, TypeVar

import click
import msgspec
import strawberry
from click import Group
from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    Undefined,
    ValidationContext,
    ValidationRule,
    VariableNode,
    get_named_type,
)
from litestar import Request, Response, get, post
from litestar.handlers import HTTPRouteHandler
from litestar.params import JSONBody
from litestar.plugins import CLIPluginProtocol
from strawberry.dataloader import DataLoader
from strawberry.extensions import (
    DisableIntrospection,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    QueryDepthLimiter,
    SchemaExtension,
)
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.tools import merge_types
from strawberry.types import ExecutionResult
from strawberry.types.graphql import OperationType

from core.auth import optional_user
from core.errors import (
    FieldError,
    InvalidInput,
    Problem,
    Unauthorized,
    field_error_from_msgspec,
    problem_details,
    problem_type,
)

logger = logging.getLogger("clipdex.graphql")

PATH = "/graphql"
# The REST lists' limit: no page is longer, in either API.
MAX_PAGE_SIZE = 100
# Fields from the root to the deepest leaf: a video page's query (video, its owner's videos' edges,
# nodes and their fields) needs 7; a cycle of owner { videos { ... owner { videos ... } } } is refused.
MAX_DEPTH = 10
MAX_ALIASES = 20
# Words, names and punctuation of the document; the explorer's introspection query has ~250.
MAX_TOKENS = 2_000
# The items a query may ask for across its lists, nested lists multiplied: 100 videos with 10 similar
# each is 1,100; 100 x 100 x 100 of nested pages is refused before any of it is read.
MAX_LIST_ITEMS = 2_000
INVALID_QUERY = problem_type("invalid-query")

T = TypeVar("T")
K = TypeVar("K")
V = TypeVar("V")


# ---------------------------------------------------------------- the request context


class GraphQLContext:
    """What every resolver of one request shares: `info.context`."""

    def __init__(self, request: Request[Any, Any, Any], services: Mapping[str, Any]) -> None:
        self.request = request
        # The same bearer token auth as REST: the route is `auth_optional`, so no token is None and a
        # bad one was already answered with 401.
        self.viewer: Any = optional_user(request)
        self._services = services
        self._loaders: dict[str, DataLoader[Any, Any]] = {}

    def service(self, name: str) -> Any:
        """One of the objects app.py built at start-up, by the name REST handlers receive it under."""
        return self._services[name]

    def signed_in(self) -> Any:
        """The viewer, who must have sent a token (what REST's bearer-only routes require)."""
        if self.viewer is None:
            raise Unauthorized()
        return self.viewer

    def loader(self, name: str, load: Callable[[list[K]], Awaitable[Sequence[V]]]) -> DataLoader[K, V]:
        """This request's DataLoader called `name`: the loads of one resolver pass, batched into one
        call of `load` (given the keys, it returns one value per key, in their order)."""
        if name not in self._loaders:
            self._loaders[name] = DataLoader(load_fn=load)
        return self._loaders[name]


Info = strawberry.Info[GraphQLContext, None]


# ---------------------------------------------------------------- connections


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None = strawberry.field(
        description="Pass as `after` for the next page; null on the last."
    )


@strawberry.type
class Edge(Generic[T]):
    node: T
    cursor: str = strawberry.field(description="Pass as `after` for the items after this one.")


@strawberry.type
class Connection(Generic[T]):
    edges: list[Edge[T]]
    page_info: PageInfo


C = TypeVar("C", bound=Connection[Any])


def connection(kind: type[C], nodes: Sequence[Any], cursors: Sequence[str], has_next_page: bool) -> C:
    """A page as a connection of this kind: each node with the cursor that continues after it."""
    edges = [Edge(node=node, cursor=cursor) for node, cursor in zip(nodes, cursors, strict=True)]
    end_cursor = cursors[-1] if cursors else None
    return kind(edges=edges, page_info=PageInfo(has_next_page=has_next_page, end_cursor=end_cursor))


def page_size(first: int, maximum: int = MAX_PAGE_SIZE) -> int:
    """`first` if it is a page size this field serves; a validation error naming `first` if not."""
    if first < 1:
        raise InvalidInput("first", "must be at least 1", source="graphql")
    if first > maximum:
        raise InvalidInput("first", f"must be at most {maximum}", source="graphql")
    return first


def parsed_id(raw: str, field: str = "id") -> uuid.UUID:
    """An ID argument as the UUID the REST paths take; a validation error naming the field if not."""
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise InvalidInput(field, "must be a UUID", source="graphql") from None


def converted(value: Any, struct: type[T]) -> T:
    """A GraphQL input (an input object or a dict) as the msgspec struct REST decodes its body into:
    the same rules, the same InvalidInput naming the field. Input fields not given stay UNSET."""
    fields = value if isinstance(value, dict) else vars(value)
    fields = {name: item for name, item in fields.items() if item is not strawberry.UNSET}
    try:
        return msgspec.convert(fields, struct)
    except msgspec.ValidationError as exc:
        error = field_error_from_msgspec(str(exc), source="graphql", root_type=struct)
        raise InvalidInput(error.field, error.message, source="graphql") from None


# ---------------------------------------------------------------- limits


def _first_argument(node: FieldNode, default: Any, variables: Mapping[str, Any]) -> Any:
    for argument in node.arguments or ():
        if argument.name.value == "first":
            if isinstance(argument.value, IntValueNode):
                return int(argument.value.value)
            if isinstance(argument.value, VariableNode):
                return variables.get(argument.value.name.value, default)
    return default


def _list_items_rule(variables: Mapping[str, Any]) -> type[ValidationRule]:
    """A validation rule counting the items a query's lists may return, nested lists multiplied by the
    pages around them, with `first` (or its default) as each list's size."""

    class ListItems(ValidationRule):
        def __init__(self, context: ValidationContext) -> None:
            super().__init__(context)
            document = context.document
            self._fragments = {
                d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
            }
            for definition in document.definitions:
                if not isinstance(definition, OperationDefinitionNode):
                    continue
                root = context.schema.get_root_type(definition.operation)
                if root is None:
                    continue
                items = self._items(definition.selection_set, root, 1, frozenset())
                if items > MAX_LIST_ITEMS:
                    self.report_error(
                        GraphQLError(
                            f"This query may return {items} list items, more than the {MAX_LIST_ITEMS}"
                            " allowed: ask for smaller pages (first) inside lists.",
                            extensions={"code": INVALID_QUERY, "status": 400},
                        )
                    )

        def _items(
            self, selections: SelectionSetNode, parent: Any, multiplier: int, fragments: frozenset[str]
        ) -> int:
            total = 0
            for selection in selections.selections:
                if isinstance(selection, FieldNode):
                    field = parent.fields.get(selection.name.value) if hasattr(parent, "fields") else None
                    if field is None:
                        continue  # not in the schema: validation says so
                    inner = multiplier
                    if "first" in field.args:
                        default = field.args["first"].default_value
                        first = _first_argument(
                            selection, None if default is Undefined else default, variables
                        )
                        if isinstance(first, int) and first > MAX_PAGE_SIZE:
                            self.report_error(_first_too_large(selection))
                        size = min(first, MAX_PAGE_SIZE) if isinstance(first, int) else MAX_PAGE_SIZE
                        inner = multiplier * max(size, 0)
                        total += inner
                    if selection.selection_set is not None:
                        total += self._items(
                            selection.selection_set, get_named_type(field.type), inner, fragments
                        )
                elif isinstance(selection, InlineFragmentNode):
                    condition = selection.type_condition
                    scope = self.context.schema.get_type(condition.name.value) if condition else parent
                    total += self._items(selection.selection_set, scope or parent, multiplier, fragments)
                elif isinstance(selection, FragmentSpreadNode):
                    name = selection.name.value
                    fragment = self._fragments.get(name)
                    if fragment is None or name in fragments:
                        continue  # unknown or cyclic: validation says so
                    scope = self.context.schema.get_type(fragment.type_condition.name.value)
                    total += self._items(
                        fragment.selection_set, scope or parent, multiplier, fragments | {name}
                    )
            return total

    return ListItems


def _first_too_large(node: FieldNode) -> GraphQLError:
    return GraphQLError(
        f"first: must be at most {MAX_PAGE_SIZE}",
        nodes=[node],
        extensions={
            "code": problem_type("validation-error"),
            "status": 400,
            "field": "first",
        },
    )


class ListItemsLimiter(SchemaExtension):
    """Refuses, while the query is validated (before any resolver runs), a `first` above the page size
    and lists nested in lists that may return more than MAX_LIST_ITEMS items together."""

    def on_operation(self) -> Any:
        rule = _list_items_rule(self.execution_context.variables or {})
        self.execution_context.validation_rules = (*self.execution_context.validation_rules, rule)
        yield


class _Schema(strawberry.Schema):
    def process_errors(self, errors: list[GraphQLError], execution_context: Any = None) -> None:
        # Strawberry logs every error with its traceback; here an error is logged as REST logs it
        # (problem_details: the unexpected ones only), when the answer is written.
        return None


def build_schema(
    queries: Sequence[type], mutations: Sequence[type], *, introspection: bool
) -> strawberry.Schema:
    """The schema of the features' Query and Mutation types, with the limits every request runs under."""
    extensions: list[Callable[[], SchemaExtension]] = [
        lambda: MaxTokensLimiter(max_token_count=MAX_TOKENS),
        lambda: QueryDepthLimiter(max_depth=MAX_DEPTH),
        lambda: MaxAliasesLimiter(max_alias_count=MAX_ALIASES),
        ListItemsLimiter,
    ]
    if not introspection:
        extensions.append(DisableIntrospection)
    return _Schema(
        query=merge_types("Query", tuple(queries)),
        mutation=merge_types("Mutation", tuple(mutations)),
        extensions=extensions,
    )


def schema_document(schema: strawberry.Schema) -> str:
    """The schema in GraphQL's schema language, as schema.graphql holds it."""
    return schema.as_str() + "\n"


# ---------------------------------------------------------------- errors


# REST's names of the page arguments, in GraphQL's words.
_ARGUMENT_NAMES = {"limit": "first", "cursor": "after"}


def _graphql_name(path: str) -> str:
    # REST names fields as its JSON does (duration_seconds); GraphQL clients sent durationSeconds.
    path = _ARGUMENT_NAMES.get(path, path)
    return re.sub(r"_([a-z0-9])", lambda match: match.group(1).upper(), path)


def _error(request: Request[Any, Any, Any], error: GraphQLError) -> tuple[dict[str, Any], dict[str, str]]:
    """One entry of the answer's `errors`, and any header its problem carries (Retry-After)."""
    formatted: dict[str, Any] = dict(error.formatted)
    original = error.original_error
    if original is None or isinstance(original, GraphQLError):
        # The document itself: syntax, validation and the limits above.
        formatted["extensions"] = {"code": INVALID_QUERY, "status": 400, **(error.extensions or {})}
        return formatted, {}
    body, headers = problem_details(request, original)
    formatted["message"] = body.detail
    extensions: dict[str, Any] = {"code": body.type, "status": body.status}
    if body.errors:
        extensions["field"] = _graphql_name(body.errors[0].field)
    formatted["extensions"] = extensions
    return formatted, {name: value for name, value in (headers or {}).items() if name == "Retry-After"}


def _answer(request: Request[Any, Any, Any], result: ExecutionResult) -> Response[bytes]:
    body: dict[str, Any] = {}
    headers: dict[str, str] = {}
    if result.errors:
        body["errors"] = []
        for error in result.errors:
            formatted, error_headers = _error(request, error)
            body["errors"].append(formatted)
            headers |= error_headers
    body["data"] = result.data
    # GraphQL over HTTP: a document that ran, even in part, is a 200 with its errors in the body;
    # one refused before it ran (no data at all) is too, so clients read one format.
    return Response(msgspec.json.encode(body), media_type="application/json", headers=headers)


# ---------------------------------------------------------------- routes


class GraphQLRequest(msgspec.Struct, forbid_unknown_fields=True):
    """A POST body, as GraphQL over HTTP defines it."""

    query: str
    variables: dict[str, Any] | None = None
    operationName: str | None = None
    extensions: dict[str, Any] | None = None


def _decoded_variables(raw: str | None) -> dict[str, Any] | None:
    if raw is None or not raw.strip():
        return None
    try:
        variables = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        raise InvalidInput("variables", "must be a JSON object", source="query") from None
    if not isinstance(variables, dict):
        raise InvalidInput("variables", "must be a JSON object", source="query")
    return variables


def graphql_routes(
    schema: strawberry.Schema,
    services: Mapping[str, Any],
    explorer_page: Callable[[], Response[Any]] | None = None,
) -> list[HTTPRouteHandler]:
    """POST /graphql (queries and mutations) and GET /graphql (queries only, so a link or a cache can
    never change anything; from a browser without a query, `explorer_page`). Both take the same bearer
    token as REST, optionally; neither is in the OpenAPI document (schema.graphql documents them)."""

    async def run(
        request: Request[Any, Any, Any],
        query: str,
        variables: dict[str, Any] | None,
        operation_name: str | None,
        allowed: Iterable[OperationType],
    ) -> Response[bytes]:
        try:
            result = await schema.execute(
                query,
                variable_values=variables,
                context_value=GraphQLContext(request, services),
                operation_name=operation_name,
                allowed_operation_types=tuple(allowed),
            )
        except InvalidOperationTypeError as exc:
            kind = "mutations" if exc.operation_type == OperationType.MUTATION else "subscriptions"
            raise Problem(
                405,
                f"GraphQL {kind} are not allowed over GET: send them with POST.",
                kind="method-not-allowed",
                headers={"Allow": "GET, POST"},
            ) from None
        except CannotGetOperationTypeError as exc:
            raise Problem(
                400,
                f"operationName: {exc.as_http_error_reason()}",
                kind="validation-error",
                errors=[FieldError("operationName", exc.as_http_error_reason(), source="body")],
            ) from None
        return _answer(request, result)

    @post(PATH, opt={"auth_optional": True}, include_in_schema=False, status_code=200, name="graphql")
    async def graphql_post(
        request: Request[Any, Any, Any], data: JSONBody[GraphQLRequest]
    ) -> Response[bytes]:
        allowed = (OperationType.QUERY, OperationType.MUTATION)
        return await run(request, data.query, data.variables, data.operationName, allowed)

    @get(PATH, opt={"auth_optional": True}, include_in_schema=False, name="graphql_get")
    async def graphql_get(request: Request[Any, Any, Any]) -> Response[Any]:
        # GraphQL over HTTP's parameter names (operationName) are read as sent.
        parameters = request.query_params
        query = parameters.get("query")
        if query is None:
            if explorer_page is not None and "text/html" in request.headers.get("accept", ""):
                return explorer_page()
            raise InvalidInput("query", "is required", source="query")
        variables = _decoded_variables(parameters.get("variables"))
        return await run(request, query, variables, parameters.get("operationName"), (OperationType.QUERY,))

    return [graphql_post, graphql_get]


# ---------------------------------------------------------------- command line


class GraphQLSchemaCommand(CLIPluginProtocol):
    """`litestar graphql-schema`: write the schema in GraphQL's schema language (`make schema.graphql`)."""

    def __init__(self, schema: strawberry.Schema) -> None:
        self._schema = schema

    def on_cli_init(self, cli: Group) -> None:
        @cli.command(name="graphql-schema", help="Print the GraphQL schema (schema.graphql holds it).")
        @click.option("--output", "-o", type=click.Path(dir_okay=False), help="Write it to this file.")
        def export(output: str | None) -> None:
            document = schema_document(self._schema)
            if output:
                with open(output, "w", encoding="utf-8") as file:
                    file.write(document)
            else:
                click.echo(document, nl=False)
