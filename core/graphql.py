"""GraphQL at /graphql: one schema composed of the types the features define, run on the REST API's rules.

The features write their GraphQL types and resolvers beside their REST handlers, calling the same
feature functions; this module holds what they share: the request context (the viewer of the same
bearer token, the app's objects, per-request DataLoaders), Relay-style connections, the limits that
refuse a hostile query before any resolver runs (each distinct document parsed and validated once per
process, the limit that depends on the variables checked per request), the error format (a Problem's
type as `extensions.code`), and the two routes. It imports no feature: app.py hands the types and objects in.
"""

from __future__ import annotations

import functools
import logging
import re
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from inspect import isawaitable
from typing import Any, Generic, TypeVar

import click
import msgspec
import strawberry
from click import Group
from graphql import (
    DocumentNode,
    ExecutionResult,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    Undefined,
    VariableNode,
    execute,
    get_named_type,
    parse,
    specified_rules,
    validate,
)
from litestar import Request, Response, get, post
from litestar.handlers import HTTPRouteHandler
from litestar.params import JSONBody
from litestar.plugins import CLIPluginProtocol
from strawberry.dataloader import DataLoader
from strawberry.exceptions import MissingQueryError
from strawberry.execution import optimized_is_awaitable
from strawberry.extensions import DisableIntrospection, MaxAliasesLimiter, QueryDepthLimiter
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.schema.schema import validate_document
from strawberry.tools import merge_types
from strawberry.types.graphql import OperationType
from strawberry.utils.operation import get_first_operation, get_operation_type

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


# ---------------------------------------------------------------- limits and prepared documents

# Each distinct document is parsed and checked once per process (the checks depend on the document and
# the schema only): a client sends the same few documents with different variables. Bounded, so a
# client sending ever new documents costs memory no more than this; longer documents are not kept.
CACHED_DOCUMENTS = 256
CACHED_DOCUMENT_LENGTH = 10_000


@dataclass(frozen=True, slots=True, eq=False)
class _ListField:
    """A field taking `first` in a document: where its size comes from, and the lists inside it."""

    node: FieldNode
    literal: int | None  # first: 20
    variable: str | None  # first: $n
    default: Any  # the argument's default in the schema
    inner: _Lists


# The list fields of a selection: a fragment's are one tuple shared by all its spreads, so a document
# spreading fragments in fragments is counted in time linear in its size.
_Lists = tuple["_ListField | _Lists", ...]


def _list_fields(document: DocumentNode, schema: GraphQLSchema) -> list[tuple[dict[str, int], _Lists]]:
    """Each operation's fields taking `first`, with the lists nested in them (fragments followed), and
    the defaults of its Int variables."""
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    spread: dict[str, _Lists] = {}

    def lists(selections: SelectionSetNode, parent: Any, visiting: frozenset[str]) -> _Lists:
        found: list[_ListField | _Lists] = []
        for selection in selections.selections:
            if isinstance(selection, FieldNode):
                field = parent.fields.get(selection.name.value) if hasattr(parent, "fields") else None
                if field is None:
                    continue  # not in the schema: validation says so
                inner = (
                    lists(selection.selection_set, get_named_type(field.type), visiting)
                    if selection.selection_set is not None
                    else ()
                )
                if "first" not in field.args:
                    found.append(inner)
                    continue
                default = field.args["first"].default_value
                literal = variable = None
                for argument in selection.arguments or ():
                    if argument.name.value == "first":
                        if isinstance(argument.value, IntValueNode):
                            literal = int(argument.value.value)
                        elif isinstance(argument.value, VariableNode):
                            variable = argument.value.name.value
                found.append(
                    _ListField(selection, literal, variable, None if default is Undefined else default, inner)
                )
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                scope = schema.get_type(condition.name.value) if condition else parent
                found.append(lists(selection.selection_set, scope or parent, visiting))
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                fragment = fragments.get(name)
                if fragment is None or name in visiting:
                    continue  # unknown or cyclic: validation says so
                if name not in spread:
                    scope = schema.get_type(fragment.type_condition.name.value)
                    spread[name] = lists(fragment.selection_set, scope or parent, visiting | {name})
                found.append(spread[name])
        return tuple(found)

    operations = []
    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode):
            root = schema.get_root_type(definition.operation)
            if root is not None:
                defaults = {
                    variable.variable.name.value: int(variable.default_value.value)
                    for variable in definition.variable_definitions or ()
                    if isinstance(variable.default_value, IntValueNode)
                }
                operations.append((defaults, lists(definition.selection_set, root, frozenset())))
    return operations


def _list_items_errors(
    operations: Sequence[tuple[dict[str, int], _Lists]], variables: Mapping[str, Any]
) -> list[GraphQLError]:
    """This request's refusals of a `first` above the page size and of lists nested in lists that may
    return more than MAX_LIST_ITEMS items together, each list counted at `first` (from the document, the
    variables, the variable's default or the argument's), nested lists multiplied by the pages around
    them."""
    errors: list[GraphQLError] = []
    for defaults, fields in operations:
        total = _items(fields, variables, defaults, {}, errors)
        if total > MAX_LIST_ITEMS:
            errors.append(
                GraphQLError(
                    f"This query may return {total} list items, more than the {MAX_LIST_ITEMS}"
                    " allowed: ask for smaller pages (first) inside lists.",
                    extensions={"code": INVALID_QUERY, "status": 400},
                )
            )
    return errors


def _items(
    entries: _Lists,
    variables: Mapping[str, Any],
    defaults: Mapping[str, int],
    counted: dict[int, int],
    errors: list[GraphQLError],
) -> int:
    """The items these lists may return per item of the list around them: each list's items and the
    items of the lists in those (a fragment's counted once, however often it is spread)."""
    if id(entries) in counted:
        return counted[id(entries)]
    total = 0
    for entry in entries:
        if not isinstance(entry, _ListField):
            total += _items(entry, variables, defaults, counted, errors)
            continue
        first: Any = entry.literal
        if first is None:
            if entry.variable is None:
                first = entry.default
            else:
                first = variables.get(entry.variable, defaults.get(entry.variable, entry.default))
        if isinstance(first, int) and first > MAX_PAGE_SIZE:
            errors.append(_first_too_large(entry.node))
        size = max(min(first, MAX_PAGE_SIZE), 0) if isinstance(first, int) else MAX_PAGE_SIZE
        total += size * (1 + _items(entry.inner, variables, defaults, counted, errors))
    counted[id(entries)] = total
    return total


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


@dataclass(frozen=True, slots=True, eq=False)
class _Prepared:
    """A document parsed and checked: what every request sending it shares."""

    document: DocumentNode | None  # None: it did not parse (limit_errors say why)
    limit_errors: list[GraphQLError]  # the syntax, token, depth and alias limits
    rule_errors: list[GraphQLError]  # GraphQL's own validation rules
    list_fields: list[tuple[dict[str, int], _Lists]]


class Schema(strawberry.Schema):
    """The features' types, run with the limits every request is held to: parsed and validated once per
    distinct document, the variables-dependent list limit checked per request, before any resolver runs.

    `run` is the way in: Strawberry's `execute` would parse, validate and run extensions on every request,
    and the limits are not Strawberry extensions here."""

    def __init__(self, *, query: type, mutation: type, introspection: bool) -> None:
        super().__init__(query=query, mutation=mutation)
        # Strawberry's limiters' own rules, run once per document instead of once per request.
        self._limit_rules = (
            *QueryDepthLimiter(max_depth=MAX_DEPTH).validation_rules,
            *MaxAliasesLimiter(max_alias_count=MAX_ALIASES).validation_rules,
        )
        self._rules = (
            *specified_rules,
            *([] if introspection else DisableIntrospection().validation_rules),
        )
        self._cached = functools.lru_cache(maxsize=CACHED_DOCUMENTS)(self._prepare)

    def _prepare(self, query: str) -> _Prepared:
        try:
            document = parse(query, max_tokens=MAX_TOKENS)
        except GraphQLError as error:
            return _Prepared(None, [error], [], [])
        return _Prepared(
            document,
            validate(self._schema, document, self._limit_rules),
            # Strawberry's validation: these rules plus its own (nullable and one-of inputs).
            validate_document(self._schema, document, self._rules),
            _list_fields(document, self._schema),
        )

    def prepared(self, query: str) -> _Prepared:
        """The document parsed and checked, from the cache when it was seen before."""
        return self._cached(query) if len(query) <= CACHED_DOCUMENT_LENGTH else self._prepare(query)

    async def run(
        self,
        query: str,
        variables: dict[str, Any] | None,
        context: Any,
        operation_name: str | None,
        allowed: Iterable[OperationType],
    ) -> ExecutionResult:
        """One request's answer, as Strawberry's `execute` would give it: a document breaking a rule or a
        limit is refused (errors, no data) before any resolver runs; an operation that cannot be chosen or
        is not allowed raises Strawberry's exceptions."""
        if not query:
            raise MissingQueryError
        prepared = self.prepared(query)
        if prepared.document is None:
            return ExecutionResult(data=None, errors=prepared.limit_errors)
        # Strawberry's choice: the operation named, else the first.
        if operation_name is None:
            first = get_first_operation(prepared.document)
            operation_name = first.name.value if first is not None and first.name else None
        try:
            operation_type = get_operation_type(prepared.document, operation_name)
        except RuntimeError:
            raise CannotGetOperationTypeError(operation_name) from None
        if operation_type not in allowed:
            raise InvalidOperationTypeError(operation_type)
        errors = [
            *prepared.limit_errors,
            *_list_items_errors(prepared.list_fields, variables or {}),
            *prepared.rule_errors,
        ]
        if errors:
            return ExecutionResult(data=None, errors=errors)
        try:
            result = execute(
                self._schema,
                prepared.document,
                context_value=context,
                variable_values=variables,
                operation_name=operation_name,
                executor_class=self.execution_context_class,
                is_awaitable=optimized_is_awaitable,
            )
            return await result if isawaitable(result) else result
        except Exception as exc:  # as Strawberry's execute: an error in the answer, not a crash
            return ExecutionResult(data=None, errors=[GraphQLError(str(exc), original_error=exc)])


def build_schema(queries: Sequence[type], mutations: Sequence[type], *, introspection: bool) -> Schema:
    """The schema of the features' Query and Mutation types, with the limits every request runs under."""
    return Schema(
        query=merge_types("Query", tuple(queries)),
        mutation=merge_types("Mutation", tuple(mutations)),
        introspection=introspection,
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
    schema: Schema,
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
        source: str,
    ) -> Response[bytes]:
        try:
            result = await schema.run(
                query, variables, GraphQLContext(request, services), operation_name, tuple(allowed)
            )
        except MissingQueryError:
            raise InvalidInput("query", "must not be empty", source=source) from None
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
        return await run(request, data.query, data.variables, data.operationName, allowed, "body")

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
        operation_name = parameters.get("operationName")
        return await run(request, query, variables, operation_name, (OperationType.QUERY,), "query")

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
