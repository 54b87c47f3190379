"""A local stand-in for Upstash Vector's REST API: the embedded engine served to the official SDKs.

    python -m upstash_local.vector_server --port 8080 --token TOKEN [--path DIR] [--index-type HYBRID]
        [--similarity COSINE] [--dimension 384] [--embedding-model BAAI/bge-small-en-v1.5]

It answers every path upstash-vector 0.8 uses, each with an optional `/{namespace}` suffix, in
Upstash's JSON shapes: `{"result": ...}` on success, `{"error": message, "status": code}` otherwise
(401 for a missing or wrong Bearer token, 400 for a malformed body or an invalid request, 404 for an
unknown path, namespace or resumable query). With `--embedding-model NAME` clipdex's local sentence
model stands in for the hosted model NAME (and BM25 for the sparse part of a hybrid index), so text
is embedded on `upsert-data` and `query-data` as on an index created with that model; without it,
the text endpoints fail as they do on an index without a model. `LocalVectorServer` starts one in a
child process, for tests and scripts.
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs

import msgspec

from core.vectors import (
    EmbeddedVectorIndex,
    FusionAlgorithm,
    IndexType,
    MetadataUpdateMode,
    QueryMode,
    QueryResult,
    Similarity,
    SparseVector,
    VectorIndexError,
    VectorRecord,
    WeightingStrategy,
)

logger = logging.getLogger("upstash_local.vector")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
T = TypeVar("T")

ROOT = Path(__file__).resolve().parent.parent
# Upstash documents HEAD, GET, POST and PUT, and its curl examples use DELETE for deletes and resets.
ALLOWED_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE"})
# Big enough for any batch the SDK sends in practice, bounded so one client cannot exhaust memory.
MAX_BODY_BYTES = 64 << 20
# Each resumable query holds state here until it ends or idles out, so their number is capped (as on
# Upstash, which also limits active resumable queries).
MAX_RESUMABLE_QUERIES = 1000
DEFAULT_MAX_IDLE_SECONDS = 3600
SPARSE_MODEL = "BM25"
# The local model is 384-d, so it can stand in only for hosted models of that dimension.
LOCAL_MODEL_DIMENSION = 384
HOSTED_MODEL_DIMENSIONS = {
    "BAAI/bge-small-en-v1.5": 384,
    "BAAI/bge-base-en-v1.5": 768,
    "BAAI/bge-large-en-v1.5": 1024,
    "BAAI/bge-m3": 1024,
    "sentence-transformers/all-MiniLM-L6-v2": 384,
    "mixedbread-ai/mxbai-embed-large-v1": 1024,
    "WhereIsAI/UAE-Large-V1": 1024,
    "google-bert/bert-base-uncased": 768,
}
NO_MODEL_MESSAGE = "Embedding data for this index is not allowed. The index must be created with an embedding model to use it."


class UpstashHTTPError(Exception):
    """An answer other than 200, in Upstash's error shape."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# ---------------------------------------------------------------- request bodies (camelCase, as the SDK sends)

# Upstash's own curl examples send `"includeMetadata": "true"`, so scalars convert leniently (strict=False).


class UpsertBody(msgspec.Struct, rename="camel"):
    id: str | int
    vector: list[float] | None = None
    sparse_vector: SparseVector | None = None
    metadata: dict[str, Any] | None = None
    data: str | None = None


class UpsertDataBody(msgspec.Struct, rename="camel"):
    id: str | int
    data: str
    metadata: dict[str, Any] | None = None


class QueryBody(msgspec.Struct, rename="camel"):
    vector: list[float] | None = None
    sparse_vector: SparseVector | None = None
    data: str | None = None
    top_k: int = 10
    include_metadata: bool = False
    include_vectors: bool = False
    include_data: bool = False
    filter: str | None = None
    weighting_strategy: WeightingStrategy | None = None
    fusion_algorithm: FusionAlgorithm | None = None
    query_mode: QueryMode | None = None
    max_idle: int = DEFAULT_MAX_IDLE_SECONDS  # resumable queries only


class FetchBody(msgspec.Struct, rename="camel"):
    ids: list[str | int] | str | int | None = None
    prefix: str | None = None
    include_metadata: bool = False
    include_vectors: bool = False
    include_data: bool = False


class RangeBody(msgspec.Struct, rename="camel", kw_only=True):
    cursor: str = ""
    limit: int
    prefix: str | None = None
    include_metadata: bool = False
    include_vectors: bool = False
    include_data: bool = False


class DeleteBody(msgspec.Struct, rename="camel"):
    ids: list[str | int] | str | int | None = None
    prefix: str | None = None
    filter: str | None = None


class UpdateBody(msgspec.Struct, rename="camel", kw_only=True):
    id: str | int
    vector: list[float] | None = None
    sparse_vector: SparseVector | None = None
    data: str | None = None
    metadata: dict[str, Any] | None = None
    metadata_update_mode: MetadataUpdateMode = "OVERWRITE"


class ResumeBody(msgspec.Struct, rename="camel", kw_only=True):
    uuid: str
    additional_k: int


class EndBody(msgspec.Struct):
    uuid: str


def _parse(value: Any, kind: type[T]) -> T:
    try:
        return msgspec.convert(value, kind, strict=False)
    except msgspec.ValidationError as exc:
        raise UpstashHTTPError(400, f"Invalid request body: {exc}") from None


def _many(body: Any) -> list[Any]:
    """The items of a body that may be one object or an array of them (upsert and upsert-data)."""
    if isinstance(body, list):
        return body
    if isinstance(body, dict):
        return [body]
    raise UpstashHTTPError(400, "Invalid request body: expected an object or an array of objects")


def _id(value: str | int) -> str:
    # The SDK's types allow integer ids; Upstash stores every id as a string.
    return value if isinstance(value, str) else str(value)


def _ids(value: list[str | int] | str | int) -> list[str]:
    return [_id(item) for item in value] if isinstance(value, list) else [_id(value)]


@dataclass
class _Resumable:
    """A resumable query: what it asks and the ids it has returned; it ends when idle past max_idle."""

    namespace: str
    query: QueryBody
    max_idle: float
    expires: float
    seen: set[str] = field(default_factory=set)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


Handler = Callable[[Any, str, dict[str, list[str]]], Awaitable[Any]]


class VectorServer:
    """The ASGI app: Bearer auth, routing by first path segment (the rest is the namespace), errors in
    Upstash's shape and never a traceback. The engine does the work in worker threads, so concurrent
    clients are served concurrently; writes go one at a time, so an update that must read the stored
    record first (see `_update`) cannot interleave with another write."""

    def __init__(
        self,
        index: EmbeddedVectorIndex,
        token: str,
        *,
        embedding_model: str = "",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not token:
            raise ValueError("the server needs a token")
        self.index = index
        self.has_dense = index.index_type != "SPARSE"
        self.has_sparse = index.index_type != "DENSE"
        self.dense_model = embedding_model if self.has_dense else ""
        self.sparse_model = SPARSE_MODEL if embedding_model and self.has_sparse else ""
        self._expected = f"Bearer {token}".encode()
        self._clock = clock
        self._writes = asyncio.Lock()
        self._resumable: dict[str, _Resumable] = {}
        self._routes: dict[str, Handler] = {
            "upsert": self._upsert,
            "upsert-data": self._upsert_data,
            "query": self._query_vectors,
            "query-data": self._query_data,
            "fetch": self._fetch,
            "range": self._range,
            "delete": self._delete,
            "update": self._update,
            "info": self._info,
            "reset": self._reset,
            "list-namespaces": self._list_namespaces,
            "delete-namespace": self._delete_namespace,
            "resumable-query": self._resumable_vectors,
            "resumable-query-data": self._resumable_data,
            "resumable-query-next": self._resumable_next,
            "resumable-query-end": self._resumable_end,
        }

    @property
    def embeds_text(self) -> bool:
        return bool(self.dense_model or self.sparse_model)

    # ------------------------------------------------------------ ASGI

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        status, payload = await self._answer(scope, receive)
        body = msgspec.json.encode(payload)
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.index.open()
                except Exception as exc:  # a locked or damaged directory: say so and do not serve
                    await send({"type": "lifespan.startup.failed", "message": f"{exc}"})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.index.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _answer(self, scope: Scope, receive: Receive) -> tuple[int, Any]:
        try:
            self._authorize(scope)
            if scope["method"] not in ALLOWED_METHODS:
                raise UpstashHTTPError(405, f"Method {scope['method']} is not allowed")
            operation, _, namespace = scope["path"].lstrip("/").partition("/")
            handler = self._routes.get(operation)
            if handler is None:
                raise UpstashHTTPError(404, f"Not Found: {scope['path']}")
            body = await _read_json(receive)
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
            return 200, {"result": await handler(body, namespace, query)}
        except UpstashHTTPError as exc:
            return exc.status, {"error": exc.message, "status": exc.status}
        except VectorIndexError as exc:
            return 400, {"error": str(exc), "status": 400}
        except Exception:
            logger.exception("%s %s failed", scope.get("method"), scope.get("path"))
            return 500, {"error": "Internal server error; the server log has the details", "status": 500}

    def _authorize(self, scope: Scope) -> None:
        given = next((value for name, value in scope["headers"] if name == b"authorization"), b"")
        if not hmac.compare_digest(given, self._expected):
            raise UpstashHTTPError(401, "Unauthorized: Invalid auth token")

    # ------------------------------------------------------------ writes

    async def _upsert(self, body: Any, namespace: str, _: dict[str, list[str]]) -> str:
        items = [_parse(item, UpsertBody) for item in _many(body)]
        for item in items:
            self._check_parts(item)
        records = [
            VectorRecord(_id(item.id), item.vector, item.sparse_vector, item.metadata, item.data)
            for item in items
        ]
        if records:
            async with self._writes:
                await self.index.upsert(records, namespace)
        return "Success"

    def _check_parts(self, item: UpsertBody) -> None:
        """Upstash needs every vector part of the index on /upsert, unless it has a model to derive the
        part from data (the engine would always derive the sparse part by BM25)."""
        if self.has_dense and item.vector is None and not (self.dense_model and item.data is not None):
            raise UpstashHTTPError(
                400, f"Vector {item.id!r} has no dense vector, which a {self.index.index_type} index needs"
            )
        if (
            self.has_sparse
            and item.sparse_vector is None
            and not (self.sparse_model and item.data is not None)
        ):
            raise UpstashHTTPError(
                400, f"Vector {item.id!r} has no sparse vector, which a {self.index.index_type} index needs"
            )

    async def _upsert_data(self, body: Any, namespace: str, _: dict[str, list[str]]) -> str:
        self._require_model()
        items = [_parse(item, UpsertDataBody) for item in _many(body)]
        if items:
            async with self._writes:
                await self.index.upsert_data([(_id(i.id), i.data, i.metadata) for i in items], namespace)
        return "Success"

    def _require_model(self) -> None:
        if not self.embeds_text:
            raise UpstashHTTPError(400, NO_MODEL_MESSAGE)

    async def _update(self, body: Any, namespace: str, _: dict[str, list[str]]) -> dict[str, int]:
        change = _parse(body, UpdateBody)
        id = _id(change.id)
        if self.has_dense and self.has_sparse and (change.vector is None) != (change.sparse_vector is None):
            raise UpstashHTTPError(
                400, "For hybrid indexes either none or both of vector and sparseVector must be present"
            )
        async with self._writes:
            sparse = change.sparse_vector
            if change.data is not None and sparse is None and self.has_sparse and not self.sparse_model:
                # Without a sparse model new data changes only the data on Upstash, but the engine
                # re-derives the sparse part by BM25; giving it the stored part keeps that as it is.
                found = await self.index.fetch(
                    [id],
                    include_vectors=True,
                    include_metadata=False,
                    include_data=False,
                    namespace=namespace,
                )
                sparse = found[0].sparse_vector if found[0] is not None else None
            updated = await self.index.update(
                id,
                vector=change.vector,
                sparse_vector=sparse,
                data=change.data,
                metadata=change.metadata,
                metadata_update_mode=change.metadata_update_mode,
                namespace=namespace,
            )
        return {"updated": int(updated)}

    async def _delete(self, body: Any, namespace: str, _: dict[str, list[str]]) -> dict[str, int]:
        # The body is an id, an array of ids, or {"ids" | "prefix" | "filter": ...}.
        if isinstance(body, list | str) or (isinstance(body, int) and not isinstance(body, bool)):
            target = DeleteBody(ids=_parse(body, list[str | int] | str | int))
        else:
            target = _parse(body, DeleteBody)
        ids = _ids(target.ids) if target.ids is not None else None
        async with self._writes:
            deleted = await self.index.delete(
                ids, prefix=target.prefix, filter=target.filter, namespace=namespace
            )
        return {"deleted": deleted}

    async def _reset(self, _: Any, namespace: str, query: dict[str, list[str]]) -> str:
        every = "all" in query and query["all"][-1].lower() not in ("false", "0")
        async with self._writes:
            await self.index.reset(namespace=namespace, all=every)
        return "Success"

    async def _delete_namespace(self, _: Any, namespace: str, __: dict[str, list[str]]) -> str:
        async with self._writes:
            deleted = await self.index.delete_namespace(namespace)
        if not deleted:
            raise UpstashHTTPError(404, f"Namespace {namespace} for the index does not exist")
        return "Success"

    # ------------------------------------------------------------ reads

    async def _query_vectors(self, body: Any, namespace: str, _: dict[str, list[str]]) -> Any:
        return await self._query_batch(body, namespace, text=False)

    async def _query_data(self, body: Any, namespace: str, _: dict[str, list[str]]) -> Any:
        return await self._query_batch(body, namespace, text=True)

    async def _query_batch(self, body: Any, namespace: str, *, text: bool) -> Any:
        # An array asks several queries at once; Upstash answers an array of one with a single result
        # list, not a nested one (upstash-vector's query_many relies on that).
        if isinstance(body, list) and len(body) != 1:
            return [await self._run(_parse(query, QueryBody), namespace, text=text) for query in body]
        return await self._run(
            _parse(body[0] if isinstance(body, list) else body, QueryBody), namespace, text=text
        )

    async def _run(self, query: QueryBody, namespace: str, *, text: bool) -> list[QueryResult]:
        if text:
            self._require_model()
            if query.data is None:
                raise UpstashHTTPError(400, "Query data is missing: query-data needs `data`")
            if query.vector is not None or query.sparse_vector is not None:
                raise UpstashHTTPError(400, "A query-data query takes `data`, not `vector` or `sparseVector`")
        elif query.data is not None:
            raise UpstashHTTPError(
                400, "Query text goes to query-data; query takes `vector` or `sparseVector`"
            )
        return await self.index.query(
            vector=query.vector,
            sparse_vector=query.sparse_vector,
            data=query.data,
            top_k=query.top_k,
            include_metadata=query.include_metadata,
            include_vectors=query.include_vectors,
            include_data=query.include_data,
            filter=query.filter or "",
            namespace=namespace,
            fusion_algorithm=query.fusion_algorithm or "RRF",
            query_mode=query.query_mode or "HYBRID",
            weighting_strategy=query.weighting_strategy,
        )

    async def _fetch(self, body: Any, namespace: str, _: dict[str, list[str]]) -> list[VectorRecord | None]:
        wanted = _parse(body, FetchBody)
        return await self.index.fetch(
            _ids(wanted.ids) if wanted.ids is not None else None,
            prefix=wanted.prefix,
            include_metadata=wanted.include_metadata,
            include_vectors=wanted.include_vectors,
            include_data=wanted.include_data,
            namespace=namespace,
        )

    async def _range(self, body: Any, namespace: str, _: dict[str, list[str]]) -> dict[str, Any]:
        wanted = _parse(body, RangeBody)
        page = await self.index.range(
            cursor=wanted.cursor,  # the engine's cursors are Upstash's: positions, "0" to start
            limit=wanted.limit,
            prefix=wanted.prefix,
            include_metadata=wanted.include_metadata,
            include_vectors=wanted.include_vectors,
            include_data=wanted.include_data,
            namespace=namespace,
        )
        return {"nextCursor": page.next_cursor, "vectors": page.vectors}

    async def _info(self, _: Any, __: str, ___: dict[str, list[str]]) -> dict[str, Any]:
        info = await self.index.info()
        result: dict[str, Any] = {
            "vectorCount": info.vector_count,
            "pendingVectorCount": info.pending_vector_count,
            "indexSize": info.index_size,
            "dimension": info.dimension,
            "similarityFunction": info.similarity_function,
            "indexType": info.index_type,
            "namespaces": info.namespaces,
        }
        if self.has_dense:
            result["denseIndex"] = {
                "dimension": info.dimension,
                "similarityFunction": info.similarity_function,
                "embeddingModel": self.dense_model,
            }
        if self.has_sparse:
            result["sparseIndex"] = {"embeddingModel": self.sparse_model}
        return result

    async def _list_namespaces(self, _: Any, __: str, ___: dict[str, list[str]]) -> list[str]:
        return await self.index.list_namespaces()

    # ------------------------------------------------------------ resumable queries

    async def _resumable_vectors(self, body: Any, namespace: str, _: dict[str, list[str]]) -> dict[str, Any]:
        return await self._resumable_start(body, namespace, text=False)

    async def _resumable_data(self, body: Any, namespace: str, _: dict[str, list[str]]) -> dict[str, Any]:
        return await self._resumable_start(body, namespace, text=True)

    async def _resumable_start(self, body: Any, namespace: str, *, text: bool) -> dict[str, Any]:
        query = _parse(body, QueryBody)
        if query.max_idle < 1:
            raise UpstashHTTPError(400, "maxIdle must be a positive number of seconds")
        self._drop_idle()
        if len(self._resumable) >= MAX_RESUMABLE_QUERIES:
            raise UpstashHTTPError(
                400, f"Too many active resumable queries (at most {MAX_RESUMABLE_QUERIES}); end some first"
            )
        results = await self._run(query, namespace, text=text)
        key = str(uuid.uuid4())
        state = _Resumable(namespace, query, query.max_idle, self._clock() + query.max_idle)
        state.seen.update(result.id for result in results)
        self._resumable[key] = state
        return {"uuid": key, "scores": results}

    async def _resumable_next(self, body: Any, _: str, __: dict[str, list[str]]) -> list[QueryResult]:
        request = _parse(body, ResumeBody)
        if request.additional_k < 1:
            raise UpstashHTTPError(400, "additionalK must be a positive integer")
        state = self._live(request.uuid)
        async with state.lock:
            # The engine has no cursor into a ranking: rank again, deeper, and skip what was returned
            # (so nothing repeats even when writes since then moved records up).
            deeper = msgspec.structs.replace(state.query, top_k=len(state.seen) + request.additional_k)
            results = await self._run(deeper, state.namespace, text=state.query.data is not None)
            fresh = [result for result in results if result.id not in state.seen][: request.additional_k]
            state.seen.update(result.id for result in fresh)
            state.expires = self._clock() + state.max_idle
        return fresh

    async def _resumable_end(self, body: Any, _: str, __: dict[str, list[str]]) -> str:
        request = _parse(body, EndBody)
        self._live(request.uuid)
        del self._resumable[request.uuid]
        return "Success"

    def _live(self, key: str) -> _Resumable:
        self._drop_idle()
        state = self._resumable.get(key)
        if state is None:
            raise UpstashHTTPError(404, f"Resumable query {key} does not exist (it ended or idled out)")
        return state

    def _drop_idle(self) -> None:
        now = self._clock()
        for key in [key for key, state in self._resumable.items() if state.expires <= now]:
            del self._resumable[key]


async def _read_json(receive: Receive) -> Any:
    """The request's JSON body; None when there is none (info, reset, list-namespaces, ...)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise UpstashHTTPError(400, "The client went away before sending the whole body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise UpstashHTTPError(413, f"The request body exceeds {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    raw = b"".join(chunks)
    if not raw.strip():
        return None
    try:
        return msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        raise UpstashHTTPError(400, f"Invalid JSON body: {exc}") from None


# ---------------------------------------------------------------- building and running


def build_server(
    token: str,
    *,
    index_type: IndexType = "DENSE",
    similarity: Similarity = "COSINE",
    dimension: int = LOCAL_MODEL_DIMENSION,
    embedding_model: str = "",
    path: Path | None = None,
) -> VectorServer:
    """A server for an index of this configuration; ValueError names what does not fit."""
    embed = None
    if embedding_model and index_type == "SPARSE":
        if embedding_model != SPARSE_MODEL:
            raise ValueError(
                f"a SPARSE index embeds with a sparse model; only {SPARSE_MODEL} is available here"
            )
    elif embedding_model:
        if embedding_model == SPARSE_MODEL:
            raise ValueError(f"{SPARSE_MODEL} is a sparse model; a {index_type} index needs a dense one")
        hosted = HOSTED_MODEL_DIMENSIONS.get(embedding_model)
        if hosted is not None and hosted != dimension:
            raise ValueError(f"{embedding_model} makes {hosted}-d vectors, not --dimension {dimension}")
        if dimension != LOCAL_MODEL_DIMENSION:
            raise ValueError(
                f"the local model standing in for {embedding_model} makes {LOCAL_MODEL_DIMENSION}-d vectors, "
                f"not --dimension {dimension}"
            )
        from core.embeddings import installed_embedder

        embed = installed_embedder().embed  # loaded now: a missing model fails the start, not a request
    index = EmbeddedVectorIndex(
        dimension=dimension, similarity=similarity, index_type=index_type, embed=embed, path=path
    )
    return VectorServer(index, token, embedding_model=embedding_model)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m upstash_local.vector_server", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument(
        "--token",
        default=os.environ.get("UPSTASH_VECTOR_REST_TOKEN", ""),
        help="the Bearer token clients must send (default: $UPSTASH_VECTOR_REST_TOKEN)",
    )
    parser.add_argument("--path", type=Path, help="keep the index in this directory (default: in memory)")
    parser.add_argument("--index-type", choices=["DENSE", "SPARSE", "HYBRID"], default="DENSE")
    parser.add_argument("--similarity", choices=["COSINE", "DOT_PRODUCT", "EUCLIDEAN"], default="COSINE")
    parser.add_argument("--dimension", type=int, default=LOCAL_MODEL_DIMENSION)
    parser.add_argument(
        "--embedding-model",
        default="",
        help="the hosted model the local one stands in for, e.g. BAAI/bge-small-en-v1.5 (BM25 for SPARSE)",
    )
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"], default="info")
    args = parser.parse_args(argv)
    if not args.token:
        parser.error("--token (or UPSTASH_VECTOR_REST_TOKEN) is required")
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        server = build_server(
            args.token,
            index_type=args.index_type,
            similarity=args.similarity,
            dimension=args.dimension,
            embedding_model=args.embedding_model,
            path=args.path,
        )
    except (ValueError, RuntimeError) as exc:
        parser.error(str(exc))
    import uvicorn

    logger.info(
        "Upstash Vector stand-in: %s %s %d-d index%s on http://%s:%d",
        args.index_type,
        args.similarity,
        args.dimension,
        f" embedding with {args.embedding_model}" if args.embedding_model else "",
        args.host,
        args.port,
    )
    uvicorn.run(server, host=args.host, port=args.port, log_level=args.log_level, access_log=False)


@dataclass
class LocalVectorServer:
    """A vector server in a child process on a free port with a random token, for tests and scripts.

    with LocalVectorServer.start(index_type="HYBRID", dimension=8) as server:
        index = AsyncIndex(server.url, server.token)
    """

    url: str
    token: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @classmethod
    def start(
        cls,
        *,
        index_type: IndexType = "DENSE",
        similarity: Similarity = "COSINE",
        dimension: int = LOCAL_MODEL_DIMENSION,
        embedding_model: str = "",
        path: Path | None = None,
        token: str | None = None,
        startup_timeout: float = 30.0,
    ) -> LocalVectorServer:
        token = token or uuid.uuid4().hex
        options = ["--index-type", index_type, "--similarity", similarity, "--dimension", str(dimension)]
        if embedding_model:
            options += ["--embedding-model", embedding_model]
        if path is not None:
            options += ["--path", str(path)]
        last_error: RuntimeError | None = None
        for _ in range(3):  # a free port can be taken between finding it and binding it
            port = _free_port()
            log = Path(tempfile.mkstemp(prefix="upstash-vector-", suffix=".log")[1])
            command = [sys.executable, "-m", "upstash_local.vector_server", "--port", str(port), *options]
            with log.open("wb") as output:
                process = subprocess.Popen(
                    [*command, "--log-level", "warning"],
                    cwd=ROOT,
                    # In the environment, not on the command line, where other users' `ps` would see it.
                    env={**os.environ, "UPSTASH_VECTOR_REST_TOKEN": token},
                    stdout=output,
                    stderr=subprocess.STDOUT,
                )
            server = cls(f"http://127.0.0.1:{port}", token, process, log)
            try:
                server._wait_until_ready(startup_timeout)
                return server
            except RuntimeError as exc:
                taken = "address already in use" in server.log_path.read_text(errors="replace").lower()
                server.stop()
                if not taken:
                    raise
                last_error = exc
        assert last_error is not None
        raise last_error

    def _wait_until_ready(self, timeout: float) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        headers = {"Authorization": f"Bearer {self.token}"}
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the vector server exited at start:\n{self.log_path.read_text()[-2000:]}")
            try:
                if httpx.post(f"{self.url}/info", headers=headers, timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"the vector server did not answer within {timeout:g} s")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log_path.unlink(missing_ok=True)

    def __enter__(self) -> LocalVectorServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


if __name__ == "__main__":
    main()
