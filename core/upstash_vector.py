"""Upstash Vector behind the vector index port, through one official `upstash_vector.AsyncIndex`.

Two embedding modes. `local`: clipdex embeds text with its own model and sends vectors, to an index
without hosted models; for the sparse part of a hybrid (or sparse) index it sends BM25 vectors made
with core.vectors' BM25 (Upstash takes no text on /upsert for an index without models, and a hybrid
upsert must carry both parts), and queries send each word once with `weightingStrategy=IDF`, so
Upstash weights them by its own document counts: the same BM25 the embedded engine scores.
`upstash`: clipdex sends text (`upsert-data`, `query-data`) and the index's hosted models embed it.

Invalid requests raise `VectorIndexError`, like the embedded engine; an Upstash that cannot answer
(unreachable, too slow, token refused, server error) raises `UpstashVectorUnavailable`.
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import httpx
import numpy as np
from upstash_vector import AsyncIndex
from upstash_vector import types as sdk
from upstash_vector.errors import ClientError, UpstashError

from core.vectors import (
    DEFAULT_NAMESPACE,
    FusionAlgorithm,
    IndexInfo,
    IndexType,
    MetadataUpdateMode,
    NamespaceInfo,
    QueryMode,
    QueryResult,
    RangeResult,
    SparseVector,
    VectorIndex,
    VectorIndexError,
    VectorRecord,
    WeightingStrategy,
    bm25_document_vector,
    bm25_query_vector,
)
from core.vectors.encoding import Embed, QueryVectors

if TYPE_CHECKING:
    from core.settings import Settings

T = TypeVar("T")
EmbeddingMode = Literal["local", "upstash"]

# Upstash refuses sparse vectors with more non-zero dimensions than this.
MAX_SPARSE_DIMENSIONS = 1000
# Writes run off the request path (the outbox relay, reindexing) and a text upsert makes Upstash embed
# a whole batch, so they get this many times the read timeout.
WRITE_TIMEOUT_FACTOR = 5
# Answers that mean the request itself was wrong; 401/403/429 and 5xx are Upstash being unavailable.
_CALLER_ERRORS = frozenset({400, 404, 405, 409, 413, 422})
_FUSIONS = ("RRF", "DBSF")
_QUERY_MODES = ("HYBRID", "DENSE", "SPARSE")
_UPDATE_MODES = ("OVERWRITE", "PATCH")

# The HTTP statuses of the request under way, for the SDK's errors, which keep only the message.
_statuses: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar("upstash_statuses", default=None)


class UpstashVectorUnavailable(RuntimeError):
    """Upstash Vector gave no usable answer: unreachable, too slow, token refused, or a server error."""


class _NotFound(VectorIndexError):
    """Upstash answered 404 (a namespace or resumable query that does not exist)."""


async def _record_status(response: httpx.Response) -> None:
    statuses = _statuses.get()
    if statuses is not None:
        statuses.append(response.status_code)


class UpstashVectorIndex(VectorIndex):
    """The port over one Upstash Vector index; the index's type (dense, sparse or hybrid) is read from
    its `info` when not given, once.

    One HTTP client is opened here and closed by `close()`. Every request has a deadline of
    `timeout_seconds` (writes `WRITE_TIMEOUT_FACTOR` times that), so a slow Upstash fails a request
    instead of holding it; the SDK does not re-send (a timed-out request may have been applied, and
    retries would multiply the wait), and only a connection that could not be made is tried once more.
    """

    def __init__(
        self,
        url: str,
        token: str,
        *,
        embedding: EmbeddingMode = "local",
        embed: Embed | None = None,
        index_type: IndexType | None = None,
        timeout_seconds: float = 2.0,
    ) -> None:
        if embedding not in ("local", "upstash"):
            raise ValueError(f"embedding must be local or upstash, not {embedding!r}")
        if timeout_seconds <= 0:
            raise ValueError("timeout_seconds must be positive")
        self.url = url.rstrip("/")
        self.embedding: EmbeddingMode = embedding
        self._embed = embed
        self._queries = QueryVectors(self._embedded)
        self._index_type = index_type
        self._expected: tuple[int, str, str | None] | None = None
        self._timeout = timeout_seconds
        self._write_timeout = timeout_seconds * WRITE_TIMEOUT_FACTOR
        self._sdk = AsyncIndex(self.url, token, retries=0, retry_interval=0.0, allow_telemetry=False)
        # AsyncIndex takes no timeout (its own client waits up to 600 s per read), so it gets ours (a
        # private attribute of upstash-vector 0.8, which pyproject pins below 0.9); the client it made
        # has opened no connection yet and holds nothing.
        self._client = self._sdk._client = httpx.AsyncClient(
            timeout=httpx.Timeout(self._write_timeout, connect=timeout_seconds),
            transport=httpx.AsyncHTTPTransport(retries=1),  # connection failures only: nothing was sent
            event_hooks={"response": [_record_status]},
        )

    @classmethod
    def from_settings(cls, settings: Settings, embed: Embed | None = None) -> UpstashVectorIndex:
        """The index UPSTASH_VECTOR_REST_URL/TOKEN name; local mode embeds with `embed` (default: the
        installed model)."""
        if settings.vector_embedding == "local" and embed is None:
            from core.embeddings import installed_embedder

            embed = installed_embedder().embed
        return cls(
            settings.upstash_vector_rest_url,
            settings.upstash_vector_rest_token,
            embedding=settings.vector_embedding,
            embed=embed,
            timeout_seconds=settings.upstash_timeout_seconds,
        )

    # ------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        """Check the index fits what clipdex will send (see `expect`); the client connects on first use."""
        if self._expected is not None:
            dimension, similarity, model = self._expected
            await self.check_compatible(
                dimension, similarity, self.embedding, model, expected_index_type=self._index_type or "HYBRID"
            )

    def expect(self, dimension: int, similarity: str, model: str | None) -> UpstashVectorIndex:
        """Have `open()` refuse an index whose dimension, similarity or hosted model does not fit."""
        self._expected = (dimension, similarity, model)
        return self

    async def close(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> UpstashVectorIndex:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _call(self, request: Callable[[], Awaitable[T]], *, write: bool = False) -> T:
        """One SDK request under its deadline, its errors turned into the port's."""
        statuses: list[int] = []
        context = _statuses.set(statuses)
        deadline = self._write_timeout if write else self._timeout
        try:
            async with asyncio.timeout(deadline):
                return await request()
        except ClientError as exc:
            raise VectorIndexError(str(exc)) from None
        except UpstashError as exc:
            status = statuses[-1] if statuses else 0
            if status == 404:
                raise _NotFound(str(exc)) from None
            if status in _CALLER_ERRORS:
                raise VectorIndexError(str(exc)) from None
            raise UpstashVectorUnavailable(f"Upstash Vector answered HTTP {status}: {exc}") from None
        except TimeoutError:
            raise UpstashVectorUnavailable(f"Upstash Vector did not answer within {deadline:g} s") from None
        except httpx.HTTPError as exc:
            raise UpstashVectorUnavailable(f"Upstash Vector is unreachable: {exc!r}") from None
        except (ValueError, KeyError, TypeError) as exc:  # a body that is not Upstash's JSON (a proxy's page)
            raise UpstashVectorUnavailable(f"Upstash Vector gave an unexpected answer: {exc!r}") from None
        finally:
            _statuses.reset(context)

    async def _kind(self) -> IndexType:
        if self._index_type is None:
            self._index_type = _index_type_of(await self._call(self._sdk.info))
        return self._index_type

    # ------------------------------------------------------------ start-up check

    async def check_compatible(
        self,
        expected_dimension: int,
        expected_similarity: str,
        embedding_mode: EmbeddingMode,
        expected_model: str | None = None,
        *,
        expected_index_type: IndexType | None = None,
    ) -> None:
        """Raise VectorIndexError naming everything about the index that does not fit the configuration:
        index type, dimension, similarity function, embedding models for the embedding mode."""
        info = await self._call(self._sdk.info)
        kind = self._index_type = _index_type_of(info)
        problems: list[str] = []
        if embedding_mode != self.embedding:
            problems.append(
                f"this client was made for VECTOR_EMBEDDING={self.embedding}, not {embedding_mode}"
            )
        if expected_index_type is not None and kind != expected_index_type:
            problems.append(f"it is a {kind} index, expected {expected_index_type}")
        if kind != "SPARSE":
            dense = info.dense_index
            dimension = dense.dimension if dense is not None else info.dimension
            similarity = dense.similarity_function if dense is not None else info.similarity_function
            if dimension != expected_dimension:
                problems.append(f"its dimension is {dimension}, expected {expected_dimension}")
            if similarity != expected_similarity:
                problems.append(f"its similarity function is {similarity}, expected {expected_similarity}")
        dense_model = info.dense_index.embedding_model if info.dense_index is not None else ""
        sparse_model = info.sparse_index.embedding_model if info.sparse_index is not None else ""
        if embedding_mode == "local":
            if dense_model:
                problems.append(
                    f"it embeds with the hosted model {dense_model}, but VECTOR_EMBEDDING=local sends clipdex's "
                    "own vectors: use an index without an embedding model, or VECTOR_EMBEDDING=upstash"
                )
            if sparse_model:
                problems.append(
                    f"its sparse part embeds with the hosted model {sparse_model}, but VECTOR_EMBEDDING=local "
                    "sends clipdex's own BM25 vectors: use an index without a sparse embedding model"
                )
        elif embedding_mode == "upstash":
            wanted = f" ({expected_model})" if expected_model else ""
            if kind != "SPARSE" and not dense_model:
                problems.append(
                    "it has no embedding model, so it cannot embed the text VECTOR_EMBEDDING=upstash sends: "
                    f"create it with a hosted model{wanted}, or use VECTOR_EMBEDDING=local"
                )
            elif kind != "SPARSE" and expected_model and not _same_model(dense_model, expected_model):
                problems.append(f"its embedding model is {dense_model}, expected {expected_model}")
            if kind != "DENSE" and not sparse_model:
                problems.append(
                    "its sparse part has no embedding model (e.g. BM25), so it cannot embed the text "
                    "VECTOR_EMBEDDING=upstash sends"
                )
        else:
            raise VectorIndexError(f"embedding_mode must be local or upstash, not {embedding_mode!r}")
        if problems:
            raise VectorIndexError(
                f"the Upstash Vector index at {self.url} does not fit clipdex's configuration: "
                + "; ".join(problems)
            )

    # ------------------------------------------------------------ writes

    async def upsert(self, records: list[VectorRecord], namespace: str = DEFAULT_NAMESPACE) -> None:
        _check_namespace(namespace)
        if not isinstance(records, list | tuple) or not all(isinstance(r, VectorRecord) for r in records):
            raise VectorIndexError("records must be a list of VectorRecord")
        if not records:
            return
        if self.embedding == "local":
            items: list[sdk.Vector | sdk.Data] = await self._with_local_parts(list(records))
        else:
            items = [_to_sdk(record) for record in records]
        # Upstash takes vectors on /upsert and text on /upsert-data: runs of each, in the given order
        # (so of two records with one id the later still wins).
        for _, run in itertools.groupby(items, key=lambda item: isinstance(item, sdk.Data)):
            batch = list(run)
            await self._call(lambda batch=batch: self._sdk.upsert(batch, namespace=namespace), write=True)

    async def upsert_data(
        self, items: list[tuple[str, str, dict[str, Any] | None]], namespace: str = DEFAULT_NAMESPACE
    ) -> None:
        try:
            records = [VectorRecord(id=id, data=text, metadata=metadata) for id, text, metadata in items]
        except (TypeError, ValueError):
            raise VectorIndexError("items must be (id, text, metadata) tuples") from None
        for record in records:
            if not isinstance(record.data, str):
                raise VectorIndexError(f"the text of {record.id!r} must be a string")
        await self.upsert(records, namespace)

    async def _with_local_parts(self, records: list[VectorRecord]) -> list[sdk.Vector | sdk.Data]:
        """Records with the parts the index needs made here from `data`: dense by the local model
        (one batch), sparse by BM25. A record with neither parts nor data goes as it is, for Upstash
        to refuse."""
        kind = await self._kind()
        needs_dense = [
            r for r in records if kind != "SPARSE" and r.vector is None and isinstance(r.data, str)
        ]
        vectors = await self._embed_texts([r.data or "" for r in needs_dense]) if needs_dense else []
        dense_of = {id(record): vector for record, vector in zip(needs_dense, vectors, strict=True)}
        items: list[sdk.Vector | sdk.Data] = []
        for record in records:
            vector = dense_of.get(id(record), record.vector)
            sparse = record.sparse_vector
            if kind != "DENSE" and sparse is None and isinstance(record.data, str):
                sparse = _bm25_document(record.data)
            items.append(_to_sdk(record, vector=vector, sparse_vector=sparse, as_vector=True))
        return items

    def _embedded(self, texts: list[str]) -> np.ndarray:
        if self._embed is None:
            raise VectorIndexError("this index has no embedding model: give dense vectors, not text")
        vectors = np.asarray(self._embed(texts), dtype=np.float32)
        if vectors.ndim != 2 or len(vectors) != len(texts) or not np.isfinite(vectors).all():
            raise VectorIndexError(f"the embedding model returned {vectors.shape} for {len(texts)} texts")
        return vectors

    async def _embed_texts(self, texts: list[str]) -> list[list[float]]:
        return (await asyncio.to_thread(self._embedded, texts)).tolist()

    async def _query_vector(self, text: str) -> list[float]:
        """A query text's vector; a remembered one without a trip to a worker thread."""
        vector = self._queries.remembered(text)
        if vector is None:
            vector = await asyncio.to_thread(self._queries, text)
        return vector.tolist()

    async def update(
        self,
        id: str,
        *,
        vector: list[float] | None = None,
        sparse_vector: SparseVector | None = None,
        data: str | None = None,
        metadata: dict[str, Any] | None = None,
        metadata_update_mode: MetadataUpdateMode = "OVERWRITE",
        namespace: str = DEFAULT_NAMESPACE,
    ) -> bool:
        """Change parts of a record. New `data` re-derives the parts the index derives from text
        (locally in local mode, by the hosted models in upstash mode) unless that part is given too.
        Upstash refuses to change only one part of a hybrid record."""
        _check_namespace(namespace)
        _check_id(id)
        if metadata_update_mode not in _UPDATE_MODES:
            raise VectorIndexError(
                f"metadata_update_mode must be one of OVERWRITE, PATCH, not {metadata_update_mode!r}"
            )
        if vector is None and sparse_vector is None and data is None and metadata is None:
            raise VectorIndexError("update needs a vector, sparse_vector, data or metadata")
        if data is not None and not isinstance(data, str):
            raise VectorIndexError("data must be a string")
        if metadata is not None and not isinstance(metadata, dict):
            raise VectorIndexError(f"metadata must be an object (dict), not {type(metadata).__name__}")
        if self.embedding == "local" and data is not None:
            kind = await self._kind()
            if kind != "SPARSE" and vector is None and self._embed is not None:
                vector = (await self._embed_texts([data]))[0]
            if kind != "DENSE" and sparse_vector is None:
                sparse_vector = _bm25_document(data)
        return await self._call(
            lambda: self._sdk.update(
                id,
                vector=_floats(vector) if vector is not None else None,
                data=data,
                metadata=metadata,
                namespace=namespace,
                metadata_update_mode=sdk.MetadataUpdateMode(metadata_update_mode),
                sparse_vector=_sdk_sparse(sparse_vector) if sparse_vector is not None else None,
            ),
            write=True,
        )

    async def delete(
        self,
        ids: list[str] | None = None,
        *,
        prefix: str | None = None,
        filter: str | None = None,
        namespace: str = DEFAULT_NAMESPACE,
    ) -> int:
        _check_namespace(namespace)
        if sum(value is not None for value in (ids, prefix, filter)) != 1:
            raise VectorIndexError("delete takes exactly one of ids, prefix or filter")
        if ids is not None:
            ids = _id_list(ids)
            if not ids:
                return 0
        result = await self._call(
            lambda: self._sdk.delete(ids, namespace=namespace, prefix=prefix, filter=filter), write=True
        )
        return result.deleted

    async def reset(self, *, namespace: str = DEFAULT_NAMESPACE, all: bool = False) -> None:
        _check_namespace(namespace)
        await self._call(lambda: self._sdk.reset(namespace=namespace, all=all), write=True)

    async def delete_namespace(self, namespace: str) -> bool:
        _check_namespace(namespace)
        if namespace == DEFAULT_NAMESPACE:
            raise VectorIndexError("the default namespace cannot be deleted")
        try:
            await self._call(lambda: self._sdk.delete_namespace(namespace), write=True)
        except _NotFound:
            return False
        return True

    # ------------------------------------------------------------ reads

    async def query(
        self,
        *,
        vector: list[float] | None = None,
        sparse_vector: SparseVector | None = None,
        data: str | None = None,
        top_k: int = 10,
        include_metadata: bool = False,
        include_vectors: bool = False,
        include_data: bool = False,
        filter: str = "",
        namespace: str = DEFAULT_NAMESPACE,
        fusion_algorithm: FusionAlgorithm = "RRF",
        query_mode: QueryMode = "HYBRID",
        weighting_strategy: WeightingStrategy | None = None,
    ) -> list[QueryResult]:
        _check_namespace(namespace)
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise VectorIndexError(f"top_k must be a positive integer, not {top_k!r}")
        if fusion_algorithm not in _FUSIONS:
            raise VectorIndexError(f"fusion_algorithm must be one of RRF, DBSF, not {fusion_algorithm!r}")
        if query_mode not in _QUERY_MODES:
            raise VectorIndexError(f"query_mode must be one of HYBRID, DENSE, SPARSE, not {query_mode!r}")
        if weighting_strategy not in (None, "IDF"):
            raise VectorIndexError(f"weighting_strategy must be IDF or None, not {weighting_strategy!r}")
        if filter is not None and not isinstance(filter, str):
            raise VectorIndexError("filter must be a string")
        kind = await self._kind()
        if (query_mode == "DENSE" and kind == "SPARSE") or (query_mode == "SPARSE" and kind == "DENSE"):
            raise VectorIndexError(
                f"query_mode {query_mode} needs an index with {query_mode.lower()} vectors"
            )
        options: dict[str, Any] = {
            "top_k": top_k,
            "include_metadata": include_metadata,
            "include_vectors": include_vectors,
            "include_data": include_data,
            "filter": filter or "",
            "namespace": namespace,
        }
        uses_dense = kind != "SPARSE" and query_mode != "SPARSE"
        uses_sparse = kind != "DENSE" and query_mode != "DENSE"
        if data is not None:
            if vector is not None or sparse_vector is not None:
                raise VectorIndexError("query by data or by vectors, not both")
            if not isinstance(data, str) or not data.strip():
                raise VectorIndexError("the query text is empty")
            if self.embedding == "upstash":
                options["data"] = data
                if kind == "HYBRID":  # Upstash takes these for hybrid indexes only
                    options["query_mode"] = sdk.QueryMode(query_mode)
                    options["fusion_algorithm"] = sdk.FusionAlgorithm(fusion_algorithm)
                if uses_sparse:  # a text query is IDF-weighted, as in the embedded engine
                    options["weighting_strategy"] = sdk.WeightingStrategy.IDF
                return await self._query(options)
            vector = await self._query_vector(data) if uses_dense else None
            sparse_vector = _bm25_query(data) if uses_sparse else None
            if sparse_vector is not None and not sparse_vector.indices:
                # Only stopwords: no word to match. Upstash may refuse an empty sparse query.
                if vector is None:
                    return []
                sparse_vector = None
            weighting_strategy = "IDF" if sparse_vector is not None else None
        elif vector is None and sparse_vector is None:
            raise VectorIndexError("query needs a vector, a sparse_vector or data")
        elif query_mode == "DENSE":
            if vector is None:
                raise VectorIndexError("query_mode DENSE needs a dense query vector")
            sparse_vector = None
        elif query_mode == "SPARSE":
            if sparse_vector is None:
                raise VectorIndexError("query_mode SPARSE needs a sparse query vector")
            vector = None
        # The query mode is applied here, by the parts sent: Upstash takes queryMode only with text.
        if vector is not None:
            options["vector"] = _floats(vector)
        if sparse_vector is not None:
            options["sparse_vector"] = _sdk_sparse(sparse_vector)
            if weighting_strategy is not None:
                options["weighting_strategy"] = sdk.WeightingStrategy(weighting_strategy)
            if vector is not None:
                options["fusion_algorithm"] = sdk.FusionAlgorithm(fusion_algorithm)
        return await self._query(options)

    async def _query(self, options: dict[str, Any]) -> list[QueryResult]:
        results = await self._call(lambda: self._sdk.query(**options))
        return [
            QueryResult(
                id=result.id,
                score=result.score,
                vector=result.vector,
                sparse_vector=_port_sparse(result.sparse_vector),
                metadata=result.metadata,
                data=result.data,
            )
            for result in results
        ]

    async def fetch(
        self,
        ids: list[str] | None = None,
        *,
        prefix: str | None = None,
        include_metadata: bool = True,
        include_vectors: bool = False,
        include_data: bool = True,
        namespace: str = DEFAULT_NAMESPACE,
    ) -> list[VectorRecord | None]:
        _check_namespace(namespace)
        if (ids is None) == (prefix is None):
            raise VectorIndexError("fetch takes ids or a prefix (exactly one)")
        if ids is not None:
            ids = _id_list(ids)
            if not ids:
                return []
        found = await self._call(
            lambda: self._sdk.fetch(
                ids,
                include_vectors=include_vectors,
                include_metadata=include_metadata,
                namespace=namespace,
                include_data=include_data,
                prefix=prefix,
            )
        )
        return [_port_record(record) if record is not None else None for record in found]

    async def range(
        self,
        cursor: str = "",
        limit: int = 100,
        prefix: str | None = None,
        include_metadata: bool = False,
        include_vectors: bool = False,
        include_data: bool = False,
        namespace: str = DEFAULT_NAMESPACE,
    ) -> RangeResult:
        _check_namespace(namespace)
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise VectorIndexError(f"limit must be a positive integer, not {limit!r}")
        if not isinstance(cursor, str):
            raise VectorIndexError("cursor must be a string")
        page = await self._call(
            lambda: self._sdk.range(
                cursor=cursor,
                limit=limit,
                include_vectors=include_vectors,
                include_metadata=include_metadata,
                namespace=namespace,
                include_data=include_data,
                prefix=prefix,
            )
        )
        return RangeResult(next_cursor=page.next_cursor, vectors=[_port_record(v) for v in page.vectors])

    async def info(self) -> IndexInfo:
        info = await self._call(self._sdk.info)
        kind = self._index_type = _index_type_of(info)
        return IndexInfo(
            vector_count=info.vector_count,
            pending_vector_count=info.pending_vector_count,
            index_size=info.index_size,
            dimension=info.dimension,
            similarity_function=info.similarity_function,  # type: ignore[arg-type]
            index_type=kind,
            namespaces={
                name: NamespaceInfo(space.vector_count, space.pending_vector_count)
                for name, space in sorted(info.namespaces.items())
            },
        )

    async def list_namespaces(self) -> list[str]:
        return sorted(await self._call(self._sdk.list_namespaces))


# ---------------------------------------------------------------- conversions


def _index_type_of(info: sdk.InfoResult) -> IndexType:
    if info.sparse_index is None:
        return "DENSE"
    return "HYBRID" if info.dense_index is not None else "SPARSE"


def _same_model(reported: str, expected: str) -> bool:
    """Model names compared loosely: Upstash may name a model as on Hugging Face
    ("BAAI/bge-small-en-v1.5") or as an enum ("BGE_SMALL_EN_V1_5")."""

    def key(name: str) -> str:
        return re.sub(r"[^a-z0-9]", "", name.lower().rpartition("/")[2])

    return key(reported) == key(expected)


def _check_namespace(namespace: Any) -> None:
    if not isinstance(namespace, str):
        raise VectorIndexError(f"a namespace must be a string, not {namespace!r}")


def _check_id(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise VectorIndexError(f"an id must be a non-empty string, not {value!r}")
    return value


def _id_list(ids: Any) -> list[str]:
    if isinstance(ids, str):
        return [_check_id(ids)]
    if not isinstance(ids, list | tuple):
        raise VectorIndexError(f"ids must be a list of strings, not {type(ids).__name__}")
    return [_check_id(id) for id in ids]


def _floats(vector: Any) -> list[float]:
    """A dense vector as the JSON list the SDK sends (lists and numpy arrays are accepted)."""
    values = vector.tolist() if hasattr(vector, "tolist") else vector
    if not isinstance(values, list | tuple) or not all(
        isinstance(value, int | float) and not isinstance(value, bool) for value in values
    ):
        raise VectorIndexError("a vector must be a flat list of numbers")
    return list(values)


def _sdk_sparse(vector: Any) -> sdk.SparseVector:
    if not isinstance(vector, SparseVector):
        raise VectorIndexError(f"a sparse vector must be a SparseVector, not {type(vector).__name__}")
    indices = vector.indices.tolist() if hasattr(vector.indices, "tolist") else vector.indices
    values = vector.values.tolist() if hasattr(vector.values, "tolist") else vector.values
    if not isinstance(indices, list | tuple) or not isinstance(values, list | tuple):
        raise VectorIndexError("a sparse vector's indices and values must be lists")
    return sdk.SparseVector(list(indices), list(values))


def _port_sparse(vector: sdk.SparseVector | None) -> SparseVector | None:
    if vector is None:
        return None
    return SparseVector(indices=list(vector.indices), values=list(vector.values))  # type: ignore[arg-type]


def _port_record(record: sdk.FetchResult) -> VectorRecord:
    return VectorRecord(
        id=record.id,
        vector=record.vector,
        sparse_vector=_port_sparse(record.sparse_vector),
        metadata=record.metadata,
        data=record.data,
    )


def _to_sdk(
    record: VectorRecord,
    *,
    vector: Any = None,
    sparse_vector: SparseVector | None = None,
    as_vector: bool = False,
) -> sdk.Vector | sdk.Data:
    """A record for the SDK: text alone goes as Data (to /upsert-data) unless `as_vector`."""
    _check_id(record.id)
    vector = vector if vector is not None else record.vector
    sparse_vector = sparse_vector if sparse_vector is not None else record.sparse_vector
    if record.metadata is not None and not isinstance(record.metadata, dict):
        raise VectorIndexError(f"metadata must be an object (dict), not {type(record.metadata).__name__}")
    if record.data is not None and not isinstance(record.data, str):
        raise VectorIndexError("data must be a string")
    if vector is None and sparse_vector is None and record.data is not None and not as_vector:
        return sdk.Data(id=record.id, data=record.data, metadata=record.metadata)
    return sdk.Vector(
        id=record.id,
        vector=_floats(vector) if vector is not None else None,
        metadata=record.metadata,
        data=record.data,
        sparse_vector=_sdk_sparse(sparse_vector) if sparse_vector is not None else None,
    )


def _bm25_document(text: str) -> SparseVector:
    """The BM25 document vector the embedded engine stores for `text`; past Upstash's limit on
    non-zero dimensions, the terms with the highest weights."""
    vector = bm25_document_vector(text)
    if len(vector.indices) <= MAX_SPARSE_DIMENSIONS:
        return vector
    strongest = sorted(zip(vector.values, vector.indices, strict=True), key=lambda pair: (-pair[0], pair[1]))
    kept = sorted((index, value) for value, index in strongest[:MAX_SPARSE_DIMENSIONS])
    return SparseVector(indices=[index for index, _ in kept], values=[value for _, value in kept])


def _bm25_query(text: str) -> SparseVector:
    """Each distinct word of `text` once (weight 1): with weightingStrategy IDF, Upstash turns that into
    the engine's BM25 query vector, each word weighted by its IDF in the namespace."""
    # The engine's query vector without document counts, kept only for its dimensions.
    indices = bm25_query_vector(text, {}, 0).indices[:MAX_SPARSE_DIMENSIONS]
    return SparseVector(indices=list(indices), values=[1.0] * len(indices))
